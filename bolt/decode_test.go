package bolt

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/bont/switchboard/switchboard"
)

// decodeEvent and decodeIntegration give what encoding/json gives for
// whatever json.Marshal (the store's encoding) wrote: every string the
// escaping cares about, invalid UTF-8 (replaced on the way in), times in
// other zones and with nanoseconds, nil, empty and full slices and maps,
// nil and set pointers.

var decodeStrings = []string{"", "ws1", "CONFIGURED", `quo"te`, `back\slash`, "<b>&amp;</b>",
	"tab\tnew\nline\x00\x1f", "caf\u00e9 \u2028\u2029", "bad \xff\xfe utf-8", "\xe2\x80", "\x7f del",
	"emoji \U0001F600", "surrogate \\ud83d", "/slash/"}

func genDecodeEvent(rng *rand.Rand) *switchboard.Event {
	str := func() string {
		s := ""
		for range rng.IntN(3) {
			s += decodeStrings[rng.IntN(len(decodeStrings))]
		}
		return s
	}
	zones := []*time.Location{time.UTC, time.FixedZone("", 3600), time.FixedZone("X", -(9*3600 + 30*60))}
	tm := func() time.Time {
		t := time.Unix(rng.Int64N(4e9), int64(rng.IntN(1e9)))
		if rng.IntN(3) == 0 {
			t = t.Truncate(time.Second)
		}
		return t.In(zones[rng.IntN(len(zones))])
	}
	tmp := func() *time.Time {
		if rng.IntN(3) == 0 {
			return nil
		}
		t := tm()
		return &t
	}
	strs := func() []string {
		switch rng.IntN(3) {
		case 0:
			return nil
		case 1:
			return []string{}
		}
		return []string{str(), str()}
	}
	in := &switchboard.Integration{ID: str(), WorkspaceID: str(), ProviderID: str(), Category: switchboard.Category(str()),
		OwnerUserID: str(), Status: switchboard.Status(str()), StatusReason: str(), StatusMessage: str(),
		Generation: rng.Uint64(), GrantedScopes: strs(), MissingScopes: strs(), ConnectedAt: tmp(), LastSyncedAt: tmp(),
		SyncCheckpoint: str(), CreatedAt: tm(), UpdatedAt: tm(), Revision: rng.Uint64()}
	if rng.IntN(2) == 0 {
		in.Account = &switchboard.Account{ID: str(), Name: str(), Email: str()}
	}
	switch rng.IntN(3) {
	case 1:
		in.AccountHistory = []switchboard.AccountPeriod{}
	case 2:
		in.AccountHistory = []switchboard.AccountPeriod{{Account: switchboard.Account{ID: str()}, From: tm(), Until: tmp()}, {From: tm()}}
	}
	switch rng.IntN(3) {
	case 1:
		in.SettingValues = map[string]string{}
	case 2:
		in.SettingValues = map[string]string{str(): str(), "k": str()}
	}
	ev := &switchboard.Event{Revision: rng.Uint64(), At: tm(), WorkspaceID: str(), Kind: switchboard.EventKind(str()), Integration: in}
	if rng.IntN(2) == 0 {
		st := switchboard.Status(str())
		ev.PreviousStatus = &st
	}
	if rng.IntN(10) == 0 {
		ev.Integration = nil
	}
	return ev
}

// checkDecoders decodes data with encoding/json and with the store's
// decoders and fails unless both agree.
func checkDecoders(t *testing.T, data []byte) {
	t.Helper()
	var want, got switchboard.Event
	werr := json.Unmarshal(data, &want)
	gerr := decodeEvent(data, &got)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("encoding/json: %v, decodeEvent: %v\n%q", werr, gerr, data)
	}
	if werr == nil && !reflect.DeepEqual(want, got) {
		t.Fatalf("decoded differently\n%q\nwant %#v\n got %#v", data, want, got)
	}
	if want.Integration == nil {
		return
	}
	raw, err := json.Marshal(want.Integration)
	if err != nil {
		t.Fatal(err)
	}
	var wantF, gotF scheduleFields
	if err := json.Unmarshal(raw, &wantF); err != nil {
		t.Fatal(err)
	}
	if err := decodeScheduleFields(raw, &gotF); err != nil || wantF != gotF {
		t.Fatalf("schedule fields: %v\n%q\nwant %#v\n got %#v", err, raw, wantF, gotF)
	}
	var wantIn, gotIn switchboard.Integration
	if err := json.Unmarshal(raw, &wantIn); err != nil {
		t.Fatal(err)
	}
	if err := decodeIntegration(raw, &gotIn); err != nil {
		t.Fatalf("decodeIntegration: %v\n%q", err, raw)
	}
	if !reflect.DeepEqual(wantIn, gotIn) {
		t.Fatalf("integration decoded differently\n%q\nwant %#v\n got %#v", raw, wantIn, gotIn)
	}
}

func TestDecodersMatchEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 3000 {
		data, err := json.Marshal(genDecodeEvent(rng))
		if err != nil {
			t.Fatal(err)
		}
		checkDecoders(t, data)
	}
	// What encoding/json refuses, they refuse, with its error.
	for _, bad := range []string{``, `{`, `{"Revision":-1}`, `{"At":"yesterday"}`, `{"Integration":[]}`, `[]`, `{"Revision":1}x`} {
		var ev switchboard.Event
		werr := json.Unmarshal([]byte(bad), &ev)
		gerr := decodeEvent([]byte(bad), &ev)
		if werr == nil || gerr == nil || werr.Error() != gerr.Error() {
			t.Errorf("%q: encoding/json %v, decodeEvent %v", bad, werr, gerr)
		}
	}
}

// Events made of arbitrary strings and times, as the store writes them.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range decodeStrings {
		f.Add(s, "x"+s, int64(1700000000), int64(5), 3600)
	}
	f.Fuzz(func(t *testing.T, a, b string, sec, nsec int64, offset int) {
		at := time.Unix(sec, nsec).In(time.FixedZone(b, offset%(18*3600)))
		st := switchboard.Status(b)
		ev := &switchboard.Event{Revision: uint64(sec), At: at, WorkspaceID: a, Kind: switchboard.EventKind(b), PreviousStatus: &st,
			Integration: &switchboard.Integration{ID: a, ProviderID: b, StatusMessage: a + b, GrantedScopes: []string{a, b},
				Account: &switchboard.Account{Name: b}, ConnectedAt: &at, SettingValues: map[string]string{a: b}, CreatedAt: at}}
		data, err := json.Marshal(ev)
		if err != nil {
			return // a year outside 0–9999: nothing the store writes
		}
		checkDecoders(t, data)
	})
}
