package bolt

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/bont/switchboard/switchboard"
)

func TestAuditAtReadsTheStoredTime(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 890, time.FixedZone("", 5400))
	for _, e := range []switchboard.AuditEntry{
		{Seq: 12, WorkspaceID: "ws_demo", At: at.UTC(), Action: "configureIntegration"},
		{Seq: 0, WorkspaceID: "", At: at},
		{Seq: 3, WorkspaceID: `we"ird\ws`, At: at.Add(time.Hour)},
	} {
		raw, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := auditAt(raw)
		if err != nil || !got.Equal(e.At) {
			t.Fatalf("auditAt(%s) = %v, %v; want %v", raw, got, err, e.At)
		}
	}
	if got, err := auditAt([]byte(`{"At":"2026-01-02T03:04:05Z","Seq":1}`)); err != nil || !got.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("another layout = %v, %v", got, err)
	}
	if _, err := auditAt([]byte(`{"Seq":1,`)); err == nil {
		t.Fatal("bad JSON read")
	}
}
