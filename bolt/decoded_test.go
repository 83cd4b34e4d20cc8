package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/bont/switchboard/switchboard"
)

func TestDecodedCacheMatchesTheBytes(t *testing.T) {
	var c decodedCache
	enc := func(in *switchboard.Integration) []byte {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := enc(&switchboard.Integration{ID: "i", Revision: 1, SettingValues: map[string]string{"k": "1"}, GrantedScopes: []string{"s"}})
	first, err := c.integration("w\x00i", a)
	if err != nil {
		t.Fatal(err)
	}
	// What a caller does to its copy never reaches the next reader.
	first.SettingValues["k"] = "changed"
	first.GrantedScopes[0] = "changed"
	again, err := c.integration("w\x00i", a)
	if err != nil || again.SettingValues["k"] != "1" || again.GrantedScopes[0] != "s" || again.AccountHistory != nil {
		t.Fatalf("second read = %+v, %v", again, err)
	}
	// Other bytes under the same key are decoded, not served from memory.
	b := enc(&switchboard.Integration{ID: "i", Revision: 2})
	next, err := c.integration("w\x00i", b)
	if err != nil || next.Revision != 2 || next.SettingValues != nil {
		t.Fatalf("after a change = %+v, %v", next, err)
	}
	if _, err := c.integration("w\x00i", []byte("{")); err == nil {
		t.Fatal("bad JSON decoded")
	}
}

// A commit hands the value it wrote to the cache only when it is exactly
// what decoding the stored bytes gives; otherwise the next read decodes.
func TestCommittedValueEqualsDecoded(t *testing.T) {
	s := mustOpen(t)
	mustCommit(t, s, createChange("ws", "i", "hubspot"))
	berlin := time.FixedZone("CET", 3600)
	now := time.Now() // carries a monotonic reading
	local := now.In(time.FixedZone("Z0", 0))
	cases := []struct {
		name   string
		fn     func(in *switchboard.Integration)
		cached bool
	}{
		{"nil slices and map", func(in *switchboard.Integration) {
			in.GrantedScopes, in.MissingScopes, in.SettingValues, in.AccountHistory = nil, nil, nil, nil
		}, true},
		{"empty slices and map", func(in *switchboard.Integration) {
			in.GrantedScopes, in.MissingScopes, in.SettingValues = []string{}, []string{}, map[string]string{}
		}, true},
		{"monotonic and zero-offset times", func(in *switchboard.Integration) {
			in.ConnectedAt, in.LastSyncedAt = &now, &local
			in.Account = &switchboard.Account{ID: "a", Name: "<Ann & Bob>\u2028"}
			in.AccountHistory = []switchboard.AccountPeriod{{Account: switchboard.Account{ID: "b"}, From: now, Until: &local}}
			in.SettingValues = map[string]string{"k": "v"}
			in.GrantedScopes = []string{"x"}
		}, true},
		{"a time at another offset", func(in *switchboard.Integration) {
			at := now.In(berlin)
			in.ConnectedAt = &at
		}, false},
		{"invalid UTF-8", func(in *switchboard.Integration) { in.StatusMessage = "bad \xff" }, false},
	}
	for _, tc := range cases {
		mustCommit(t, s, updateChange("ws", "i", switchboard.EventConfigured, tc.fn))
		var raw []byte
		if err := s.db.View(func(tx *bbolt.Tx) error {
			raw = bytes.Clone(wsBucket(tx, "ws").Bucket(bIntegrations).Get([]byte("i")))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		want := new(switchboard.Integration)
		if err := json.Unmarshal(raw, want); err != nil {
			t.Fatal(err)
		}
		s.decoded.mu.Lock()
		entry, ok := s.decoded.m[decodedKey("ws", "i")]
		s.decoded.mu.Unlock()
		e := entry.written
		hit := ok && bytes.Equal(e.raw, raw)
		if hit != tc.cached {
			t.Fatalf("%s: cached %v; want %v", tc.name, hit, tc.cached)
		}
		// Once durable, what the commit wrote is what readers outside
		// the next batch find too.
		if committed := ok && bytes.Equal(entry.read.raw, raw); committed != tc.cached {
			t.Fatalf("%s: committed version cached %v; want %v", tc.name, committed, tc.cached)
		}
		if hit && !reflect.DeepEqual(e.in, want) {
			t.Fatalf("%s: cached %#v\nwant %#v", tc.name, e.in, want)
		}
		got, err := s.FindIntegrationByID(context.Background(), "ws", "i")
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: read %#v, %v\nwant %#v", tc.name, got, err, want)
		}
	}
}
