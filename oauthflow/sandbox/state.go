package sandbox

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// The sandbox's grants live in memory; with Config.StateFile they
// are also written to a file after every change (before a token response
// is sent, as a real provider commits before it answers), so a restart of
// the gateway keeps every sandbox connection working. Authorization codes
// are not kept: they live a minute. Only token hashes are written.

type stateFile struct {
	Version int         `json:"version"`
	Seq     int         `json:"seq"`
	Grants  []grantJSON `json:"grants"`
}

type grantJSON struct {
	ID string `json:"id"`
	// Client is the client id the grant was issued to; files written
	// before the mail client existed have none, meaning the CRM client.
	Client    string        `json:"client,omitempty"`
	Email     string        `json:"email"`
	Scopes    []string      `json:"scopes"`
	Created   time.Time     `json:"created"`
	Refreshes int           `json:"refreshes"`
	Access    []accessJSON  `json:"access"`
	Refresh   []refreshJSON `json:"refresh"` // oldest first; the last is current
}

type accessJSON struct {
	Hash    string    `json:"hash"`
	Scopes  []string  `json:"scopes"`
	Expires time.Time `json:"expires"`
}

type refreshJSON struct {
	Hash string `json:"hash"`
	Used bool   `json:"used"`
}

// loadState reads StateFile, if there is one.
func (s *Server) loadState() error {
	if s.cfg.StateFile == "" {
		return nil
	}
	data, err := os.ReadFile(s.cfg.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("oauthflow: sandbox state: %w", err)
	}
	var f stateFile
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("oauthflow: sandbox state %s: %w", s.cfg.StateFile, err)
	}
	s.seq = f.Seq
	for _, gj := range f.Grants {
		acct := account(gj.Email)
		client := s.clientByID(gj.Client)
		if acct == nil || client == nil {
			continue // an account or client the sandbox no longer has
		}
		g := &grant{id: gj.ID, client: client, account: acct, scopes: gj.Scopes, created: gj.Created, refreshes: gj.Refreshes}
		for _, a := range gj.Access {
			h, err := hex.DecodeString(a.Hash)
			if err != nil {
				return fmt.Errorf("oauthflow: sandbox state %s: bad hash", s.cfg.StateFile)
			}
			s.access[string(h)] = &accessTok{grantID: g.id, scopes: a.Scopes, expires: a.Expires}
			g.access = append(g.access, string(h))
		}
		for _, rt := range gj.Refresh {
			h, err := hex.DecodeString(rt.Hash)
			if err != nil {
				return fmt.Errorf("oauthflow: sandbox state %s: bad hash", s.cfg.StateFile)
			}
			s.rtoks[string(h)] = &refreshTok{grantID: g.id, used: rt.Used}
			g.rtoks = append(g.rtoks, string(h))
		}
		s.grants[g.id] = g
	}
	return nil
}

// saveLocked writes the state atomically (temporary file, fsync, rename)
// with mode 0600. A failure is logged by the caller's absence of
// persistence only: the sandbox keeps serving from memory.
func (s *Server) saveLocked() error {
	if s.cfg.StateFile == "" {
		return nil
	}
	f := stateFile{Version: 1, Seq: s.seq, Grants: make([]grantJSON, 0, len(s.grants))}
	for _, g := range s.grants {
		gj := grantJSON{ID: g.id, Client: g.client.id, Email: g.account.Email, Scopes: g.scopes, Created: g.created, Refreshes: g.refreshes}
		for _, h := range g.access {
			if a := s.access[h]; a != nil {
				gj.Access = append(gj.Access, accessJSON{Hash: hex.EncodeToString([]byte(h)), Scopes: a.scopes, Expires: a.expires})
			}
		}
		for _, h := range g.rtoks {
			if rt := s.rtoks[h]; rt != nil {
				gj.Refresh = append(gj.Refresh, refreshJSON{Hash: hex.EncodeToString([]byte(h)), Used: rt.used})
			}
		}
		f.Grants = append(f.Grants, gj)
	}
	data, err := json.Marshal(&f)
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.cfg.StateFile)
	tmp, err := os.CreateTemp(dir, ".sandbox-*.tmp")
	if err != nil {
		return fmt.Errorf("oauthflow: sandbox state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), s.cfg.StateFile)
}
