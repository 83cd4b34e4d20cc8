package bolt

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/bont/switchboard/switchboard"
	"go.etcd.io/bbolt"
)

// DueTeardowns returns up to limit queued jobs with NextAttemptAt <= now,
// oldest (lowest ID) first; limit <= 0 means all.
func (s *Store) DueTeardowns(ctx context.Context, now time.Time, limit int) ([]*switchboard.TeardownJob, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []*switchboard.TeardownJob{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bTeardown).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			job := new(switchboard.TeardownJob)
			if err := json.Unmarshal(v, job); err != nil {
				return fmt.Errorf("decode teardown job %d: %w", u64(k), err)
			}
			if !job.NextAttemptAt.After(now) {
				out = append(out, job)
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err, "due teardowns")
	}
	return out, nil
}

// RescheduleTeardown records a failed attempt: one more attempt, the next
// attempt time and the error. An unknown job is ENOTFOUND.
func (s *Store) RescheduleTeardown(ctx context.Context, id uint64, next time.Time, lastError string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bTeardown)
		job, err := loadJob(b, id)
		if err != nil {
			return err
		}
		job.Attempts++
		job.NextAttemptAt = utc(next)
		job.LastError = lastError
		return putJSON(b, u64bytes(id), job)
	})
	return wrap(err, "reschedule teardown %d", id)
}

// CompleteTeardown deletes the job and the credentials of its own
// generation, never another generation's. An unknown job is ENOTFOUND.
func (s *Store) CompleteTeardown(ctx context.Context, id uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bTeardown)
		job, err := loadJob(b, id)
		if err != nil {
			return err
		}
		if tokens := sub(wsBucket(tx, job.WorkspaceID), bTokens); tokens != nil {
			if err := tokens.Delete(tokenKey(job.IntegrationID, job.Generation)); err != nil {
				return err
			}
		}
		if meta := sub(wsBucket(tx, job.WorkspaceID), bTokenMeta); meta != nil {
			if err := meta.Delete(tokenKey(job.IntegrationID, job.Generation)); err != nil {
				return err
			}
		}
		return b.Delete(u64bytes(id))
	})
	return wrap(err, "complete teardown %d", id)
}

func loadJob(b *bbolt.Bucket, id uint64) (*switchboard.TeardownJob, error) {
	job := new(switchboard.TeardownJob)
	ok, err := getJSON(b, u64bytes(id), job)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, switchboard.Errorf(switchboard.ENOTFOUND, "Teardown job %d not found.", id)
	}
	return job, nil
}
