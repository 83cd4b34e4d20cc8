package sandbox

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
)

// Testing is how a test breaks a sandbox on purpose: it injects faults,
// holds revocations and counts the requests each endpoint receives. A
// Server obeys one only when built with it (Config.Testing); production
// code builds none, so it has no fault to trip on and no hook to call. Its
// zero value is ready to use, and Servers built with the same Testing
// share its faults and counts (a test that restarts the sandbox keeps
// them). It is safe for concurrent use.
type Testing struct {
	mu     sync.Mutex
	faults map[string]*fault
	calls  map[string]int
	hold   chan struct{}
}

type fault struct {
	status int
	times  int
}

var endpoints = []string{"authorize", "token", "revoke", "userinfo"}

// intercept records a call and answers an injected fault, returning false
// when it did. A nil Testing records nothing and returns true.
func (t *Testing) intercept(w http.ResponseWriter, endpoint string) bool {
	if t == nil {
		return true
	}
	t.mu.Lock()
	if t.calls == nil {
		t.calls = map[string]int{}
	}
	t.calls[endpoint]++
	f := t.faults[endpoint]
	status := 0
	if f != nil && f.times > 0 {
		f.times--
		status = f.status
	}
	t.mu.Unlock()
	if status == 0 {
		return true
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	code := "temporarily_unavailable"
	if status < 500 && status != http.StatusTooManyRequests {
		code = "invalid_request"
	}
	writeOAuthError(w, status, code, "injected fault")
	return false
}

// waitRevocation blocks while revocations are held, and returns false when
// ctx ends first. A nil Testing returns true at once.
func (t *Testing) waitRevocation(ctx context.Context) bool {
	if t == nil {
		return true
	}
	t.mu.Lock()
	hold := t.hold
	t.mu.Unlock()
	if hold == nil {
		return true
	}
	select {
	case <-hold:
		return true
	case <-ctx.Done():
		return false
	}
}

// InjectFault makes the next times requests to endpoint ("authorize",
// "token", "revoke" or "userinfo") answer status with an OAuth error body.
// It replaces an earlier fault for that endpoint; times 0 clears it.
func (t *Testing) InjectFault(endpoint string, status, times int) {
	if !slices.Contains(endpoints, endpoint) {
		panic(fmt.Sprintf("oauthflow: sandbox has no endpoint %q", endpoint))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.faults == nil {
		t.faults = map[string]*fault{}
	}
	t.faults[endpoint] = &fault{status: status, times: times}
}

// HoldRevocations makes revocation requests wait (after being counted)
// until release is called or the request's context ends; a request whose
// context ends first revokes nothing. release may be called more than once.
func (t *Testing) HoldRevocations() (release func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.hold == nil {
		t.hold = make(chan struct{})
	}
	ch := t.hold
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			if t.hold == ch {
				t.hold = nil
			}
			t.mu.Unlock()
			close(ch)
		})
	}
}

// Calls returns how many requests endpoint has received, faults included.
func (t *Testing) Calls(endpoint string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.calls[endpoint]
}
