package switchboard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// IdempotencyTTL is how long a mutation's first result is replayed.
const IdempotencyTTL = 24 * time.Hour

// Idempotent runs fn once per (workspace, token, key) within
// IdempotencyTTL. A repeat with the same operation and input returns the
// first result (decoded into out) and runs nothing; a repeat with another
// input is ECONFLICT. A failed fn stores nothing, so a retry runs again.
// An empty key just runs fn.
func (s *Service) Idempotent(ctx context.Context, key, operation string, input any, out any, fn func() (any, error)) error {
	if key == "" {
		res, err := fn()
		if err != nil {
			return err
		}
		return assign(out, res)
	}
	p, err := RequirePrincipal(ctx)
	if err != nil {
		return err
	}
	if len(key) > 200 {
		return &Error{Code: EINVALID, Field: "idempotencyKey", Message: "idempotencyKey must be at most 200 characters."}
	}
	in, err := json.Marshal(input)
	if err != nil {
		return fmt.Errorf("idempotency: %w", err)
	}
	h := sha256.Sum256(append([]byte(operation+"\x00"), in...))

	// Concurrent repeats of one key wait for the first.
	unlock := s.lockKey(p.WorkspaceID + "\x00" + p.TokenID + "\x00" + key)
	defer unlock()

	replay := func(r *IdempotencyRecord) error {
		if r.Operation != operation || !bytes.Equal(r.InputHash, h[:]) {
			return &Error{Code: ECONFLICT, Field: "idempotencyKey", Message: fmt.Sprintf("The idempotency key %q was used at %s with another operation or input; use a new key for a new request.", key, r.CreatedAt.Format(time.RFC3339))}
		}
		return json.Unmarshal(r.Result, out)
	}
	r, err := s.Store.FindIdempotency(ctx, p.WorkspaceID, p.TokenID, key)
	if err == nil {
		return replay(r)
	} else if ErrorCode(err) != ENOTFOUND {
		return fmt.Errorf("idempotency: %w", err)
	}
	res, err := fn()
	if err != nil {
		return err
	}
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("idempotency: %w", err)
	}
	now := s.now()
	rec := &IdempotencyRecord{WorkspaceID: p.WorkspaceID, TokenID: p.TokenID, Key: key, Operation: operation, InputHash: h[:], Result: data, CreatedAt: now, ExpiresAt: now.Add(IdempotencyTTL)}
	if _, err := s.Store.PutIdempotency(context.WithoutCancel(ctx), rec); err != nil {
		s.Log().Error("storing idempotency record", "workspace", p.WorkspaceID, "operation", operation, "err", err)
	}
	return json.Unmarshal(data, out)
}

func assign(out, res any) error {
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, out)
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

func (s *Service) lockKey(k string) func() {
	s.keysMu.Lock()
	if s.keys == nil {
		s.keys = map[string]*keyLock{}
	}
	l := s.keys[k]
	if l == nil {
		l = &keyLock{}
		s.keys[k] = l
	}
	l.refs++
	s.keysMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.keysMu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.keys, k)
		}
		s.keysMu.Unlock()
	}
}
