package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Profiles of the gateway, taken through its admin socket (pprof is
// served there, not on the public listener) when -profile DIR is set and
// the load command started the gateway.

func (t *target) adminClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", t.adminSock)
		},
	}}
}

// saveProfile fetches /debug/pprof/<path> into o.profileDir/<name>.
func (t *target) saveProfile(ctx context.Context, o *options, path, name string) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://admin/debug/pprof/"+path, nil)
	resp, err := t.adminClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("pprof %s: HTTP %d", path, resp.StatusCode)
	}
	f, err := os.Create(filepath.Join(o.profileDir, name))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// profiling reports whether profiles of t are wanted and possible.
func (t *target) profiling(o *options) bool { return o.profileDir != "" && t.adminSock != "" }

// snapshot saves the heap and goroutine profiles as <prefix>-heap.pb.gz
// and <prefix>-goroutine.pb.gz.
func (t *target) snapshot(ctx context.Context, o *options, prefix string) {
	if !t.profiling(o) {
		return
	}
	for _, p := range []string{"heap", "goroutine"} {
		if err := t.saveProfile(ctx, o, p, prefix+"-"+p+".pb.gz"); err != nil {
			o.logf("profile %s: %v", p, err)
		}
	}
}

// cpuProfile starts a CPU profile of o.profileTime, saved as
// <prefix>-cpu.pb.gz; the returned func waits for it.
func (t *target) cpuProfile(ctx context.Context, o *options, prefix string) (wait func()) {
	if !t.profiling(o) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		path := fmt.Sprintf("profile?seconds=%d", int(o.profileTime/time.Second))
		if err := t.saveProfile(ctx, o, path, prefix+"-cpu.pb.gz"); err != nil {
			o.logf("cpu profile: %v", err)
		}
	}()
	return func() { <-done }
}
