package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/bont/switchboard/switchboard"
)

// Looking up an integration by ID: one of the viewer's workspace, one of
// another workspace, one that does not exist, and (for contrast) another
// user's personal one. The second and third must cost the same: an ID of
// another workspace may not be told from a missing one by its timing.
// docs/benchmarks.md has the figures and the command.

// benchIntegrations is how many integrations each workspace holds, so the
// lookups walk a B+tree of realistic depth rather than a single page.
const benchIntegrations = 500

// seedIntegrations commits n integrations to a workspace and returns their
// IDs. owner makes them personal integrations of that user.
func seedIntegrations(b *testing.B, m *Main, ws, owner string, n int) []string {
	b.Helper()
	category := switchboard.CategoryOther
	if owner != "" {
		category = switchboard.CategoryEmailCalendar
	}
	ids := make([]string, n)
	for i := range ids {
		id := switchboard.NewID("int")
		provider := fmt.Sprintf("bench-%d", i)
		_, err := m.store.Commit(context.Background(), switchboard.Change{
			WorkspaceID: ws, IntegrationID: id, Create: true,
			Apply: func(*switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
				return &switchboard.Integration{ID: id, WorkspaceID: ws, ProviderID: provider, Category: category, OwnerUserID: owner,
					Status: switchboard.StatusDisconnected, StatusReason: switchboard.ReasonNeverConnected, StatusMessage: "Not connected yet.",
					SettingValues: map[string]string{"pipeline": "sales", "sync_interval_minutes": "15"}}, switchboard.EventCreated, nil
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = id
	}
	return ids
}

type lookupCase struct {
	name string
	ids  []string
}

// lookupFixture starts a gateway with two workspaces of benchIntegrations
// integrations each, plus personal ones of another user in the demo
// workspace, and returns the cases as seen by the demo admin.
func lookupFixture(b *testing.B) (*Main, []lookupCase) {
	b.Helper()
	m := mustStart(b, "")
	if err := m.store.CreateWorkspace(context.Background(), &switchboard.Workspace{ID: "ws_other", Name: "Other", Plan: switchboard.PlanPure}); err != nil {
		b.Fatal(err)
	}
	own := seedIntegrations(b, m, DemoWorkspaceID, "", benchIntegrations)
	other := seedIntegrations(b, m, "ws_other", "", benchIntegrations)
	colleague := seedIntegrations(b, m, DemoWorkspaceID, "usr_colleague", benchIntegrations)
	missing := make([]string, benchIntegrations)
	for i := range missing {
		missing[i] = switchboard.NewID("int") // same shape, never stored
	}
	return m, []lookupCase{
		{"exists", own},
		{"other-workspace", other},
		{"missing", missing},
		{"other-users-personal", colleague},
	}
}

// lookups returns the two ways to look an ID up as the demo admin: through
// the Service (the domain call every resolver makes) and through HTTP (POST
// /graphql with the admin token, over a kept-alive loopback connection).
// Each returns whether the integration was found, and fails on anything
// but found or not found.
func lookups(b *testing.B, m *Main) []struct {
	name string
	find func(id string) bool
} {
	ctx := switchboard.NewContextWithPrincipal(context.Background(), &switchboard.Principal{
		WorkspaceID: DemoWorkspaceID, UserID: DemoUserID, Role: switchboard.RoleAdmin,
		Scopes: []string{switchboard.ScopeIntegrationsRead},
	})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	b.Cleanup(hc.CloseIdleConnections)
	return []struct {
		name string
		find func(id string) bool
	}{
		{"service", func(id string) bool {
			in, err := m.service.Integration(ctx, id)
			if err != nil && switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
				b.Fatal(err)
			}
			return in != nil
		}},
		{"http", func(id string) bool {
			body, _ := json.Marshal(map[string]any{"query": `query($id: ID!) { integration(id: $id) { id status } }`, "variables": map[string]any{"id": id}})
			req, _ := http.NewRequest("POST", m.URL+"/graphql", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+m.DemoToken)
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(raw, []byte(`{"data":{"integration":`)) {
				b.Fatalf("got %d %s", resp.StatusCode, raw)
			}
			return bytes.Contains(raw, []byte(id))
		}},
	}
}

// BenchmarkIntegrationLookup runs each case on its own, through the
// Service and through HTTP.
//
//	go test -run '^$' -bench 'BenchmarkIntegrationLookup$' -count 6 -cpu 2 .
func BenchmarkIntegrationLookup(b *testing.B) {
	m, cases := lookupFixture(b)
	for _, via := range lookups(b, m) {
		for _, c := range cases {
			b.Run(via.name+"/"+c.name, func(b *testing.B) {
				want := c.name == "exists"
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if via.find(c.ids[i%len(c.ids)]) != want {
						b.Fatalf("%s: found is %v; want %v", c.name, !want, want)
					}
				}
			})
		}
	}
}

// BenchmarkIntegrationLookupInterleaved runs the cases in turn within each
// iteration (in a new random order each time, so none always follows
// another), so a busy machine slows them all
// alike, and reports each case's median time per lookup (a median, because
// a shared machine's preemptions put a long tail on every case) and the
// ratio of other-workspace to missing, which should be 1.
//
//	go test -run '^$' -bench 'BenchmarkIntegrationLookupInterleaved' -count 6 -cpu 2 .
func BenchmarkIntegrationLookupInterleaved(b *testing.B) {
	m, cases := lookupFixture(b)
	for _, via := range lookups(b, m) {
		b.Run(via.name, func(b *testing.B) {
			spent := make([][]time.Duration, len(cases))
			for i := 0; b.Loop(); i++ {
				for _, j := range rand.Perm(len(cases)) {
					c := cases[j]
					start := time.Now()
					found := via.find(c.ids[i%len(c.ids)])
					spent[j] = append(spent[j], time.Since(start))
					if found != (c.name == "exists") {
						b.Fatalf("%s: found is %v", c.name, found)
					}
				}
			}
			median := make([]float64, len(cases))
			for j, c := range cases {
				slices.Sort(spent[j])
				median[j] = float64(spent[j][len(spent[j])/2].Nanoseconds())
				b.ReportMetric(median[j], c.name+"-p50-ns")
			}
			b.ReportMetric(median[1]/median[2], "other-workspace/missing")
			b.ReportMetric(median[3]/median[2], "other-users-personal/missing")
			b.ReportMetric(0, "ns/op") // four lookups per op; the medians say more
		})
	}
}
