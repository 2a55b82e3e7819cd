package dlock_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/dlocktest"
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
				time.Sleep(time.Minute) // the calls left in the background end
				synctest.Wait()
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
		time.Sleep(time.Minute) // the calls left in the background end
		synctest.Wait()
	})
}

// Issue 10: a Lock call leaves the nodes' queues when it ends. One that got
// the key while a node refused it (the key was held there by another
// value) must not stay remembered there as the longest waiter, and one
// that gave up must not either: either would keep every other caller from
// the key on those nodes until the node forgot it (WaitTTL, about two node
// timeouts).
func TestLock_waiters_leave_the_queue(t *testing.T) {
	opts := []dlock.LockOpt{dlock.WithRetryInterval(50 * time.Millisecond), dlock.WithRetryJitter(0), dlock.WithRetryLimit(-1)}
	for _, slow := range []bool{false, true} {
		name := "got the key"
		if slow {
			// Node 4 answers after the attempt was decided: the late
			// refusal leaves the queue by itself.
			name += ", refused late"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ms, ns := memoryNodes(5)
				if slow {
					ns[4] = slowAcquire{ms[4], 50 * time.Millisecond}
				}
				ctx := t.Context()
				// Node 4 holds the key for someone else for the whole test.
				if ok, err := ms[4].Acquire(ctx, "k", "other", time.Hour); !ok || err != nil {
					t.Fatal(ok, err)
				}
				ra, rb, rc := threeRedlocks(t, ns)
				a, err := ra.LockContext(ctx, "k", "", opts...)
				if err != nil {
					t.Fatal(err)
				}
				got := make(chan *dlock.Lock)
				go func() {
					b, err := rb.LockContext(ctx, "k", "", opts...) // waits a second, refused by node 4 throughout
					if err != nil {
						t.Error(err)
					}
					got <- b
				}()
				time.Sleep(time.Second)
				_ = a.Release()
				b := <-got
				if b == nil {
					return
				}
				_ = b.Release()
				// Less than the nodes would remember b (WaitTTL: 2×50ms + 2×500ms),
				// more than a leave queued behind a "release once more" (500ms).
				time.Sleep(600 * time.Millisecond)
				synctest.Wait()
				if _, err := ms[4].Release(ctx, "k", "other"); err != nil {
					t.Fatal(err)
				}
				c, err := rc.TryLock(ctx, "k", "")
				if err != nil {
					t.Fatalf("a newcomer after the only waiter got the key and released it: %v", err)
				}
				time.Sleep(100 * time.Millisecond) // node 4's answer, when slow
				synctest.Wait()
				if v, _ := ms[4].Get("k"); v != c.Value() {
					t.Errorf("node 4 refused the newcomer: the waiter that got the key is still remembered there as waiting")
				}
				_ = c.Release()
				time.Sleep(time.Minute)
				synctest.Wait()
			})
		})
	}
	t.Run("gave up", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, ns := memoryNodes(5)
			ctx := t.Context()
			ra, rb, rc := threeRedlocks(t, ns)
			a, err := ra.LockContext(ctx, "k", "", opts...)
			if err != nil {
				t.Fatal(err)
			}
			bctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if _, err := rb.LockContext(bctx, "k", "", opts...); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("b: %v, want a deadline", err)
			}
			_ = a.Release()
			time.Sleep(600 * time.Millisecond) // as above
			synctest.Wait()
			c, err := rc.TryLock(ctx, "k", "")
			if err != nil {
				t.Fatalf("a newcomer after the only waiter gave up: %v", err)
			}
			_ = c.Release()
			time.Sleep(time.Minute)
			synctest.Wait()
		})
	})
}

// Issue 10: within one Redlock, Lock calls waiting for a key get it in the
// order they came, and only the first of them tries the nodes.
func TestLock_waiters_of_one_Redlock_go_in_arrival_order(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := fakes(5)
		var acquires atomic.Int64
		for _, f := range fs {
			f.hook = func(op string) {
				if op == "acquire" {
					acquires.Add(1)
				}
			}
		}
		r := mustNew(t, fs)
		opts := []dlock.LockOpt{dlock.WithRetryInterval(100 * time.Millisecond), dlock.WithRetryJitter(0), dlock.WithRetryLimit(-1)}
		ctx := t.Context()
		holder, err := r.LockContext(ctx, "k", "", opts...)
		if err != nil {
			t.Fatal(err)
		}
		const waiters = 6
		var (
			mu    sync.Mutex
			order []int
			wg    sync.WaitGroup
		)
		for i := range waiters {
			wg.Go(func() {
				l, err := r.LockContext(ctx, "k", "", opts...)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
				_ = l.Release()
			})
			time.Sleep(10 * time.Millisecond) // the next comes later
		}
		before := acquires.Load()
		time.Sleep(10 * time.Second)
		during := acquires.Load() - before
		_ = holder.Release()
		wg.Wait()
		if !slices.Equal(order, []int{0, 1, 2, 3, 4, 5}) {
			t.Errorf("the waiters got the lock in the order %v, want the order they came", order)
		}
		// 10s of waiting at one attempt per 100ms on 5 nodes: about 500
		// acquire calls when only the first waiter tries, 3000 when all do.
		if during > 600 {
			t.Errorf("%d acquire calls while %d Lock calls waited 10s: more than the first of them makes", during, waiters)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
	})
}

// slowAcquire is a memory node whose fenced acquires answer after a delay.
type slowAcquire struct {
	*dlocktest.MemoryNode
	delay time.Duration
}

func (n slowAcquire) AcquireFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	time.Sleep(n.delay)
	return n.MemoryNode.AcquireFenced(ctx, req)
}

// threeRedlocks returns three Redlocks over ns, as three processes.
func threeRedlocks(t *testing.T, ns []dlock.Node) (a, b, c *dlock.Redlock) {
	t.Helper()
	rs := make([]*dlock.Redlock, 3)
	for i := range rs {
		r, err := dlock.New(ns)
		if err != nil {
			t.Fatal(err)
		}
		rs[i] = r
	}
	return rs[0], rs[1], rs[2]
}
