package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Profiles are served on the admin socket only, never on the public
// listener.
func TestPprofOnAdminSocketOnly(t *testing.T) {
	dir := t.TempDir()
	m := mustStart(t, dir)
	hc := adminClient(dir)
	if hc == nil {
		t.Fatal("no admin socket")
	}
	resp, err := hc.Get("http://admin/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "goroutine profile:") {
		t.Fatalf("admin socket: got %d %.200s; want a goroutine profile", resp.StatusCode, b)
	}
	resp, err = http.Get(m.URL + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(b), "goroutine profile:") {
		t.Fatal("the public listener serves profiles")
	}
}
