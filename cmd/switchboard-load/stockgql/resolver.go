// Package stockgql is the stock-gqlgen baseline of switchboard-load: a
// tiny schema served by gqlgen's handler.New with its default websocket
// transport and gqlgen's chat example's design, one channel per
// subscriber that the publishing mutation sends each event to. It is a
// yardstick, not part of the gateway.
package stockgql

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"
)

// Handler serves /graphql: POST for the mutation, websockets
// (graphql-transport-ws and graphql-ws) for the subscription.
func Handler() http.Handler {
	r := &Resolver{subs: map[*chan *Event]struct{}{}}
	srv := handler.New(NewExecutableSchema(Config{Resolvers: r}))
	srv.AddTransport(transport.Websocket{KeepAlivePingInterval: 10 * time.Second})
	srv.AddTransport(transport.POST{})
	return srv
}

// Retained is how many events the baseline keeps for resuming
// subscribers, as many as the gateway keeps per workspace by default.
const Retained = 10000

// Resolver keeps the subscribers' channels and the latest Retained events.
type Resolver struct {
	mu      sync.Mutex
	rev     int
	subs    map[*chan *Event]struct{}
	history []*Event // oldest first, revisions rev-len(history)+1 … rev; the last Retained are served
}

func (r *Resolver) Mutation() MutationResolver         { return r }
func (r *Resolver) Query() QueryResolver               { return r }
func (r *Resolver) Subscription() SubscriptionResolver { return r }

func (r *Resolver) Ping(context.Context) (bool, error) { return true, nil }

// Publish stamps an event and sends it to every subscriber's channel, as
// gqlgen's chat example does.
func (r *Resolver) Publish(ctx context.Context, kind string) (*Event, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rev++
	ev := &Event{
		Revision: strconv.Itoa(r.rev), At: time.Now().UTC().Format(time.RFC3339Nano), Kind: kind,
		Integration: &Card{ID: "int_baseline", Status: "CONNECTED", Badge: &Badge{Label: "Connected", Tone: "SUCCESS"}},
	}
	if len(r.history) == 2*Retained { // amortized: drop the older half at once
		r.history = append(r.history[:0], r.history[Retained:]...)
	}
	r.history = append(r.history, ev)
	for ch := range r.subs {
		select {
		case *ch <- ev:
		default: // a full channel drops the event, as a chat room would
		}
	}
	return ev, nil
}

// IntegrationEvents subscribes; with afterRevision, the retained events
// after it are queued first, in the same critical section that registers
// the channel (sized to hold them), so replay and live meet without a gap
// or a duplicate.
func (r *Resolver) IntegrationEvents(ctx context.Context, afterRevision *string) (<-chan *Event, error) {
	r.mu.Lock()
	var replay []*Event
	if afterRevision != nil {
		after, err := strconv.Atoi(*afterRevision)
		if err != nil || after < 0 || after > r.rev {
			r.mu.Unlock()
			return nil, fmt.Errorf("afterRevision %q: not a revision of this server", *afterRevision)
		}
		kept := r.history[max(0, len(r.history)-Retained):]
		first := r.rev - len(kept) + 1 // oldest retained
		if after < first-1 {
			r.mu.Unlock()
			return nil, fmt.Errorf("afterRevision %s is older than the %d retained events", *afterRevision, len(kept))
		}
		replay = kept[after-first+1:]
	}
	ch := make(chan *Event, 64+len(replay))
	for _, ev := range replay {
		ch <- ev
	}
	r.subs[&ch] = struct{}{}
	r.mu.Unlock()
	go func() {
		<-ctx.Done()
		r.mu.Lock()
		delete(r.subs, &ch)
		r.mu.Unlock()
	}()
	return ch, nil
}
