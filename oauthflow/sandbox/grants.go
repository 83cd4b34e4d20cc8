package sandbox

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"sort"
	"strings"
	"time"
)

type authCode struct {
	client      *clientReg
	account     *Account
	scopes      []string
	redirectURI string
	challenge   string
	expires     time.Time
	used        bool
	grantID     string // set once exchanged
}

type grant struct {
	id        string
	client    *clientReg
	account   *Account
	scopes    []string
	created   time.Time
	refreshes int
	access    []string // token hashes
	rtoks     []string // token hashes, oldest first; the last is current
}

type accessTok struct {
	grantID string
	scopes  []string
	expires time.Time
}

type refreshTok struct {
	grantID string
	used    bool
}

// Grant describes an active grant, for the console and tests.
type Grant struct {
	ID           string
	Product      string // Sandbox CRM or Sandbox Mail
	Email        string
	Name         string
	Scopes       []string
	CreatedAt    time.Time
	Refreshes    int
	AccessExpiry time.Time // latest expiry of its access tokens; zero if none is live
}

// Grants lists the active grants, oldest first.
func (s *Server) Grants() []Grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	out := make([]Grant, 0, len(s.grants))
	for _, g := range s.grants {
		sg := Grant{ID: g.id, Product: g.client.product, Email: g.account.Email, Name: g.account.Name, Scopes: slices.Clone(g.scopes), CreatedAt: g.created, Refreshes: g.refreshes}
		for _, h := range g.access {
			if a := s.access[h]; a != nil && a.expires.After(now) && a.expires.After(sg.AccessExpiry) {
				sg.AccessExpiry = a.expires
			}
		}
		out = append(out, sg)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// RevokeAccount revokes every grant of the account with that email, as an
// admin revoking the app at the provider would, and returns how many.
func (s *Server) RevokeAccount(email string) int {
	defer s.grantsChanged()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, g := range s.grants {
		if strings.EqualFold(g.account.Email, email) {
			s.revokeGrantLocked(id)
			n++
		}
	}
	return n
}

// ExpireAccessTokens makes every access token of the account's grants
// expire now; refresh tokens keep working. It returns how many grants were
// touched.
func (s *Server) ExpireAccessTokens(email string) int {
	defer s.grantsChanged()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, g := range s.grants {
		if strings.EqualFold(g.account.Email, email) {
			s.expireGrantLocked(id)
			n++
		}
	}
	return n
}

func (s *Server) expireGrantLocked(id string) {
	g := s.grants[id]
	if g == nil {
		return
	}
	for _, h := range g.access {
		delete(s.access, h)
	}
	g.access = nil
	_ = s.saveLocked()
}

func (s *Server) revokeGrantLocked(id string) {
	g := s.grants[id]
	if g == nil {
		return
	}
	for _, h := range g.access {
		delete(s.access, h)
	}
	for _, h := range g.rtoks {
		delete(s.rtoks, h)
	}
	delete(s.grants, id)
	_ = s.saveLocked()
}

// sweepLocked drops expired codes and access tokens.
func (s *Server) sweepLocked(now time.Time) {
	for h, c := range s.codes {
		if now.After(c.expires) {
			delete(s.codes, h)
		}
	}
	for h, a := range s.access {
		if now.After(a.expires) {
			delete(s.access, h)
			if g := s.grants[a.grantID]; g != nil {
				g.access = slices.DeleteFunc(g.access, func(x string) bool { return x == h })
			}
		}
	}
}

// grantsChanged tells OnGrantChange, outside the lock.
func (s *Server) grantsChanged() {
	if s.cfg.OnGrantChange != nil {
		s.cfg.OnGrantChange()
	}
}

func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashToken keys the maps, so a memory dump or a timing probe of a map
// lookup reveals no usable token.
func hashToken(t string) string {
	sum := sha256.Sum256([]byte(t))
	return string(sum[:])
}
