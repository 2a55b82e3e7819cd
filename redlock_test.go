package dlock_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/charconstpointer/dlock"
)

// bubble runs f in a synctest bubble (fake time), then lets a minute of fake
// time pass so that calls still running in the background (bounded by the
// node timeout) end. Any goroutine left after that, such as an auto-refresh
// that was never stopped, fails the test.
func bubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		f(t)
		time.Sleep(time.Minute)
		synctest.Wait()
	})
}

func fakes(n int) []*fakeNode {
	fs := make([]*fakeNode, n)
	for i := range fs {
		fs[i] = &fakeNode{}
	}
	return fs
}

func nodes(fs []*fakeNode) []dlock.Node {
	ns := make([]dlock.Node, len(fs))
	for i, f := range fs {
		ns[i] = f
	}
	return ns
}

func mustNew(t *testing.T, fs []*fakeNode, opts ...dlock.Option) *dlock.Redlock {
	t.Helper()
	r, err := dlock.New(nodes(fs), opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// holders counts the nodes on which key is held by value: exactly, or by
// one of the attempts of a holder that gave value (value, ".", a nonce).
func holders(fs []*fakeNode, key, value string) int {
	c := 0
	for _, f := range fs {
		if heldBy(f.value(key), value) {
			c++
		}
	}
	return c
}

// heldBy reports whether stored is value, or what an attempt of a holder
// that gave value stores: value, ".", and 16 hex digits.
func heldBy(stored, value string) bool {
	if stored == value {
		return true
	}
	rest, ok := strings.CutPrefix(stored, value+".")
	if !ok || len(rest) != 16 {
		return false
	}
	_, err := hex.DecodeString(rest)
	return err == nil
}

// keysLeft counts the nodes on which key is set to anything.
func keysLeft(fs []*fakeNode, key string) int {
	c := 0
	for _, f := range fs {
		if f.value(key) != "" {
			c++
		}
	}
	return c
}

func TestRedlock_Quorum(t *testing.T) {
	for n := 1; n <= 7; n++ {
		want := n/2 + 1
		t.Run("", func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				// Exactly a quorum grants: acquired.
				fs := fakes(n)
				for _, f := range fs[want:] {
					f.refuse = true
				}
				r := mustNew(t, fs)
				if got := r.Quorum(); got != want {
					t.Fatalf("N=%d: Quorum() = %d, want %d", n, got, want)
				}
				l, err := r.TryLock(t.Context(), "k", "v")
				if err != nil {
					t.Fatalf("N=%d, %d granting: TryLock: %v", n, want, err)
				}
				if err := l.Release(); err != nil {
					t.Fatalf("N=%d: Release: %v", n, err)
				}

				// One short of a quorum grants: not acquired, nothing left.
				fs = fakes(n)
				for _, f := range fs[want-1:] {
					f.refuse = true
				}
				r = mustNew(t, fs)
				_, err = r.TryLock(t.Context(), "k", "v")
				if !errors.Is(err, dlock.ErrNotAcquired) {
					t.Fatalf("N=%d, %d granting: err = %v, want ErrNotAcquired", n, want-1, err)
				}
				synctest.Wait()
				if got := keysLeft(fs, "k"); got != 0 {
					t.Fatalf("N=%d: %d keys left after failed acquire, want 0", n, got)
				}
			})
		})
	}
}

func TestLock_early_decision_success_does_not_wait_for_hung_nodes(t *testing.T) {
	bubble(t, func(t *testing.T) {
		stuck := make(chan struct{})
		fs := fakes(5)
		fs[3].stuck, fs[4].stuck = stuck, stuck // never answer until the test ends, ignoring ctx
		fs[0].delay, fs[1].delay, fs[2].delay = time.Millisecond, 2*time.Millisecond, 3*time.Millisecond
		r := mustNew(t, fs, dlock.WithNodeTimeout(time.Second))

		start := time.Now()
		l, err := r.Lock("k", "v", dlock.WithTTL(10*time.Second))
		if err != nil {
			t.Fatalf("Lock: %v", err)
		}
		if got, want := time.Since(start), 3*time.Millisecond; got != want {
			t.Errorf("Lock took %v, want %v (the third fastest node's delay)", got, want)
		}
		if got, want := l.ValidUntil(), start.Add(10*time.Second-(100*time.Millisecond+2*time.Millisecond)); !got.Equal(want) {
			t.Errorf("ValidUntil = %v, want start+TTL-drift = %v", got, want)
		}
		if err := l.Release(); err != nil {
			t.Fatalf("Release: %v", err)
		}
		// The hung nodes answer at last: their grant must be undone, after it.
		close(stuck)
		synctest.Wait()
		if got := keysLeft(fs, "k"); got != 0 {
			t.Errorf("%d keys left after Release, want 0", got)
		}
		for _, i := range []int{3, 4} {
			if got, want := fs[i].history(), []string{"acquire k", "release k"}; !equal(got, want) {
				t.Errorf("node %d calls = %q, want %q", i, got, want)
			}
		}
	})
}

func TestLock_early_decision_failure_does_not_wait_for_hung_nodes(t *testing.T) {
	bubble(t, func(t *testing.T) {
		stuck := make(chan struct{})
		fs := fakes(5)
		fs[0].stuck, fs[1].stuck = stuck, stuck
		for _, f := range fs[2:] {
			f.set("k", "other", time.Hour)
		}
		r := mustNew(t, fs, dlock.WithNodeTimeout(time.Second))

		start := time.Now()
		_, err := r.TryLock(t.Context(), "k", "v")
		if !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("TryLock: err = %v, want ErrNotAcquired", err)
		}
		if got := time.Since(start); got != 0 {
			t.Errorf("TryLock took %v, want 0: three refusals decide", got)
		}
		if msg := err.Error(); !strings.Contains(msg, "0 ok, 3 refused, 0 failed, 2 pending of 5 nodes (quorum 3)") {
			t.Errorf("error %q does not give the counts", msg)
		}
		close(stuck)
		synctest.Wait()
		// The late grants on nodes 0 and 1 were released after them.
		for i, f := range fs {
			want := ""
			if i >= 2 {
				want = "other"
			}
			if got := f.value("k"); got != want {
				t.Errorf("node %d holds %q, want %q", i, got, want)
			}
		}
		if got, want := fs[0].history(), []string{"acquire k", "release k"}; !equal(got, want) {
			t.Errorf("node 0 calls = %q, want %q", got, want)
		}
	})
}

func TestLock_failed_acquire_applied_late_is_released(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(3)
		fs[0].lateApply = 5 * time.Millisecond // fails, then sets the key behind the release
		fs[1].set("k", "other", time.Hour)
		fs[2].set("k", "other", time.Hour)
		r := mustNew(t, fs, dlock.WithNodeTimeout(50*time.Millisecond))
		_, err := r.TryLock(t.Context(), "k", "v", dlock.WithTTL(10*time.Second))
		if !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("err = %v, want ErrNotAcquired", err)
		}
		time.Sleep(time.Second) // well within the TTL
		synctest.Wait()
		if got := fs[0].value("k"); got != "" {
			t.Errorf("node 0 holds %q a second after the failed attempt, want nothing", got)
		}
	})
}

func TestLock_node_timeout_counts_as_failure(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(3)
		fs[1].hang, fs[2].hang = true, true
		r := mustNew(t, fs, dlock.WithNodeTimeout(50*time.Millisecond))
		start := time.Now()
		_, err := r.TryLock(t.Context(), "k", "v")
		if !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("err = %v, want ErrNotAcquired", err)
		}
		if got, want := time.Since(start), 50*time.Millisecond; got != want {
			t.Errorf("TryLock took %v, want the node timeout %v", got, want)
		}
		failed := map[int]bool{}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v: errors.Is(err, context.DeadlineExceeded) holds, but the caller's context had no deadline", err)
		}
		for _, ne := range nodeErrors(err) {
			if !errors.Is(ne, dlock.ErrNodeTimeout) {
				t.Errorf("node %d: %v, want ErrNodeTimeout", ne.Node, ne.Err)
			}
			failed[ne.Node] = true
		}
		if !failed[1] || !failed[2] || len(failed) != 2 {
			t.Errorf("err = %v, want a *NodeError for nodes 1 and 2", err)
		}
		time.Sleep(time.Second) // the releases on the hung nodes time out in the background
		synctest.Wait()
		if got := keysLeft(fs, "k"); got != 0 {
			t.Errorf("%d keys left, want 0", got)
		}
	})
}

func TestLock_default_node_timeout_is_5pct_of_TTL_at_least_10ms(t *testing.T) {
	for _, tc := range []struct {
		ttl, want time.Duration
	}{
		{10 * time.Second, 500 * time.Millisecond},
		{time.Second, 50 * time.Millisecond},
		{100 * time.Millisecond, 10 * time.Millisecond},
	} {
		t.Run(tc.ttl.String(), func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				fs := fakes(1)
				fs[0].hang = true
				r := mustNew(t, fs)
				start := time.Now()
				_, err := r.TryLock(t.Context(), "k", "v", dlock.WithTTL(tc.ttl))
				if !errors.Is(err, dlock.ErrNotAcquired) {
					t.Fatalf("err = %v, want ErrNotAcquired", err)
				}
				if got := time.Since(start); got != tc.want {
					t.Errorf("gave up after %v, want %v", got, tc.want)
				}
			})
		})
	}
}

func TestLock_validity_boundary(t *testing.T) {
	// TTL 100ms and DriftFactor 0.01: drift = 1ms + 2ms, so a round that
	// takes 97ms leaves no validity and must fail (and clean up), and one
	// that takes 96ms leaves 1ms.
	for _, tc := range []struct {
		delay time.Duration
		ok    bool
	}{
		{96 * time.Millisecond, true},
		{97 * time.Millisecond, false},
		{98 * time.Millisecond, false},
	} {
		t.Run(tc.delay.String(), func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				fs := fakes(3)
				for _, f := range fs {
					f.delay = tc.delay
				}
				r := mustNew(t, fs, dlock.WithNodeTimeout(time.Second))
				start := time.Now()
				l, err := r.TryLock(t.Context(), "k", "v", dlock.WithTTL(100*time.Millisecond), dlock.WithDriftFactor(0.01))
				if tc.ok {
					if err != nil {
						t.Fatalf("TryLock: %v", err)
					}
					if got, want := l.ValidUntil(), start.Add(97*time.Millisecond); !got.Equal(want) {
						t.Errorf("ValidUntil = start+%v, want start+97ms", got.Sub(start))
					}
					if err := l.Release(); err != nil {
						t.Errorf("Release: %v", err)
					}
				} else {
					if !errors.Is(err, dlock.ErrNotAcquired) || !strings.Contains(err.Error(), "no validity left") {
						t.Fatalf("err = %v, want ErrNotAcquired for no validity left", err)
					}
				}
				time.Sleep(time.Second) // the releases take the nodes' delay too
				synctest.Wait()
				if got := keysLeft(fs, "k"); got != 0 {
					t.Errorf("%d keys left, want 0", got)
				}
			})
		})
	}
}

func TestLock_retries_then_gives_up(t *testing.T) {
	for _, limit := range []int{0, 1, 5} {
		t.Run("", func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				fs := fakes(3)
				for _, f := range fs {
					f.set("k", "other", time.Hour)
				}
				r := mustNew(t, fs)
				start := time.Now()
				_, err := r.Lock("k", "v", dlock.WithRetryLimit(limit), dlock.WithRetryInterval(100*time.Millisecond), dlock.WithRetryJitter(0))
				if !errors.Is(err, dlock.ErrNotAcquired) {
					t.Fatalf("err = %v, want ErrNotAcquired", err)
				}
				synctest.Wait() // the node past the decision answers too
				if got, want := fs[0].count("acquire"), limit+1; got != want {
					t.Errorf("RetryLimit %d: %d attempts, want %d", limit, got, want)
				}
				if got, want := time.Since(start), time.Duration(limit)*100*time.Millisecond; got != want {
					t.Errorf("RetryLimit %d: took %v, want %v", limit, got, want)
				}
				synctest.Wait()
			})
		})
	}
}

func TestLock_retry_jitter_bounds(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(1)
		fs[0].set("k", "other", time.Hour)
		var mu sync.Mutex
		var times []time.Time
		probe := &probeNode{Node: fs[0], onAcquire: func() {
			mu.Lock()
			times = append(times, time.Now())
			mu.Unlock()
		}}
		r, err := dlock.New([]dlock.Node{probe}, dlock.WithRand(rand.NewChaCha8([32]byte{1})))
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.Lock("k", "v", dlock.WithRetryLimit(50), dlock.WithRetryInterval(100*time.Millisecond), dlock.WithRetryJitter(40*time.Millisecond))
		if !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("err = %v, want ErrNotAcquired", err)
		}
		if len(times) != 51 {
			t.Fatalf("%d attempts, want 51", len(times))
		}
		seen := map[time.Duration]bool{}
		for i := 1; i < len(times); i++ {
			gap := times[i].Sub(times[i-1])
			if gap < 100*time.Millisecond || gap >= 140*time.Millisecond {
				t.Errorf("gap %d = %v, want in [100ms, 140ms)", i, gap)
			}
			seen[gap] = true
		}
		if len(seen) < 10 {
			t.Errorf("only %d distinct gaps over 50 retries: jitter is not random", len(seen))
		}
		synctest.Wait()
	})
}

func TestLock_default_jitter_is_half_the_retry_interval(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(1)
		fs[0].set("k", "other", time.Hour)
		r := mustNew(t, fs)
		start := time.Now()
		_, err := r.Lock("k", "v", dlock.WithRetryLimit(20), dlock.WithRetryInterval(time.Second))
		if !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("err = %v", err)
		}
		got := time.Since(start)
		if got < 20*time.Second || got >= 30*time.Second {
			t.Errorf("20 retries took %v, want in [20s, 30s)", got)
		}
		if got == 20*time.Second {
			t.Errorf("20 retries took exactly 20s: no jitter")
		}
		synctest.Wait()
	})
}

// probeNode wraps a Node and calls onAcquire before each Acquire.
type probeNode struct {
	dlock.Node
	onAcquire func()
}

func (p *probeNode) Acquire(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	p.onAcquire()
	return p.Node.Acquire(ctx, key, value, ttl)
}

func TestLock_acquires_once_the_holder_releases(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(5)
		r := mustNew(t, fs)
		first, err := r.Lock("k", "a")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(time.Second)
			first.Release()
		}()
		start := time.Now()
		second, err := r.Lock("k", "b", dlock.WithRetryInterval(100*time.Millisecond), dlock.WithRetryJitter(0))
		if err != nil {
			t.Fatalf("second Lock: %v", err)
		}
		// The attempt due at 1s may run just before or just after the release.
		if got := time.Since(start); got != time.Second && got != 1100*time.Millisecond {
			t.Errorf("second Lock took %v, want 1s or 1.1s", got)
		}
		synctest.Wait() // the nodes past the quorum answer too
		if got := holders(fs, "k", "b"); got < 3 {
			t.Errorf("second holder on %d nodes, want a majority", got)
		}
		second.Release()
		synctest.Wait()
	})
}

func TestLock_context(t *testing.T) {
	t.Run("ended before the call: no node contacted", func(t *testing.T) {
		bubble(t, func(t *testing.T) {
			fs := fakes(3)
			r := mustNew(t, fs)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			_, err := r.LockContext(ctx, "k", "v")
			if !errors.Is(err, context.Canceled) || !errors.Is(err, dlock.ErrNotAcquired) {
				t.Fatalf("err = %v, want context.Canceled and ErrNotAcquired", err)
			}
			if got := fs[0].count("acquire"); got != 0 {
				t.Errorf("%d acquires, want 0", got)
			}
		})
	})
	t.Run("ends during the round", func(t *testing.T) {
		bubble(t, func(t *testing.T) {
			fs := fakes(3)
			for _, f := range fs {
				f.delay = time.Second
			}
			r := mustNew(t, fs, dlock.WithNodeTimeout(5*time.Second))
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := r.LockContext(ctx, "k", "v")
			if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, dlock.ErrNotAcquired) {
				t.Fatalf("err = %v, want context.DeadlineExceeded and ErrNotAcquired", err)
			}
			if got := time.Since(start); got != 100*time.Millisecond {
				t.Errorf("returned after %v, want 100ms", got)
			}
			synctest.Wait()
			if got := keysLeft(fs, "k"); got != 0 {
				t.Errorf("%d keys left, want 0", got)
			}
		})
	})
	t.Run("ends during the retry wait", func(t *testing.T) {
		bubble(t, func(t *testing.T) {
			fs := fakes(3)
			for _, f := range fs {
				f.set("k", "other", time.Hour)
			}
			r := mustNew(t, fs)
			ctx, cancel := context.WithTimeout(t.Context(), 250*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := r.LockContext(ctx, "k", "v", dlock.WithRetryLimit(-1), dlock.WithRetryInterval(100*time.Millisecond), dlock.WithRetryJitter(0))
			if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, dlock.ErrNotAcquired) {
				t.Fatalf("err = %v, want context.DeadlineExceeded and ErrNotAcquired", err)
			}
			if got := time.Since(start); got != 250*time.Millisecond {
				t.Errorf("returned after %v, want 250ms", got)
			}
			if got := fs[0].count("acquire"); got != 3 {
				t.Errorf("%d attempts, want 3 (at 0, 100ms, 200ms)", got)
			}
			synctest.Wait()
		})
	})
	t.Run("ends during a refresh", func(t *testing.T) {
		bubble(t, func(t *testing.T) {
			fs := fakes(3)
			r := mustNew(t, fs, dlock.WithNodeTimeout(5*time.Second))
			l, err := r.Lock("k", "v")
			if err != nil {
				t.Fatal(err)
			}
			before := l.ValidUntil()
			for _, f := range fs {
				mutate(func() { f.delay = time.Second })
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
			defer cancel()
			err = l.Refresh(ctx)
			if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, dlock.ErrLockLost) {
				t.Fatalf("Refresh err = %v, want context.DeadlineExceeded and not ErrLockLost", err)
			}
			if !l.ValidUntil().Equal(before) {
				t.Errorf("ValidUntil changed by a cancelled refresh")
			}
			select {
			case <-l.Lost():
				t.Errorf("Lost closed by a cancelled refresh")
			default:
			}
			for _, f := range fs {
				mutate(func() { f.delay = 0 })
			}
			if err := l.Release(); err != nil {
				t.Errorf("Release: %v", err)
			}
			synctest.Wait()
		})
	})
	t.Run("ends during a release: the release still completes", func(t *testing.T) {
		bubble(t, func(t *testing.T) {
			fs := fakes(3)
			r := mustNew(t, fs, dlock.WithNodeTimeout(5*time.Second))
			l, err := r.Lock("k", "v")
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fs {
				mutate(func() { f.delay = time.Second })
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
			defer cancel()
			if err := l.ReleaseContext(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("ReleaseContext err = %v, want context.DeadlineExceeded", err)
			}
			time.Sleep(2 * time.Second)
			synctest.Wait()
			if got := keysLeft(fs, "k"); got != 0 {
				t.Errorf("%d keys left after a cancelled release, want 0", got)
			}
		})
	})
}

func TestLock_Refresh(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(5)
		r := mustNew(t, fs)
		l, err := r.Lock("k", "v", dlock.WithTTL(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		mutate(func() { fs[0].delay = 5 * time.Millisecond }) // slower than the quorum: does not set the pace
		start := time.Now()
		if err := l.Refresh(t.Context()); err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		if got, want := l.ValidUntil(), start.Add(time.Second-12*time.Millisecond); !got.Equal(want) {
			t.Errorf("ValidUntil = refresh start + %v, want + 988ms", got.Sub(start))
		}
		time.Sleep(900 * time.Millisecond) // past the first validity, within the refreshed one
		select {
		case <-l.Lost():
			t.Fatal("Lost closed within the refreshed validity")
		default:
		}
		if got := holders(fs, "k", "v"); got != 5 {
			t.Errorf("held on %d nodes, want 5", got)
		}

		// Another holder took the key on a majority: the refresh fails and the
		// lock is lost.
		for _, f := range fs[:3] {
			f.set("k", "thief", time.Hour)
		}
		err = l.Refresh(t.Context())
		if !errors.Is(err, dlock.ErrLockLost) {
			t.Fatalf("Refresh after theft: err = %v, want ErrLockLost", err)
		}
		select {
		case <-l.Lost():
		default:
			t.Fatal("Lost not closed after a failed refresh")
		}
		if err := l.Refresh(t.Context()); !errors.Is(err, dlock.ErrLockLost) {
			t.Errorf("Refresh of a lost lock: err = %v, want ErrLockLost", err)
		}
		if err := l.Release(); !errors.Is(err, dlock.ErrLockLost) {
			t.Errorf("Release of a lost lock: err = %v, want ErrLockLost", err)
		}
		synctest.Wait()
		if got := holders(fs, "k", "thief"); got != 3 {
			t.Errorf("the thief holds %d nodes after our Release, want 3: Release deleted another holder's key", got)
		}
		if got := holders(fs, "k", "v"); got != 0 {
			t.Errorf("our value left on %d nodes after Release, want 0", got)
		}
	})
}

func TestLock_Lost_closes_when_validity_runs_out(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(3)
		r := mustNew(t, fs)
		start := time.Now()
		l, err := r.Lock("k", "v", dlock.WithTTL(time.Second), dlock.WithDriftFactor(0))
		if err != nil {
			t.Fatal(err)
		}
		<-l.Lost()
		if got, want := time.Since(start), time.Second-2*time.Millisecond; got != want {
			t.Errorf("Lost closed after %v, want %v", got, want)
		}
		if err := l.Refresh(t.Context()); !errors.Is(err, dlock.ErrLockLost) {
			t.Errorf("Refresh after expiry: err = %v, want ErrLockLost", err)
		}
		if err := l.Release(); !errors.Is(err, dlock.ErrLockLost) {
			t.Errorf("Release after expiry: err = %v, want ErrLockLost", err)
		}
	})
}

func TestLock_auto_refresh(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(5)
		r := mustNew(t, fs)
		l, err := r.Lock("k", "v", dlock.WithTTL(time.Second), dlock.WithRefreshInterval(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second) // ten TTLs
		select {
		case <-l.Lost():
			t.Fatal("Lost closed while auto-refresh runs on healthy nodes")
		default:
		}
		if got := holders(fs, "k", "v"); got != 5 {
			t.Errorf("held on %d nodes, want 5", got)
		}
		if got := fs[0].count("extend"); got != 33 {
			t.Errorf("%d refreshes in 10s every 300ms, want 33", got)
		}
		// A minority failing does not lose the lock.
		mutate(func() { fs[0].fail, fs[1].fail = errFake, errFake })
		time.Sleep(2 * time.Second)
		select {
		case <-l.Lost():
			t.Fatal("Lost closed with only a minority failing")
		default:
		}
		// A majority failing for longer than the validity does, when the
		// validity of the last successful refresh runs out.
		mutate(func() { fs[2].fail = errFake })
		synctest.Wait() // a refresh due at this instant has settled either way
		until := l.ValidUntil()
		<-l.Lost()
		if got := time.Now(); !got.Equal(until) {
			t.Errorf("Lost closed at %v, want at the last validity %v", got, until)
		}
		synctest.Wait() // the refresh goroutine has ended: synctest would report it otherwise
		for _, f := range fs {
			mutate(func() { f.fail = nil })
		}
		if err := l.Release(); !errors.Is(err, dlock.ErrLockLost) {
			t.Errorf("Release after loss: err = %v, want ErrLockLost", err)
		}
		synctest.Wait()
		if got := keysLeft(fs, "k"); got != 0 {
			t.Errorf("%d keys left, want 0", got)
		}
	})
}

func TestLock_auto_refresh_rides_out_a_short_outage(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(5)
		r := mustNew(t, fs)
		l, err := r.Lock("k", "v", dlock.WithTTL(time.Second), dlock.WithRefreshInterval(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
		mutate(func() {
			for _, f := range fs[:3] {
				f.hang = true // a majority times out, shorter than the validity
			}
		})
		time.Sleep(600 * time.Millisecond)
		mutate(func() {
			for _, f := range fs[:3] {
				f.hang = false
			}
		})
		time.Sleep(2 * time.Second)
		select {
		case <-l.Lost():
			t.Fatal("Lost closed by an outage shorter than the validity")
		default:
		}
		if got := holders(fs, "k", "v"); got != 5 {
			t.Errorf("held on %d nodes after the outage, want 5", got)
		}
		if err := l.Release(); err != nil {
			t.Errorf("Release: %v", err)
		}
	})
}

func TestLock_Refresh_transient_failure_keeps_the_lock(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(3)
		r := mustNew(t, fs)
		l, err := r.Lock("k", "v")
		if err != nil {
			t.Fatal(err)
		}
		before := l.ValidUntil()
		mutate(func() { fs[0].fail, fs[1].fail = errFake, errFake })
		err = l.Refresh(t.Context())
		if err == nil || errors.Is(err, dlock.ErrLockLost) || !errors.Is(err, errFake) {
			t.Fatalf("Refresh: err = %v, want the node errors and not ErrLockLost", err)
		}
		if !l.ValidUntil().Equal(before) {
			t.Errorf("ValidUntil changed by a failed refresh")
		}
		select {
		case <-l.Lost():
			t.Fatal("Lost closed by a transient refresh failure")
		default:
		}
		mutate(func() { fs[0].fail, fs[1].fail = nil, nil })
		time.Sleep(100 * time.Millisecond)
		if err := l.Refresh(t.Context()); err != nil {
			t.Fatalf("Refresh after recovery: %v", err)
		}
		if !l.ValidUntil().After(before) {
			t.Errorf("ValidUntil not extended after recovery")
		}
		l.Release()
	})
}

func TestLock_auto_refresh_stops_on_Release(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(3)
		r := mustNew(t, fs)
		l, err := r.Lock("k", "v", dlock.WithTTL(time.Second), dlock.WithRefreshInterval(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
		if err := l.Release(); err != nil {
			t.Fatalf("Release: %v", err)
		}
		<-l.Lost()
		n := fs[0].count("extend")
		time.Sleep(time.Second)
		if got := fs[0].count("extend"); got != n {
			t.Errorf("%d refreshes after Release, want 0", got-n)
		}
	})
}

func TestLock_Release(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(5)
		r := mustNew(t, fs)
		l, err := r.Lock("k", "v")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(); err != nil {
			t.Fatalf("Release: %v", err)
		}
		synctest.Wait()
		if got := keysLeft(fs, "k"); got != 0 {
			t.Errorf("%d keys left, want 0", got)
		}
		select {
		case <-l.Lost():
		default:
			t.Error("Lost not closed by Release")
		}
		// Another holder takes the key; a second Release must not touch it.
		other, err := r.Lock("k", "w")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(); !errors.Is(err, dlock.ErrLockLost) {
			t.Errorf("second Release: err = %v, want ErrLockLost", err)
		}
		synctest.Wait()
		if got := holders(fs, "k", "w"); got != 5 {
			t.Errorf("other holder on %d nodes after a stale Release, want 5", got)
		}
		if err := other.Release(); err != nil {
			t.Errorf("other Release: %v", err)
		}
	})
}

func TestLock_Release_without_majority(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(3)
		r := mustNew(t, fs)
		l, err := r.Lock("k", "v")
		if err != nil {
			t.Fatal(err)
		}
		mutate(func() { fs[0].fail, fs[1].fail = errFake, errFake })
		err = l.Release()
		if err == nil || errors.Is(err, dlock.ErrLockLost) || !errors.Is(err, errFake) {
			t.Fatalf("err = %v, want the node errors, not ErrLockLost: the lock was held", err)
		}
		var ne *dlock.NodeError
		if !errors.As(err, &ne) {
			t.Fatalf("no *NodeError in %v", err)
		}
	})
}

func TestLock_concurrent_use(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(5)
		r := mustNew(t, fs)
		l, err := r.Lock("k", "v", dlock.WithRefreshInterval(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 10 {
					_ = l.Refresh(t.Context())
					_ = l.ValidUntil()
					time.Sleep(100 * time.Millisecond)
				}
			})
		}
		wg.Go(func() {
			time.Sleep(500 * time.Millisecond)
			_ = l.Release()
		})
		wg.Wait()
		synctest.Wait()
		if got := keysLeft(fs, "k"); got != 0 {
			t.Errorf("%d keys left, want 0", got)
		}
	})
}

func TestLock_mutual_exclusion_on_fake_nodes(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(5)
		fs[1].flaky, fs[3].delay = 3, 2*time.Millisecond
		r := mustNew(t, fs)
		var mu sync.Mutex
		inside, acquired := 0, 0
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 20 {
					l, err := r.Lock("k", "", dlock.WithRetryLimit(-1), dlock.WithRetryInterval(time.Millisecond))
					if err != nil {
						t.Errorf("Lock: %v", err)
						return
					}
					mu.Lock()
					inside++
					acquired++
					if inside != 1 {
						t.Errorf("%d holders at once", inside)
					}
					mu.Unlock()
					time.Sleep(time.Millisecond)
					mu.Lock()
					inside--
					mu.Unlock()
					// The flaky node may fail the release on a majority, but
					// the lock was held: never ErrLockLost.
					if err := l.Release(); errors.Is(err, dlock.ErrLockLost) {
						t.Errorf("Release: %v", err)
					}
				}
			})
		}
		wg.Wait()
		if acquired != 160 {
			t.Errorf("%d acquisitions, want 160", acquired)
		}
		synctest.Wait()
	})
}

func TestLock_node_errors_are_reported(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(3)
		fs[1].fail, fs[2].panics = errFake, true
		r := mustNew(t, fs)
		_, err := r.TryLock(t.Context(), "k", "v")
		if !errors.Is(err, dlock.ErrNotAcquired) || !errors.Is(err, errFake) {
			t.Fatalf("err = %v, want ErrNotAcquired joined with the node error", err)
		}
		var ne *dlock.NodeError
		if !errors.As(err, &ne) {
			t.Fatalf("no *NodeError in %v", err)
		}
		if !strings.Contains(err.Error(), "node 2: node panicked") {
			t.Errorf("err = %v, want node 2's panic reported as an error", err)
		}
		synctest.Wait()
	})
}

func TestLock_minority_failing_still_acquires(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(5)
		fs[0].fail, fs[4].hang = errFake, true
		r := mustNew(t, fs)
		l, err := r.Lock("k", "v")
		if err != nil {
			t.Fatalf("Lock with a minority failing: %v", err)
		}
		l.Release()
		synctest.Wait()
	})
}

func TestLock_value_and_key(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(3)
		r := mustNew(t, fs, dlock.WithKeyPrefix("app:"))
		l, err := r.Lock("k", "")
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Key(); got != "k" {
			t.Errorf("Key() = %q, want %q", got, "k")
		}
		synctest.Wait()
		v := l.Value()
		if len(v) != 32 || strings.Trim(v, "0123456789abcdef") != "" {
			t.Errorf("generated value %q, want 32 hex digits", v)
		}
		if got := holders(fs, "app:k", v); got != 3 {
			t.Errorf("value held under the prefixed key on %d nodes, want 3", got)
		}
		if got := keysLeft(fs, "k"); got != 0 {
			t.Errorf("unprefixed key set on %d nodes", got)
		}
		l2, err := r.Lock("k2", "")
		if err != nil {
			t.Fatal(err)
		}
		if l2.Value() == v {
			t.Errorf("two generated values are equal")
		}
		l.Release()
		l2.Release()

		// WithRand makes generated values reproducible.
		a := mustNew(t, fakes(1), dlock.WithRand(rand.NewChaCha8([32]byte{7})))
		b := mustNew(t, fakes(1), dlock.WithRand(rand.NewChaCha8([32]byte{7})))
		la, _ := a.Lock("k", "")
		lb, _ := b.Lock("k", "")
		if la.Value() != lb.Value() {
			t.Errorf("same source gave %q and %q", la.Value(), lb.Value())
		}
		la.Release()
		lb.Release()
		synctest.Wait()
	})
}

func TestLock_logs_never_show_the_value(t *testing.T) {
	bubble(t, func(t *testing.T) {
		var buf bytes.Buffer
		var mu sync.Mutex
		log := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
		fs := fakes(3)
		for _, f := range fs {
			f.set("k", "other", time.Hour)
		}
		r := mustNew(t, fs, dlock.WithLogger(log))
		const secret = "s3cr3t-value-0123456789"
		_, lockErr := r.Lock("k", secret, dlock.WithRetryLimit(2))
		if !errors.Is(lockErr, dlock.ErrNotAcquired) {
			t.Fatalf("err = %v", lockErr)
		}
		l, err := mustNew(t, fakes(3), dlock.WithLogger(log)).Lock("k", secret, dlock.WithTTL(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		<-l.Lost()
		synctest.Wait()
		mu.Lock()
		out := buf.String()
		mu.Unlock()
		if !strings.Contains(out, "acquire attempt failed") || !strings.Contains(out, "lock lost") {
			t.Errorf("log lacks attempts or losses:\n%s", out)
		}
		if strings.Contains(out, secret) || strings.Contains(lockErr.Error(), secret) {
			t.Errorf("the lock value appears in the log or error")
		}
	})
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestNew_and_Lock_reject_bad_input(t *testing.T) {
	var nilFake *fakeNode
	for _, tc := range []struct {
		name  string
		nodes []dlock.Node
		opts  []dlock.Option
		field string
	}{
		{"no nodes", nil, nil, "nodes"},
		{"nil node", []dlock.Node{&fakeNode{}, nil}, nil, "nodes[1]"},
		{"typed nil node", []dlock.Node{nilFake}, nil, "nodes[0]"},
		{"nil clock", nil, []dlock.Option{dlock.WithClock(nil)}, "Clock"},
		{"nil logger", nil, []dlock.Option{dlock.WithLogger(nil)}, "Logger"},
		{"nil rand", nil, []dlock.Option{dlock.WithRand(nil)}, "Rand"},
		{"zero node timeout", nil, []dlock.Option{dlock.WithNodeTimeout(0)}, "NodeTimeout"},
		{"negative node timeout", nil, []dlock.Option{dlock.WithNodeTimeout(-time.Second)}, "NodeTimeout"},
		{"bad defaults", nil, []dlock.Option{dlock.WithDefaults(dlock.WithTTL(0))}, "TTL"},
	} {
		t.Run("New/"+tc.name, func(t *testing.T) {
			ns := tc.nodes
			if ns == nil && tc.field != "nodes" {
				ns = []dlock.Node{&fakeNode{}}
			}
			r, err := dlock.New(ns, tc.opts...)
			if !errors.Is(err, dlock.ErrInvalidConfig) || r != nil {
				t.Fatalf("New: (%v, %v), want nil and ErrInvalidConfig", r, err)
			}
			if !strings.Contains(err.Error(), tc.field+" = ") {
				t.Errorf("error %q does not name %s", err, tc.field)
			}
		})
	}

	for _, tc := range []struct {
		name  string
		key   string
		opts  []dlock.LockOpt
		field string
	}{
		{"empty key", "", nil, "key"},
		{"zero TTL", "k", []dlock.LockOpt{dlock.WithTTL(0)}, "TTL"},
		{"negative TTL", "k", []dlock.LockOpt{dlock.WithTTL(-time.Second)}, "TTL"},
		{"negative retry interval", "k", []dlock.LockOpt{dlock.WithRetryInterval(-1)}, "RetryInterval"},
		{"negative jitter", "k", []dlock.LockOpt{dlock.WithRetryJitter(-1)}, "RetryJitter"},
		{"retry limit -2", "k", []dlock.LockOpt{dlock.WithRetryLimit(-2)}, "RetryLimit"},
		{"negative drift", "k", []dlock.LockOpt{dlock.WithDriftFactor(-0.1)}, "DriftFactor"},
		{"drift 1", "k", []dlock.LockOpt{dlock.WithDriftFactor(1)}, "DriftFactor"},
		{"drift NaN", "k", []dlock.LockOpt{dlock.WithDriftFactor(math.NaN())}, "DriftFactor"},
		{"negative refresh", "k", []dlock.LockOpt{dlock.WithRefreshInterval(-1)}, "RefreshInterval"},
		{"refresh = TTL", "k", []dlock.LockOpt{dlock.WithTTL(time.Second), dlock.WithRefreshInterval(time.Second)}, "RefreshInterval"},
		{"refresh > default TTL", "k", []dlock.LockOpt{dlock.WithRefreshInterval(time.Minute)}, "RefreshInterval"},
	} {
		t.Run("Lock/"+tc.name, func(t *testing.T) {
			f := &fakeNode{}
			r := mustNew(t, []*fakeNode{f})
			l, err := r.TryLock(t.Context(), tc.key, "v", tc.opts...)
			if !errors.Is(err, dlock.ErrInvalidConfig) || l != nil {
				t.Fatalf("TryLock: (%v, %v), want nil and ErrInvalidConfig", l, err)
			}
			if !strings.Contains(err.Error(), tc.field+" = ") {
				t.Errorf("error %q does not name %s", err, tc.field)
			}
			if got := len(f.history()); got != 0 {
				t.Errorf("%d node calls for bad input, want 0", got)
			}
		})
	}

	t.Run("nil options and nil ctx", func(t *testing.T) {
		bubble(t, func(t *testing.T) {
			r, err := dlock.New([]dlock.Node{&fakeNode{}}, nil)
			if err != nil {
				t.Fatalf("New with a nil Option: %v", err)
			}
			//lint:ignore SA1012 a nil ctx is the bad input under test
			if _, err := r.LockContext(nil, "k", "v"); !errors.Is(err, dlock.ErrInvalidConfig) {
				t.Errorf("LockContext(nil ctx): err = %v, want ErrInvalidConfig", err)
			}
			l, err := r.Lock("k", "v", nil)
			if err != nil {
				t.Fatalf("Lock with a nil LockOpt: %v", err)
			}
			//lint:ignore SA1012 a nil ctx is the bad input under test
			if err := l.Refresh(nil); !errors.Is(err, dlock.ErrInvalidConfig) {
				t.Errorf("Refresh(nil): err = %v, want ErrInvalidConfig", err)
			}
			//lint:ignore SA1012 a nil ctx is the bad input under test
			if err := l.ReleaseContext(nil); !errors.Is(err, dlock.ErrInvalidConfig) {
				t.Errorf("ReleaseContext(nil): err = %v, want ErrInvalidConfig", err)
			}
			l.Release()
		})
	})
}

func TestLock_WithDefaults(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(1)
		fs[0].set("k", "other", time.Hour)
		r := mustNew(t, fs, dlock.WithDefaults(dlock.WithRetryLimit(2), dlock.WithRetryInterval(time.Second), dlock.WithRetryJitter(0)))
		start := time.Now()
		_, err := r.Lock("k", "v")
		if !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatal(err)
		}
		if got := time.Since(start); got != 2*time.Second {
			t.Errorf("took %v, want 2s from the defaults", got)
		}
		// Per-lock options override the defaults.
		start = time.Now()
		_, err = r.Lock("k", "v", dlock.WithRetryLimit(0))
		if !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatal(err)
		}
		if got := time.Since(start); got != 0 {
			t.Errorf("took %v, want 0 with RetryLimit 0", got)
		}
		synctest.Wait()
	})
}

// nodeErrors returns every *dlock.NodeError joined into err.
func nodeErrors(err error) []*dlock.NodeError {
	var out []*dlock.NodeError
	var walk func(error)
	walk = func(err error) {
		if ne, ok := err.(*dlock.NodeError); ok {
			out = append(out, ne)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
