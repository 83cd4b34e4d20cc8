package web

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// LoginCodes are one-time, short-lived codes that stand for an API token,
// so a sign-in link can be printed (and land in a terminal's scrollback or
// a log) without the long-lived token in it. Codes live in memory only: a
// restart invalidates them. Safe for concurrent use.
type LoginCodes struct {
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	codes map[string]loginCode
}

type loginCode struct {
	token   string
	expires time.Time
}

// NewLoginCodes returns an empty set whose codes expire after ttl
// (DefaultCodeTTL when zero).
func NewLoginCodes(ttl time.Duration) *LoginCodes {
	if ttl <= 0 {
		ttl = DefaultCodeTTL
	}
	return &LoginCodes{ttl: ttl, now: time.Now, codes: map[string]loginCode{}}
}

// SetClock replaces the clock (tests).
func (c *LoginCodes) SetClock(now func() time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
}

// TTL is how long a code works.
func (c *LoginCodes) TTL() time.Duration { return c.ttl }

// Issue returns a new code for token.
func (c *LoginCodes) Issue(token string) string {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	code := base64.RawURLEncoding.EncodeToString(b)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked()
	c.codes[code] = loginCode{token: token, expires: c.now().Add(c.ttl)}
	return code
}

// Redeem returns the token code stands for and forgets the code: a code
// works once, and not after it expired.
func (c *LoginCodes) Redeem(code string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked()
	lc, ok := c.codes[code]
	if !ok {
		return "", false
	}
	delete(c.codes, code)
	return lc.token, true
}

func (c *LoginCodes) sweepLocked() {
	now := c.now()
	for k, v := range c.codes {
		if !now.Before(v.expires) {
			delete(c.codes, k)
		}
	}
}
