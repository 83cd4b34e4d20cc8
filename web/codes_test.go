package web

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A code is redeemed once, however many try at the same time.
func TestLoginCodeRedeemsOnce(t *testing.T) {
	c := NewLoginCodes(time.Minute)
	code := c.Issue("sbt_x")
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tok, ok := c.Redeem(code); ok {
				if tok != "sbt_x" {
					t.Errorf("token: got %q; want sbt_x", tok)
				}
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if got := wins.Load(); got != 1 {
		t.Fatalf("redeemed: got %d times; want once", got)
	}
}

func TestLoginCodeExpires(t *testing.T) {
	now := time.Unix(1000, 0)
	c := NewLoginCodes(5 * time.Minute)
	c.SetClock(func() time.Time { return now })
	code := c.Issue("sbt_x")
	now = now.Add(5*time.Minute - time.Second)
	other := c.Issue("sbt_y")
	if _, ok := c.Redeem(other); !ok {
		t.Fatal("a fresh code: got refused; want redeemed")
	}
	now = now.Add(time.Second)
	if _, ok := c.Redeem(code); ok {
		t.Fatal("a code at its expiry: got redeemed; want refused")
	}
}
