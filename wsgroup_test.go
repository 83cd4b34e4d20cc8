package main

import (
	"testing"
	"time"
)

// Identical subscriptions render each event once, with the gqlgen state of
// the subscription that made their group; the others keep none. The group
// must go on rendering, correctly, after that subscription and its socket
// are gone, for members that joined live and members that replayed.
func TestGroupRendersAfterItsFirstMemberEnds(t *testing.T) {
	m := mustStart(t, "")
	c := newClient(t, m, m.DemoToken)
	id := connect(t, c, "ada@sandbox.test")["id"].(string)

	dial := func() *wsClient {
		ws, err := dialWS(t, m, "graphql-transport-ws", m.DemoToken, nil)
		if err != nil {
			t.Fatal(err)
		}
		return ws
	}
	subscribers := m.broker.Stats().Subscribers
	waitSubscribed := func(n int) {
		t.Helper()
		waitFor(t, "subscriptions to register", func() bool { return m.broker.Stats().Subscribers == subscribers+n })
	}
	first := dial()
	first.subscribe("1", eventsSubscription, nil)
	waitSubscribed(1)
	live := dial()
	live.subscribe("1", eventsSubscription, nil)
	replayed := dial()
	replayed.subscribe("r", eventsSubscription, map[string]any{"after": "0"})
	// The replaying member reads the workspace's history up to now.
	for _, rev := range storeRevisions(t, m, DemoWorkspaceID, 0) {
		ev, err := replayed.nextEvent(5 * time.Second)
		if err != nil || ev.Revision != rev {
			t.Fatalf("replay: %+v %v; want revision %s", ev, err, rev)
		}
	}
	waitSubscribed(3)

	check := func(value string, members ...*wsClient) {
		t.Helper()
		_, d, errs := configure(c, id, "pipeline", value)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		rev := str(d, "configureIntegration.revision")
		for i, ws := range members {
			ev, err := ws.nextEvent(5 * time.Second)
			if err != nil {
				t.Fatalf("member %d: %v", i, err)
			}
			if ev.Revision != rev || ev.Integration.ID != id || ev.Kind == "" || ev.Integration.Status == "" {
				t.Fatalf("member %d got %+v; want revision %s of %s", i, ev, rev, id)
			}
		}
	}
	check("sales", first, live, replayed)

	// The first member completes, then its socket goes.
	first.send(wsMessage{ID: "1", Type: "complete"})
	waitSubscribed(2)
	check("renewals", live, replayed)
	first.conn.Close()
	waitFor(t, "the first socket to close", func() bool { return m.ws.Count() == 2 })
	check("all", live, replayed)

	// A member joining now shares the same group and renders the same.
	late := dial()
	late.subscribe("1", eventsSubscription, nil)
	waitSubscribed(3)
	check("sales", live, replayed, late)
}
