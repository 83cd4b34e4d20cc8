package sandbox

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
)

type fault struct {
	status int
	times  int
}

var endpoints = []string{"authorize", "token", "revoke", "userinfo"}

// count records a call and answers an injected fault, returning false when
// it did.
func (s *Server) count(w http.ResponseWriter, endpoint string) bool {
	s.mu.Lock()
	s.calls[endpoint]++
	f := s.faults[endpoint]
	status := 0
	if f != nil && f.times > 0 {
		f.times--
		status = f.status
	}
	s.mu.Unlock()
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

// InjectFault makes the next times requests to endpoint ("authorize",
// "token", "revoke" or "userinfo") answer status with an OAuth error body.
// It replaces an earlier fault for that endpoint; times 0 clears it.
func (s *Server) InjectFault(endpoint string, status, times int) {
	if !slices.Contains(endpoints, endpoint) {
		panic(fmt.Sprintf("oauthflow: sandbox has no endpoint %q", endpoint))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[endpoint] = &fault{status: status, times: times}
}

// HoldRevocations makes revocation requests wait (after being counted)
// until release is called or the request's context ends; a request whose
// context ends first revokes nothing. release may be called more than once.
func (s *Server) HoldRevocations() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold == nil {
		s.hold = make(chan struct{})
	}
	ch := s.hold
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.hold == ch {
				s.hold = nil
			}
			s.mu.Unlock()
			close(ch)
		})
	}
}

// Calls returns how many requests endpoint has received, faults included.
func (s *Server) Calls(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[endpoint]
}
