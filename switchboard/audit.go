package switchboard

import (
	"context"
	"fmt"
	"time"
)

// AuditMaxEntries bounds each workspace's audit log (the store keeps the
// newest); AuditMaxAge drops older entries.
const (
	AuditMaxEntries = 10000
	AuditMaxAge     = 365 * 24 * time.Hour
)

// audit records a change made by p. A failure to record is logged; the
// change itself has already committed.
func (s *Service) audit(ctx context.Context, p *Principal, action, target, detail string) {
	e := auditEntry(p, s.now(), action, target, detail)
	if err := s.Store.AppendAudit(context.WithoutCancel(ctx), e); err != nil {
		s.Log().Error("writing audit entry", "workspace", p.WorkspaceID, "action", action, "err", err)
	}
}

// auditEntry is the record of a change made by p. Changes to an
// integration hand it to the store in Change.Audit, so it commits with
// them; other changes append it with audit.
func auditEntry(p *Principal, at time.Time, action, target, detail string) *AuditEntry {
	return &AuditEntry{WorkspaceID: p.WorkspaceID, At: at, UserID: p.UserID, TokenID: p.TokenID, Role: p.Role, Action: action, Target: target, Detail: detail}
}

// AuditPage is one page of the audit log, newest first.
type AuditPage struct {
	Entries    []*AuditEntry
	NextCursor string // empty on the last page
}

// AuditLog returns the viewer's workspace's audit log, newest first. It
// needs the ADMIN role and the integrations:read scope. after is the
// NextCursor of the previous page.
func (s *Service) AuditLog(ctx context.Context, first int, after string) (*AuditPage, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	if err := requireRole(p, RoleAdmin, "Reading the audit log"); err != nil {
		return nil, err
	}
	if first <= 0 || first > 500 {
		return nil, &Error{Code: EINVALID, Field: "first", Message: "first must be between 1 and 500."}
	}
	var before uint64
	if after != "" {
		if _, err := fmt.Sscanf(after, "a%d", &before); err != nil || before == 0 {
			return nil, &Error{Code: EINVALID, Field: "after", Message: "after must be a cursor returned by auditLog."}
		}
	}
	entries, err := s.Store.FindAudit(ctx, p.WorkspaceID, before, first+1)
	if err != nil {
		return nil, err
	}
	page := &AuditPage{Entries: entries}
	if len(entries) > first {
		page.Entries = entries[:first]
		page.NextCursor = fmt.Sprintf("a%d", entries[first-1].Seq)
	}
	return page, nil
}
