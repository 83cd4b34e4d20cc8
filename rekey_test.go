package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bont/switchboard/seal"
	"github.com/bont/switchboard/switchboard"
)

func keyEntry(t *testing.T, id string) string {
	t.Helper()
	k, err := seal.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	return seal.FormatKey(id, k)
}

// startErr runs a gateway on dir and returns its start error, closing it
// if it started.
func startErr(t *testing.T, dir string) error {
	t.Helper()
	m := NewMain()
	m.Config.Addr, m.Config.DataDir, m.Config.ShutdownTimeout = "127.0.0.1:0", dir, 5*time.Second
	m.Stdout, m.Logger = io.Discard, slog.New(slog.NewTextHandler(io.Discard, nil))
	err := m.Run(context.Background())
	m.Close()
	return err
}

// seedUnderKey starts a gateway on dir with only key ka, connects an
// integration and returns its id and the access token the sync API serves
// for it.
func seedUnderKey(t *testing.T, dir, ka string) (id, accessToken string, sc *syncClient) {
	t.Helper()
	t.Setenv(seal.EnvVar, ka)
	m := mustStart(t, dir)
	id = connect(t, newClient(t, m, m.DemoToken), "ada@sandbox.test")["id"].(string)
	sc = newSyncClient(t, m, switchboard.ScopeSync)
	status, tok := sc.call(id+"/token", map[string]any{})
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, tok)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	return id, str(tok, "accessToken"), sc
}

func run(t *testing.T, f func([]string, io.Writer, io.Writer) int, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := f(args, &out, &errb)
	return code, out.String() + errb.String()
}

func mustContain(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Fatalf("%s: got\n%s\nwant it to contain %q", what, got, w)
		}
	}
}

// servesToken checks that the gateway m serves, through the sync API, the
// access token stored before the rekey, and that the provider takes it.
func servesToken(t *testing.T, m *Main, sc *syncClient, id, want string) {
	t.Helper()
	sc.url = m.URL
	status, tok := sc.call(id+"/token", map[string]any{})
	if status != http.StatusOK || str(tok, "accessToken") != want {
		t.Fatalf("token after the rekey: %d %v; want the stored token", status, tok)
	}
	expect(t, "token works at the provider", userinfo(t, m, want), http.StatusOK)
}

// Retiring a key on a stopped data file: check names what the new key
// alone cannot open, rekey re-seals it, and the new key alone then starts
// the gateway and opens every token.
func TestRekeyRetiresAKeyOnAStoppedFile(t *testing.T) {
	dir := t.TempDir()
	ka, kb := keyEntry(t, "ka"), keyEntry(t, "kb")
	id, access, sc := seedUnderKey(t, dir, ka)
	token := `token of workspace ws_demo, integration ` + id + `, generation 1, key id "ka"`

	t.Setenv(seal.EnvVar, kb)
	code, out := run(t, runCheck, "-data", dir)
	if code != 1 {
		t.Fatalf("check with kb only before rekey: exit %d; want 1\n%s", code, out)
	}
	mustContain(t, "check with kb only", out, "key ka: 1 tokens", "unopenable: "+token+`: no configured key opens key id "ka"`)
	if strings.Contains(out, access) {
		t.Fatal("check printed a token")
	}
	if err := startErr(t, dir); err == nil || !strings.Contains(err.Error(), "key id ka") {
		t.Fatalf("start with kb only before rekey: got %v; want a refusal naming ka", err)
	}

	t.Setenv(seal.EnvVar, kb+","+ka)
	code, out = run(t, runRekey, "-data", dir, "-batch", "1")
	if code != 0 {
		t.Fatalf("rekey: exit %d\n%s", code, out)
	}
	mustContain(t, "rekey", out, "rekey on the stopped data file: 1 secrets re-sealed under key kb",
		"before:\n  key ka: 1 tokens", "after:\n  key kb (current): 1 tokens", "key ka seals nothing any more")
	code, out = run(t, runRekey, "-data", dir)
	if code != 0 || !strings.Contains(out, "0 secrets re-sealed") {
		t.Fatalf("second rekey: exit %d; want nothing left to do\n%s", code, out)
	}

	t.Setenv(seal.EnvVar, kb)
	if code, out = run(t, runCheck, "-data", dir); code != 0 || !strings.Contains(out, "key kb (current): 1 tokens") {
		t.Fatalf("check with kb only after rekey: exit %d\n%s", code, out)
	}
	servesToken(t, mustStart(t, dir), sc, id, access)
}

// On a live gateway, check and rekey go through the admin socket.
func TestRekeyThroughTheRunningGateway(t *testing.T) {
	dir := t.TempDir()
	ka, kb := keyEntry(t, "ka"), keyEntry(t, "kb")
	id, access, sc := seedUnderKey(t, dir, ka)
	token := `token of workspace ws_demo, integration ` + id + `, generation 1, key id "ka"`

	t.Setenv(seal.EnvVar, kb+","+ka)
	m := mustStart(t, dir)

	// The command's keys are kb alone: the gateway names what they miss.
	t.Setenv(seal.EnvVar, kb)
	code, out := run(t, runCheck, "-data", dir)
	if code != 1 {
		t.Fatalf("check with kb only: exit %d; want 1\n%s", code, out)
	}
	mustContain(t, "check with kb only", out, "through the running gateway", "unopenable: "+token)

	code, out = run(t, runRekey, "-data", dir)
	if code != 0 {
		t.Fatalf("rekey: exit %d\n%s", code, out)
	}
	mustContain(t, "rekey", out, "rekey through the running gateway: 1 secrets re-sealed under key kb",
		"before:\n  key ka: 1 tokens", "after:\n  key kb (current): 1 tokens", "key ka seals nothing any more")
	servesToken(t, m, sc, id, access)

	if code, out = run(t, runCheck, "-data", dir); code != 0 {
		t.Fatalf("check with kb only after rekey: exit %d\n%s", code, out)
	}
	// Another key under the id kb is not the gateway's: it opens nothing.
	t.Setenv(seal.EnvVar, keyEntry(t, "kb"))
	code, out = run(t, runCheck, "-data", dir)
	if code != 1 {
		t.Fatalf("check with a wrong kb: exit %d; want 1\n%s", code, out)
	}
	mustContain(t, "check with a wrong kb", out, "is not the key the data file uses", `key id "kb"`)

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	t.Setenv(seal.EnvVar, kb)
	servesToken(t, mustStart(t, dir), sc, id, access)
}
