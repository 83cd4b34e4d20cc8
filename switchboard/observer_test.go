package switchboard_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/bont/switchboard/bolt"
	"github.com/bont/switchboard/seal"
	sb "github.com/bont/switchboard/switchboard"
)

// commitLog records, in order, what the broker and each observer were
// handed.
type commitLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *commitLog) add(who string, ev *sb.Event, tokens *sb.TokenSet) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf("%s:%d:%s:%t", who, ev.Revision, ev.Kind, tokens != nil))
}

type logBroker struct{ log *commitLog }

func (b logBroker) Publish(ev *sb.Event) { b.log.add("broker", ev, nil) }
func (b logBroker) Subscribe(context.Context, sb.SubscribeRequest) (*sb.Subscription, error) {
	return nil, fmt.Errorf("not used")
}

type logObserver struct {
	name string
	log  *commitLog
}

func (o logObserver) Committed(ev *sb.Event, tokens *sb.TokenSet) { o.log.add(o.name, ev, tokens) }

// Every commit the Service makes reaches the broker and then each observer
// in turn, exactly once; what was committed behind the Service's back
// reaches none of them.
func TestCommitObserversSeeEveryCommitAfterTheBroker(t *testing.T) {
	ctx := context.Background()
	keys, err := seal.NewKeyring(seal.Key{ID: "k1", Secret: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	store, err := bolt.Open(t.TempDir()+"/observers.db", bolt.Options{Keyring: keys})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	log := &commitLog{}
	oauth := &fakeOAuth{}
	svc := &sb.Service{Store: store, Broker: logBroker{log}, OAuth: oauth, Catalogue: oauth,
		Observers: []sb.CommitObserver{logObserver{"a", log}, logObserver{"b", log}}}
	if err := store.CreateWorkspace(ctx, &sb.Workspace{ID: "ws", Name: "W", Plan: sb.PlanPure}); err != nil {
		t.Fatal(err)
	}
	tok := sb.TokenSet{AccessToken: "a1", RefreshToken: "r1"}
	if _, err := store.Commit(ctx, sb.Change{WorkspaceID: "ws", IntegrationID: "int_1", Create: true, Tokens: &tok,
		Apply: func(*sb.Integration) (*sb.Integration, sb.EventKind, error) {
			return &sb.Integration{ID: "int_1", ProviderID: modelProvider.ID, Category: sb.CategoryCRM, Status: sb.StatusConnected,
				StatusReason: sb.ReasonAuthorized, Generation: 1}, sb.EventConnected, nil
		}}); err != nil {
		t.Fatal(err)
	}
	admin := sb.NewContextWithPrincipal(ctx, &sb.Principal{WorkspaceID: "ws", UserID: "u", Role: sb.RoleAdmin,
		Scopes: []string{sb.ScopeIntegrationsRead, sb.ScopeIntegrationsWrite}})
	if _, err := svc.Configure(admin, sb.ConfigureInput{ID: "int_1", Settings: []sb.SettingInput{{Key: "interval", Value: "20"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Disconnect(admin, "int_1", true); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint([]string{
		"broker:2:CONFIGURED:false", "a:2:CONFIGURED:false", "b:2:CONFIGURED:false",
		"broker:3:DISCONNECTED:false", "a:3:DISCONNECTED:false", "b:3:DISCONNECTED:false",
	})
	log.mu.Lock()
	defer log.mu.Unlock()
	if got := fmt.Sprint(log.lines); got != want {
		t.Errorf("got %s; want %s", got, want)
	}
}
