package switchboard

import (
	"context"
	"errors"
	"time"
)

// TeardownRetryLimit is how long a teardown keeps retrying a provider that
// does not answer before it deletes the tokens anyway.
const TeardownRetryLimit = 24 * time.Hour

func (s *Service) kickTeardowns() {
	select {
	case s.kickChan() <- struct{}{}:
	default:
	}
}

// Run does the service's background work until ctx ends: teardown jobs
// (woken at once by a disconnect, and checked every interval) and the sweep
// of expired authorization states.
func (s *Service) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	lastSweep := time.Time{}
	for {
		s.RunDueTeardowns(ctx)
		if now := s.now(); now.Sub(lastSweep) > time.Minute {
			if n, err := s.Store.DeleteExpiredAuthStates(ctx, now); err != nil {
				s.Log().Error("sweeping expired authorization states", "err", err)
			} else if n > 0 {
				s.Log().Debug("swept expired authorization states", "count", n)
			}
			lastSweep = now
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.kickChan():
		}
	}
}

// RunDueTeardowns runs every teardown job that is due, one at a time.
func (s *Service) RunDueTeardowns(ctx context.Context) {
	for ctx.Err() == nil {
		jobs, err := s.Store.DueTeardowns(ctx, s.now(), 32)
		if err != nil {
			s.Log().Error("listing teardown jobs", "err", err)
			return
		}
		if len(jobs) == 0 {
			return
		}
		for _, j := range jobs {
			s.runTeardown(ctx, j)
		}
		if len(jobs) < 32 {
			return
		}
	}
}

func (s *Service) runTeardown(ctx context.Context, j *TeardownJob) {
	log := s.Log().With("workspace", j.WorkspaceID, "integration", j.IntegrationID, "generation", j.Generation, "job", j.ID)
	tokens, err := s.Store.FindTokens(ctx, j.WorkspaceID, j.IntegrationID, j.Generation)
	if err == nil {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = s.OAuth.Revoke(rctx, j.ProviderID, tokens)
		cancel()
		if ErrorCode(err) == EUNAVAILABLE || errors.Is(err, context.DeadlineExceeded) {
			if s.now().Sub(j.CreatedAt) < TeardownRetryLimit && ctx.Err() == nil {
				next := s.now().Add(backoff(j.Attempts))
				log.Warn("revocation failed; will retry", "attempt", j.Attempts+1, "next", next, "err", err)
				if err := s.Store.RescheduleTeardown(ctx, j.ID, next, ErrorMessage(err)); err != nil {
					log.Error("rescheduling teardown", "err", err)
				}
				return
			}
			log.Error("revocation kept failing; deleting the tokens without it", "err", err)
		} else if err != nil {
			log.Warn("provider refused revocation; deleting the tokens anyway", "err", err)
		}
	} else if ErrorCode(err) != ENOTFOUND {
		log.Error("reading tokens for teardown", "err", err)
		return
	}
	if err := s.Store.CompleteTeardown(ctx, j.ID); err != nil {
		log.Error("completing teardown", "err", err)
		return
	}
	log.Info("teardown complete")
}

// backoff is 1s, 2s, 4s, … capped at 10 minutes.
func backoff(attempts int) time.Duration {
	if attempts > 10 {
		return 10 * time.Minute
	}
	d := time.Second << attempts
	if d > 10*time.Minute {
		d = 10 * time.Minute
	}
	return d
}
