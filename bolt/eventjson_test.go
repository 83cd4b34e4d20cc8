package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/bont/switchboard/switchboard"
)

// The changelog's event bytes are exactly json.Marshal's, whatever the
// strings hold, so splicing the integration's bytes changes nothing on
// disk.
func TestAppendEventIsJSONMarshal(t *testing.T) {
	strs := []string{"", "ws1", "CONFIGURED", `quo"te`, `back\slash`, "<b>&amp;</b>", "tab\tnew\nline\x00", "caf\u00e9 \u2028\u2029", "bad \xff\xfe utf-8", "\x7f del", "emoji \U0001F600"}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() string { return strs[rng.IntN(len(strs))] }
	times := []time.Time{
		time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 27, 6, 0, 0, 123456789, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Now().UTC(),
	}
	for i := range 500 {
		in := &switchboard.Integration{ID: pick(), WorkspaceID: pick(), ProviderID: pick(), StatusMessage: pick(),
			SettingValues: map[string]string{pick(): pick()}, Revision: uint64(i)}
		ev := &switchboard.Event{Revision: uint64(i) * 7919, At: times[i%len(times)], WorkspaceID: pick(), Kind: switchboard.EventKind(pick()), Integration: in}
		switch i % 3 {
		case 1:
			st := switchboard.Status(pick())
			ev.PreviousStatus = &st
		case 2:
			ev.Integration = nil
		}
		want, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(ev.Integration)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendEvent([]byte("prefix"), ev, raw)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[len("prefix"):], want) {
			t.Fatalf("event %d:\n got %s\nwant %s", i, got[len("prefix"):], want)
		}
	}
	// What json.Marshal refuses is refused.
	ev := &switchboard.Event{At: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := appendEvent(nil, ev, nil); err == nil {
		t.Fatal("year 10000 encoded")
	}
}

// The event a commit stores decodes to the event it returns.
func TestStoredEventDecodesToTheReturnedOne(t *testing.T) {
	s := mustOpen(t)
	mustCommit(t, s, createChange("ws", "i", "hubspot"))
	ev := mustCommit(t, s, updateChange("ws", "i", switchboard.EventConfigured, func(in *switchboard.Integration) {
		in.SettingValues = map[string]string{"k": "<v&>"}
		in.StatusMessage = "caf\u00e9"
	}))
	evs, err := s.EventsAfter(context.Background(), "ws", ev.Revision-1, 0)
	if err != nil || len(evs) != 1 {
		t.Fatalf("EventsAfter = %v, %v", evs, err)
	}
	want, _ := json.Marshal(ev)
	var stored []byte
	if err := s.db.View(func(tx *bbolt.Tx) error {
		stored = bytes.Clone(wsBucket(tx, "ws").Bucket(bChangelog).Get(u64bytes(ev.Revision)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored, want) {
		t.Fatalf("stored %s\nwant %s", stored, want)
	}
	if !reflect.DeepEqual(evs[0], ev) {
		t.Fatalf("read back %#v\nwant %#v", evs[0], ev)
	}
}

// Apply gets a private copy and may return it; a value it returns that it
// keeps elsewhere is copied, so changing it later changes nothing stored
// or returned.
func TestApplyResultIsOwnedByTheStore(t *testing.T) {
	s := mustOpen(t)
	mustCommit(t, s, createChange("ws", "i", "hubspot"))
	kept := &switchboard.Integration{ID: "i", WorkspaceID: "ws", ProviderID: "hubspot", Status: switchboard.StatusConnected,
		SettingValues: map[string]string{"k": "1"}}
	ev := mustCommit(t, s, switchboard.Change{WorkspaceID: "ws", IntegrationID: "i",
		Apply: func(*switchboard.Integration) (*switchboard.Integration, switchboard.EventKind, error) {
			return kept, switchboard.EventConfigured, nil
		}})
	if ev.Integration == kept {
		t.Fatal("the event holds Apply's own value")
	}
	kept.SettingValues["k"] = "changed"
	got, err := s.FindIntegrationByID(context.Background(), "ws", "i")
	if err != nil || got.SettingValues["k"] != "1" || ev.Integration.SettingValues["k"] != "1" {
		t.Fatalf("after changing Apply's value: stored %+v, event %+v, %v", got, ev.Integration, err)
	}
	// The copy Apply is given is its own: the event holds it (no second
	// copy), and changing it after the commit changes nothing stored.
	var given *switchboard.Integration
	ev = mustCommit(t, s, updateChange("ws", "i", switchboard.EventConfigured, func(in *switchboard.Integration) {
		in.SettingValues = map[string]string{"k": "2"}
		given = in
	}))
	if ev.Integration != given {
		t.Fatal("the event holds a copy of the value Apply returned")
	}
	given.SettingValues["k"] = "changed"
	got, err = s.FindIntegrationByID(context.Background(), "ws", "i")
	if err != nil || got.SettingValues["k"] != "2" {
		t.Fatalf("after changing Apply's input: stored %+v, %v", got, err)
	}
}

// A reader that sees the committed bytes while a batch writes newer ones
// and the batch's next commit reading those newer bytes both find their
// version decoded; an older read never replaces a newer committed one.
func TestDecodedCacheKeepsWrittenAndCommitted(t *testing.T) {
	var c decodedCache
	enc := func(rev uint64) []byte {
		b, _ := json.Marshal(&switchboard.Integration{ID: "i", Revision: rev})
		return b
	}
	const key = "w\x00i"
	v1 := c.wrote(key, enc(1), &switchboard.Integration{ID: "i", Revision: 1})
	c.committed(key, v1)
	c.wrote(key, enc(2), &switchboard.Integration{ID: "i", Revision: 2}) // in a batch, not yet durable
	for _, rev := range []uint64{1, 2, 1, 2} {
		c.mu.Lock()
		e := c.m[key]
		c.mu.Unlock()
		if !bytes.Equal(e.written.raw, enc(2)) || !bytes.Equal(e.read.raw, enc(1)) {
			t.Fatalf("entry = written %s, read %s", e.written.raw, e.read.raw)
		}
		in, err := c.integration(key, enc(rev))
		if err != nil || in.Revision != rev {
			t.Fatalf("read rev %d = %+v, %v", rev, in, err)
		}
	}
	v3 := c.wrote(key, enc(3), &switchboard.Integration{ID: "i", Revision: 3})
	c.committed(key, v3)
	// A read transaction that began before revision 3 committed decodes
	// revision 1, and must not put it back.
	if _, err := c.integration(key, enc(1)); err != nil {
		t.Fatal(err)
	}
	c.committed(key, v1)
	c.mu.Lock()
	e := c.m[key]
	c.mu.Unlock()
	if !bytes.Equal(e.read.raw, enc(3)) {
		t.Fatalf("committed version = %s; want revision 3", e.read.raw)
	}
}

// Audit entries too are stored exactly as json.Marshal writes them.
func TestAppendAuditEntryIsJSONMarshal(t *testing.T) {
	strs := []string{"", "ws1", "usr_1", "ADMIN", `quo"te`, "<b>&amp;</b>", "tab\tnew\nline\x00", "caf\u00e9 \u2028", "bad \xff utf-8", "settings sync_interval_minutes, revision 12"}
	rng := rand.New(rand.NewPCG(3, 4))
	pick := func() string { return strs[rng.IntN(len(strs))] }
	for i := range 300 {
		a := &switchboard.AuditEntry{Seq: uint64(i) * 31, WorkspaceID: pick(), At: time.Date(2026, 11, 27, 6, 0, i, i*1001, time.UTC),
			UserID: pick(), TokenID: pick(), Role: switchboard.Role(pick()), Action: pick(), Target: pick(), Detail: pick()}
		want, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendAuditEntry(nil, a)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("entry %d:\n got %s, %v\nwant %s", i, got, err, want)
		}
	}
	if _, err := appendAuditEntry(nil, &switchboard.AuditEntry{At: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Fatal("year -1 encoded")
	}
}

// The encoders know the domain types' fields; a field added to one of
// them must be taught to appendIntegration, appendEvent or
// appendAuditEntry (until then they fall back to json.Marshal).
func TestEncodersKnowTheLayout(t *testing.T) {
	for typ, want := range knownLayouts {
		if got := layout(typ); got != want {
			t.Errorf("%s is now\n  %s\nnot\n  %s\nteach bolt/eventjson.go the change", typ, got, want)
		}
	}
}

// Integrations are stored exactly as json.Marshal writes them.
func TestAppendIntegrationIsJSONMarshal(t *testing.T) {
	strs := []string{"", "int_1", "ws1", "sandbox", "CRM", "CONNECTED", `quo"te`, "<b>&amp;</b>", "tab\tnew\nline\x00", "caf\u00e9 \u2028\u2029", "bad \xff utf-8", "emoji \U0001F600"}
	rng := rand.New(rand.NewPCG(5, 6))
	pick := func() string { return strs[rng.IntN(len(strs))] }
	berlin := time.FixedZone("CET", 3600)
	tm := func() time.Time {
		switch rng.IntN(4) {
		case 0:
			return time.Time{}
		case 1:
			return time.Now()
		case 2:
			return time.Date(2026, 11, 27, 6, 0, 0, rng.IntN(1e9), berlin)
		}
		return time.Date(2026, 11, 27, 6, 0, 0, rng.IntN(1e9), time.UTC)
	}
	tp := func() *time.Time {
		if rng.IntN(3) == 0 {
			return nil
		}
		x := tm()
		return &x
	}
	strsOrNil := func() []string {
		switch rng.IntN(3) {
		case 0:
			return nil
		case 1:
			return []string{}
		}
		out := make([]string, 1+rng.IntN(3))
		for i := range out {
			out[i] = pick()
		}
		return out
	}
	for i := range 2000 {
		in := &switchboard.Integration{ID: pick(), WorkspaceID: pick(), ProviderID: pick(), Category: switchboard.Category(pick()),
			OwnerUserID: pick(), Status: switchboard.Status(pick()), StatusReason: pick(), StatusMessage: pick(),
			Generation: rng.Uint64(), GrantedScopes: strsOrNil(), MissingScopes: strsOrNil(), ConnectedAt: tp(), LastSyncedAt: tp(),
			SyncCheckpoint: pick(), CreatedAt: tm(), UpdatedAt: tm(), Revision: rng.Uint64()}
		if rng.IntN(2) == 0 {
			in.Account = &switchboard.Account{ID: pick(), Name: pick(), Email: pick()}
		}
		switch rng.IntN(3) {
		case 1:
			in.AccountHistory = []switchboard.AccountPeriod{}
		case 2:
			for range 1 + rng.IntN(3) {
				in.AccountHistory = append(in.AccountHistory, switchboard.AccountPeriod{Account: switchboard.Account{ID: pick(), Name: pick()}, From: tm(), Until: tp()})
			}
		}
		switch rng.IntN(3) {
		case 1:
			in.SettingValues = map[string]string{}
		case 2:
			in.SettingValues = map[string]string{}
			for range 1 + rng.IntN(5) {
				in.SettingValues[pick()] = pick()
			}
		}
		want, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendIntegration([]byte("x"), in)
		if err != nil || !bytes.Equal(got[1:], want) {
			t.Fatalf("integration %d:\n got %s, %v\nwant %s", i, got[1:], err, want)
		}
	}
	// What json.Marshal refuses is refused, and nothing is appended.
	bad := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, in := range []*switchboard.Integration{{CreatedAt: bad}, {ConnectedAt: &bad}, {AccountHistory: []switchboard.AccountPeriod{{From: bad}}}} {
		if got, err := appendIntegration([]byte("x"), in); err == nil || string(got) != "x" {
			t.Fatalf("year 10000: %q, %v", got, err)
		}
	}
}

// What every commit encodes inside the batch's serial part: the new
// integration, then the changelog event around its bytes, for a card of
// plain ASCII and for one whose strings need escaping.
//
//	go test -run '^$' -bench EncodeCommit -benchmem ./bolt
func BenchmarkEncodeCommit(b *testing.B) {
	at := time.Date(2026, 11, 27, 6, 0, 0, 123456789, time.UTC)
	for _, tc := range []struct{ name, message string }{
		{"ascii", "Token refreshed"},
		{"escaped", "Caf\u00e9 <ops> & \"sync\" paused"},
	} {
		prev := switchboard.StatusConnected
		in := &switchboard.Integration{ID: "int_0123456789", WorkspaceID: "ws_1", ProviderID: "hubspot", Category: switchboard.CategoryCRM,
			OwnerUserID: "usr_1", Status: switchboard.StatusConnected, StatusMessage: tc.message, Generation: 3,
			Account:        &switchboard.Account{ID: "acct_1", Name: "Acme", Email: "ops@acme.test"},
			AccountHistory: []switchboard.AccountPeriod{{Account: switchboard.Account{ID: "acct_1", Name: "Acme"}, From: at}},
			GrantedScopes:  []string{"crm.objects.contacts.read", "crm.objects.contacts.write", "oauth"},
			ConnectedAt:    &at, LastSyncedAt: &at, SyncCheckpoint: "cp_42",
			SettingValues: map[string]string{"sync_interval_minutes": "15", "direction": "both"},
			CreatedAt:     at, UpdatedAt: at, Revision: 123456}
		ev := &switchboard.Event{Revision: 123456, At: at, WorkspaceID: "ws_1", Kind: switchboard.EventConfigured, Integration: in, PreviousStatus: &prev}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 2048)
			for b.Loop() {
				raw, err := encodeIntegration(in)
				if err != nil {
					b.Fatal(err)
				}
				if buf, err = appendEvent(buf[:0], ev, raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
