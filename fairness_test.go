package dlock_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/charconstpointer/dlock"
)

// Issue 10: a holder that releases and locks again at once does not take
// the lock back from a waiter (no barging), in the same process or in
// another.
func TestLock_no_barging_by_the_releaser(t *testing.T) {
	for _, sameProcess := range []bool{true, false} {
		name := "another process"
		if sameProcess {
			name = "same process"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				_, ns := memoryNodes(3)
				ra, err := dlock.New(ns)
				if err != nil {
					t.Fatal(err)
				}
				rb := ra
				if !sameProcess {
					if rb, err = dlock.New(ns); err != nil {
						t.Fatal(err)
					}
				}
				opts := []dlock.LockOpt{dlock.WithRetryInterval(100 * time.Millisecond), dlock.WithRetryJitter(0), dlock.WithRetryLimit(-1)}
				a, err := ra.LockContext(t.Context(), "k", "a", opts...)
				if err != nil {
					t.Fatal(err)
				}
				var bAt time.Time
				var wg sync.WaitGroup
				wg.Go(func() {
					b, err := rb.LockContext(t.Context(), "k", "b", opts...)
					if err != nil {
						t.Errorf("b: %v", err)
						return
					}
					bAt = time.Now()
					time.Sleep(50 * time.Millisecond)
					_ = b.Release()
				})
				time.Sleep(time.Second)
				_ = a.Release()
				a2, err := ra.LockContext(t.Context(), "k", "a", opts...) // at once
				if err != nil {
					t.Fatal(err)
				}
				a2At := time.Now()
				_ = a2.Release()
				wg.Wait()
				if !bAt.Before(a2At) {
					t.Errorf("the waiter got the lock at %v, the releaser again at %v: it barged", bAt, a2At)
				}
			})
		})
	}
}

// Issue 10: waiters are served longest first, so a waiter is not starved by
// peers that take the lock again and again: with three clients that lock
// again right after each release, a fourth that waits gets the lock within
// the time the ones ahead of it take.
func TestLock_longest_waiter_is_served(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, ns := memoryNodes(5)
		opts := []dlock.LockOpt{dlock.WithRetryInterval(20 * time.Millisecond), dlock.WithRetryJitter(10 * time.Millisecond), dlock.WithRetryLimit(-1)}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for range 3 { // greedy peers, each its own process
			r, err := dlock.New(ns)
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				for ctx.Err() == nil {
					l, err := r.LockContext(ctx, "k", "", opts...)
					if err != nil {
						return
					}
					time.Sleep(30 * time.Millisecond)
					_ = l.Release()
				}
			})
		}
		time.Sleep(200 * time.Millisecond)
		r, err := dlock.New(ns)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		l, err := r.LockContext(ctx, "k", "", opts...)
		if err != nil {
			t.Fatalf("the waiter never got the lock: %v", err)
		}
		waited := time.Since(start)
		_ = l.Release()
		cancel()
		wg.Wait()
		// Three peers ahead at most, 30ms each plus a poll to notice.
		if waited > 3*(30+30)*time.Millisecond+100*time.Millisecond {
			t.Errorf("the waiter waited %v, want at most about the three holds ahead of it", waited)
		}
	})
}
