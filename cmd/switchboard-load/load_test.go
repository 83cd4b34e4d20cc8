package main

import (
	"testing"
	"time"

	"github.com/bont/switchboard/oauthflow"
	"github.com/bont/switchboard/switchboard"
)

// The providers file the command writes must stay one the gateway reads.
func TestProvidersFileParses(t *testing.T) {
	ps, err := oauthflow.ParseProviders([]byte(providersFile("http://127.0.0.1:8080", 19)), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range ps {
		if len(p.ID) > 4 && p.ID[:4] == "load" {
			n++
			if p.Category != switchboard.CategoryOther || len(p.SettingDefinitions) != 1 || p.SettingDefinitions[0].Key != "sync_interval_minutes" {
				t.Fatalf("provider %s: %+v", p.ID, p)
			}
		}
	}
	if n != 19 {
		t.Fatalf("got %d custom providers; want 19", n)
	}
}

func TestEventAt(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	msg := []byte(`{"id":"1","type":"next","payload":{"data":{"integrationEvents":{"revision":"7","at":"` + at.Format(time.RFC3339Nano) + `","kind":"CONFIGURED"}}}}`)
	got, ok := eventAt(msg)
	if !ok || !got.Equal(at) {
		t.Fatalf("got %v %v; want %v", got, ok, at)
	}
	if _, ok := eventAt([]byte(`{"type":"next","payload":{"data":{}}}`)); ok {
		t.Fatal("found a timestamp in a message without one")
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0, 1}} {
		if got := percentile(d, c.q); got != c.want {
			t.Errorf("percentile(%v) = %v; want %v", c.q, got, c.want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing")
	}
}
