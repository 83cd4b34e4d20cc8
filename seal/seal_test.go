package seal_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/bont/switchboard/seal"
)

func mustKey(t *testing.T) []byte {
	t.Helper()
	k, err := seal.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustKeyring(t *testing.T, keys ...seal.Key) *seal.Keyring {
	t.Helper()
	kr, err := seal.NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestSealOpen(t *testing.T) {
	k1 := mustKey(t)
	kr := mustKeyring(t, seal.Key{ID: "k1", Secret: k1})
	other := mustKeyring(t, seal.Key{ID: "k9", Secret: mustKey(t)})
	sameIDOtherKey := mustKeyring(t, seal.Key{ID: "k1", Secret: mustKey(t)})

	plaintext := []byte("refresh-token-very-secret")
	ad := []byte("ws1\x00int1\x003")
	ct, err := kr.Seal(plaintext, ad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, plaintext) {
		t.Fatalf("ciphertext contains the plaintext")
	}

	tamper := func(i int) []byte {
		c := bytes.Clone(ct)
		c[i] ^= 0x01
		return c
	}

	tests := []struct {
		name    string
		kr      *seal.Keyring
		ct      []byte
		ad      []byte
		wantErr error // nil: must open to plaintext
	}{
		{"round trip", kr, ct, ad, nil},
		{"wrong associated data", kr, ct, []byte("ws1\x00int1\x004"), seal.ErrDecrypt},
		{"missing associated data", kr, ct, nil, seal.ErrDecrypt},
		{"tampered last byte", kr, tamper(len(ct) - 1), ad, seal.ErrDecrypt},
		{"tampered nonce", kr, tamper(2 + len("k1")), ad, seal.ErrDecrypt},
		{"tampered ciphertext body", kr, tamper(2 + len("k1") + 12), ad, seal.ErrDecrypt},
		{"unknown key id", other, ct, ad, seal.ErrUnknownKey},
		{"same id, different key", sameIDOtherKey, ct, ad, seal.ErrDecrypt},
		{"truncated", kr, ct[:10], ad, errAny},
		{"empty", kr, nil, ad, errAny},
		{"bad version", kr, append([]byte{9}, ct[1:]...), ad, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.kr.Open(tt.ct, tt.ad)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("got %v; want nil", err)
				}
				if !bytes.Equal(got, plaintext) {
					t.Fatalf("got %q; want %q", got, plaintext)
				}
				return
			}
			if err == nil {
				t.Fatalf("got nil error; want %v", tt.wantErr)
			}
			if tt.wantErr != errAny && !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v; want %v", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), string(plaintext)) || strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(k1)) {
				t.Fatalf("error leaks secret material: %v", err)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestSealUsesFreshNonce(t *testing.T) {
	kr := mustKeyring(t, seal.Key{ID: "k1", Secret: mustKey(t)})
	a, _ := kr.Seal([]byte("x"), nil)
	b, _ := kr.Seal([]byte("x"), nil)
	if bytes.Equal(a, b) {
		t.Fatalf("two seals of the same plaintext are identical")
	}
}

func TestRotation(t *testing.T) {
	oldKey, newKey := mustKey(t), mustKey(t)
	before := mustKeyring(t, seal.Key{ID: "k1", Secret: oldKey})
	oldCT, err := before.Seal([]byte("old data"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}

	after, err := seal.ParseKeys(seal.FormatKey("k2", newKey) + "," + seal.FormatKey("k1", oldKey))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := after.CurrentID(), "k2"; got != want {
		t.Fatalf("got %v; want %v", got, want)
	}
	pt, err := after.Open(oldCT, []byte("ad"))
	if err != nil {
		t.Fatalf("old key no longer opens old data: %v", err)
	}
	if got, want := string(pt), "old data"; got != want {
		t.Fatalf("got %v; want %v", got, want)
	}

	newCT, err := after.Seal([]byte("new data"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := seal.KeyID(newCT); id != "k2" {
		t.Fatalf("got key id %v; want %v", id, "k2")
	}
	if id, _ := seal.KeyID(oldCT); id != "k1" {
		t.Fatalf("got key id %v; want %v", id, "k1")
	}
	// The old keyring alone cannot read the new data.
	if _, err := before.Open(newCT, []byte("ad")); !errors.Is(err, seal.ErrUnknownKey) {
		t.Fatalf("got %v; want %v", err, seal.ErrUnknownKey)
	}
}

func TestParseKeys(t *testing.T) {
	good := mustKey(t)
	b64 := base64.StdEncoding.EncodeToString(good)
	raw := base64.RawURLEncoding.EncodeToString(good)
	short := base64.StdEncoding.EncodeToString(good[:16])

	tests := []struct {
		name    string
		in      string
		wantIDs []string
		wantErr string // substring; "" means success
	}{
		{"bare key", b64, []string{"k1"}, ""},
		{"with id", "prod-2024:" + b64, []string{"prod-2024"}, ""},
		{"raw url base64", "k1:" + raw, []string{"k1"}, ""},
		{"rotation", "k2:" + b64 + ", k1:" + raw, []string{"k2", "k1"}, ""},
		{"short key", "k1:" + short, nil, "decodes to 16 bytes; want exactly 32"},
		{"long key", "k1:" + base64.StdEncoding.EncodeToString(append(good, good...)), nil, "decodes to 64 bytes"},
		{"not base64", "k1:***", nil, "not valid base64"},
		{"empty id", ":" + b64, nil, "empty key id"},
		{"bad id", "k 1:" + b64, nil, "only letters"},
		{"empty key", "k1:", nil, "no key after the id"},
		{"empty entry", b64 + ",", nil, "entry 2 is empty"},
		{"duplicate id", "k1:" + b64 + ",k1:" + raw, nil, "appears twice"},
		{"duplicate default id", b64 + "," + raw, nil, "appears twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kr, err := seal.ParseKeys(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v; want error containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), b64) || strings.Contains(err.Error(), short) {
					t.Fatalf("error leaks the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v; want nil", err)
			}
			if got := kr.IDs(); strings.Join(got, ",") != strings.Join(tt.wantIDs, ",") {
				t.Fatalf("got %v; want %v", got, tt.wantIDs)
			}
		})
	}
}

func TestLoadFromEnv(t *testing.T) {
	key := mustKey(t)
	t.Setenv(seal.EnvVar, seal.FormatKey("envkey", key))
	dir := t.TempDir()
	for _, dev := range []bool{true, false} {
		kr, err := seal.Load(dir, dev)
		if err != nil {
			t.Fatalf("dev=%v: got %v; want nil", dev, err)
		}
		if got, want := kr.CurrentID(), "envkey"; got != want {
			t.Fatalf("got %v; want %v", got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, seal.KeyFileName)); !os.IsNotExist(err) {
		t.Fatalf("key file written although the env var is set: %v", err)
	}

	t.Setenv(seal.EnvVar, "k1:"+base64.StdEncoding.EncodeToString(key[:31]))
	if _, err := seal.Load(dir, true); err == nil || !strings.Contains(err.Error(), seal.EnvVar) || !strings.Contains(err.Error(), "31 bytes") {
		t.Fatalf("got %v; want an error naming %s and the size", err, seal.EnvVar)
	}
}

func TestLoadProductionRequiresEnv(t *testing.T) {
	t.Setenv(seal.EnvVar, "")
	dir := t.TempDir()
	_, err := seal.Load(dir, false)
	if err == nil || !strings.Contains(err.Error(), "set") || !strings.Contains(err.Error(), seal.EnvVar) {
		t.Fatalf("got %v; want an error saying to set %s", err, seal.EnvVar)
	}
	if _, err := os.Stat(filepath.Join(dir, seal.KeyFileName)); !os.IsNotExist(err) {
		t.Fatalf("production mode wrote a key file: %v", err)
	}
}

func TestLoadDevKeyFile(t *testing.T) {
	t.Setenv(seal.EnvVar, "")
	dir := filepath.Join(t.TempDir(), "data") // does not exist yet
	path := filepath.Join(dir, seal.KeyFileName)

	first, err := seal.Load(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
			t.Fatalf("got mode %v; want %v", got, want)
		}
	}

	ct, err := first.Seal([]byte("hello"), nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := seal.Load(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := second.Open(ct, nil); err != nil || string(pt) != "hello" {
		t.Fatalf("got %q, %v; want the key file reused", pt, err)
	}

	// The file's contents are valid as the environment variable.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(seal.EnvVar, strings.TrimSpace(string(b)))
	fromEnv, err := seal.Load(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fromEnv.Open(ct, nil); err != nil {
		t.Fatalf("got %v; want the file's key usable from %s", err, seal.EnvVar)
	}
}

func TestLoadDevRefusesReadableKeyFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no unix permissions")
	}
	t.Setenv(seal.EnvVar, "")
	dir := t.TempDir()
	if _, err := seal.Load(dir, true); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, seal.KeyFileName)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := seal.Load(dir, true)
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("got %v; want an error saying to chmod 600", err)
	}
}

func TestLoadDevConcurrentFirstStarts(t *testing.T) {
	t.Setenv(seal.EnvVar, "")
	dir := t.TempDir()
	const n = 8
	rings := make([]*seal.Keyring, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rings[i], errs[i] = seal.Load(dir, true)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start %d: got %v; want nil", i, err)
		}
	}
	ct, err := rings[0].Seal([]byte("same key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, kr := range rings {
		if _, err := kr.Open(ct, nil); err != nil {
			t.Fatalf("start %d got a different key: %v", i, err)
		}
	}
}

func TestLoadConfiguredNeverCreatesAKey(t *testing.T) {
	t.Setenv(seal.EnvVar, "")
	dir := t.TempDir()
	kr, from, err := seal.LoadConfigured(dir)
	if kr != nil || from != "" || err != nil {
		t.Fatalf("got %v from %q, %v; want no keyring and no error", kr, from, err)
	}
	if _, err := os.Stat(filepath.Join(dir, seal.KeyFileName)); !os.IsNotExist(err) {
		t.Fatalf("got %v; want no key file created", err)
	}
	created, err := seal.Load(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	kr, from, err = seal.LoadConfigured(dir)
	if err != nil || kr == nil || kr.CurrentID() != created.CurrentID() || from != filepath.Join(dir, seal.KeyFileName) {
		t.Fatalf("got %v from %q, %v; want the dev key file's keyring", kr, from, err)
	}
	key, _ := seal.NewRandomKey()
	t.Setenv(seal.EnvVar, seal.FormatKey("envkey", key))
	if kr, from, err = seal.LoadConfigured(dir); err != nil || kr.CurrentID() != "envkey" || from != seal.EnvVar {
		t.Fatalf("got %v from %q, %v; want the environment's keyring", kr, from, err)
	}
}
