package crashtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/bont/switchboard/bolt"
)

// TestDiskFull puts the data directory on a small tmpfs, fills it, and
// checks that mutations fail with a clear error and are never
// acknowledged, reads keep working, and writes recover by themselves once
// space is freed. It needs root (to mount); CI runs as root.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway binary")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a size-limited tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })

	bin := gatewayBinary(t)
	g := start(t, bin, dir, freeAddr(t))
	c := &client{base: g.base, token: g.token}
	id := c.connect(t, "ada@sandbox.test")

	// Fill the file system but for a little room.
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, max(free-96<<10, 0)), 0o600); err != nil && !strings.Contains(err.Error(), "no space") {
		t.Fatal(err)
	}

	acked := map[string]bool{}
	var refused []string
	next := 5
	value := func() string { next++; return strconv.Itoa(next) }
	for i := 0; i < 1000 && len(refused) < 5; i++ {
		v := value()
		_, err := c.gqlErr(`mutation($id: ID!, $v: String!) { configureIntegration(input: {id: $id, settings: [{key: "sync_interval_minutes", value: $v}]}) { revision } }`,
			map[string]any{"id": id, "v": v})
		if err == nil {
			acked[v] = true
			continue
		}
		if err.code != "UNAVAILABLE" || !strings.Contains(err.message, "storage is full") {
			t.Fatalf("mutation on a full disk: got %s %q; want UNAVAILABLE saying the storage is full", err.code, err.message)
		}
		refused = append(refused, v)
	}
	if len(refused) == 0 {
		t.Fatal("the file system never filled up")
	}

	// Reads are still served.
	if _, err := c.gql(`query($id: ID!) { integration(id: $id) { status } }`, map[string]any{"id": id}); err != nil {
		t.Fatalf("read on a full disk: %v", err)
	}
	resp, err := httpc.Get(g.base + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz on a full disk: %v %v", resp, err)
	}
	resp.Body.Close()

	// Free the space: writes recover without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	v := value()
	if _, err := c.gql(`mutation($id: ID!, $v: String!) { configureIntegration(input: {id: $id, settings: [{key: "sync_interval_minutes", value: $v}]}) { revision } }`,
		map[string]any{"id": id, "v": v}); err != nil {
		t.Fatalf("after freeing space: %v", err)
	}
	acked[v] = true

	// Nothing refused was written; everything acknowledged was.
	g.stop(t, syscall.SIGTERM)
	rep, verr := bolt.Verify(filepath.Join(dir, "switchboard.db"))
	if verr != nil || !rep.OK() {
		t.Fatalf("data file after disk full: %v %v", verr, rep)
	}
	s := openStopped(t, dir)
	defer s.Close()
	evs, err2 := s.EventsAfter(context.Background(), "ws_demo", 0, 0)
	if err2 != nil {
		t.Fatal(err2)
	}
	written := map[string]bool{}
	for _, ev := range evs {
		if x, ok := ev.Integration.SettingValues["sync_interval_minutes"]; ok && ev.Kind == "CONFIGURED" {
			written[x] = true
		}
	}
	for _, v := range refused {
		if written[v] {
			t.Errorf("refused value %s was written", v)
		}
	}
	for v := range acked {
		if !written[v] {
			t.Errorf("acknowledged value %s is missing", v)
		}
	}
	t.Logf("disk full: %d acknowledged, %d refused with UNAVAILABLE, recovered after freeing space", len(acked), len(refused))
}
