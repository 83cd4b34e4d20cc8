// Package stockgql is the stock-gqlgen baseline of switchboard-load: a
// tiny schema served by gqlgen's handler.New with its default websocket
// transport and gqlgen's chat example's design, one channel per
// subscriber that the publishing mutation sends each event to. It is a
// yardstick, not part of the gateway.
package stockgql

import (
	"context"
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

// Resolver keeps the subscribers' channels.
type Resolver struct {
	mu   sync.Mutex
	rev  int
	subs map[*chan *Event]struct{}
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
	for ch := range r.subs {
		select {
		case *ch <- ev:
		default: // a full channel drops the event, as a chat room would
		}
	}
	return ev, nil
}

func (r *Resolver) IntegrationEvents(ctx context.Context) (<-chan *Event, error) {
	ch := make(chan *Event, 64)
	r.mu.Lock()
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
