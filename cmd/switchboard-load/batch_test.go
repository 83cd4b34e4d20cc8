package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	bbolt "go.etcd.io/bbolt"
)

// TestBatchBaselineSameWrite: the mutations baseline writes a record, an
// event embedding it and an audit entry of at least the sizes asked for,
// keeps the last Retain of each log, and keeps the settings across writes;
// gatewayWriteSizes reads the means back from a file of the gateway's
// layout.
func TestBatchBaselineSameWrite(t *testing.T) {
	dir := t.TempDir()
	sizes := writeSizes{Record: 700, Event: 850, Audit: 270, Retain: 3}
	h, err := newBatchHandler(dir, sizes)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		key := "k"
		if i == 0 {
			key = "first"
		}
		body, _ := json.Marshal(map[string]string{"id": "int_1", "key": key, "value": fmt.Sprint(i)})
		rec := httptest.NewRecorder()
		h.serve(rec, httptest.NewRequest("POST", "/configure", bytes.NewReader(body)))
		if rec.Code != http.StatusOK {
			t.Fatalf("request %d: HTTP %d %s", i, rec.Code, rec.Body)
		}
		var out struct {
			Revision string
			Settings map[string]string
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		wantK := fmt.Sprint(i)
		if i == 0 {
			wantK = ""
		}
		if out.Revision != fmt.Sprint(i+1) || out.Settings["first"] != "0" || out.Settings["k"] != wantK {
			t.Fatalf("request %d answered %+v", i, out)
		}
	}
	rec := httptest.NewRecorder()
	h.serve(rec, httptest.NewRequest("POST", "/configure", bytes.NewReader([]byte(`{"id":""}`))))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("empty id: HTTP %d", rec.Code)
	}
	err = h.db.View(func(tx *bbolt.Tx) error {
		check := func(bucket string, n, min int) {
			got, short := 0, 0
			_ = tx.Bucket([]byte(bucket)).ForEach(func(_, v []byte) error {
				got++
				if len(v) < min || !json.Valid(v) {
					short++
				}
				return nil
			})
			if got != n || short != 0 {
				t.Errorf("%s: %d entries (want %d), %d shorter than %d B or not JSON", bucket, got, n, short, min)
			}
		}
		check("state", 1, sizes.Record)
		check("changelog", sizes.Retain, sizes.Event)
		check("audit", sizes.Retain, sizes.Audit)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h.db.Close()

	// A file laid out like the gateway's.
	path := filepath.Join(dir, "gateway.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		ws, err := tx.CreateBucketIfNotExists([]byte("workspaces"))
		if err != nil {
			return err
		}
		demo, err := ws.CreateBucketIfNotExists([]byte("ws_demo"))
		if err != nil {
			return err
		}
		for name, vals := range map[string][]int{"integrations": {100, 300}, "changelog": {400}, "audit": {50, 60, 70}} {
			b, err := demo.CreateBucketIfNotExists([]byte(name))
			if err != nil {
				return err
			}
			for i, n := range vals {
				if err := b.Put([]byte{byte(i)}, make([]byte, n)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	got, err := gatewayWriteSizes(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := (writeSizes{Record: 200, Event: 400, Audit: 60, Retain: defaultWriteSizes.Retain}); got != want {
		t.Fatalf("gatewayWriteSizes = %+v, want %+v", got, want)
	}
}
