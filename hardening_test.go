package dlock_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/redis/go-redis/v9"

	"github.com/charconstpointer/dlock"
)

// exactly counts the nodes on which key holds exactly value.
func exactly(fs []*fakeNode, key, value string) int {
	c := 0
	for _, f := range fs {
		if f.value(key) == value {
			c++
		}
	}
	return c
}

// Issue 7, item 2: a failed attempt with the holder's own value must not
// delete the held lock, and dlock is not reentrant.
func TestTryLock_same_value_twice_leaves_the_holder_intact(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(5)
		r := mustNew(t, fs)
		other := mustNew(t, fs) // another process configured with the same worker name
		ctx := t.Context()
		l, err := r.TryLock(ctx, "k", "worker-1")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(l.Value(), "worker-1.") {
			t.Errorf("Value() = %q, want it to begin with the given value and a dot", l.Value())
		}
		for _, rl := range []*dlock.Redlock{r, other} {
			if _, err := rl.TryLock(ctx, "k", "worker-1"); !errors.Is(err, dlock.ErrNotAcquired) {
				t.Fatalf("second TryLock with the same value: %v, want ErrNotAcquired (not reentrant)", err)
			}
		}
		time.Sleep(time.Second) // any background cleanup has run
		synctest.Wait()
		// The holder keeps a majority, and no failed attempt left a key. (A
		// node that the holder's own acquire reached after a failed
		// attempt's need not hold it.)
		if got, left := exactly(fs, "k", l.Value()), keysLeft(fs, "k"); got < 3 || left != got {
			for i, f := range fs {
				t.Logf("node %d: %q; calls %q", i, f.value("k"), f.history())
			}
			t.Errorf("the holder's key is on %d nodes and %d keys are set, want a majority and no other key", got, left)
		}
		if !l.Held() || isClosed(l.Lost()) || l.Err() != nil {
			t.Errorf("Held = %v, Lost closed = %v, Err = %v; want held", l.Held(), isClosed(l.Lost()), l.Err())
		}
		if _, err := other.TryLock(ctx, "k", "worker-2"); !errors.Is(err, dlock.ErrNotAcquired) {
			t.Errorf("a third caller: %v, want ErrNotAcquired", err)
		}
		if err := l.Release(); err != nil {
			t.Errorf("Release: %v", err)
		}
	})
}

// Issue 7, item 2: a second handle with the same value is never hurt by
// the first handle's release that reaches the nodes late.
func TestLock_late_release_of_a_handle_spares_the_next_handle_of_the_same_value(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(3)
		r := mustNew(t, fs, dlock.WithNodeTimeout(10*time.Millisecond))
		ctx := t.Context()
		ttl := dlock.WithTTL(100 * time.Millisecond)
		a, err := r.TryLock(ctx, "k", "w", ttl)
		if err != nil {
			t.Fatal(err)
		}
		// Two of a's three releases lose their reply and land 300ms late.
		mutate(func() { fs[0].lateRelease, fs[1].lateRelease = 300*time.Millisecond, 300*time.Millisecond })
		_ = a.Release()
		mutate(func() { fs[0].lateRelease, fs[1].lateRelease = 0, 0 })
		time.Sleep(150 * time.Millisecond) // a's keys expired where the release had not landed
		b, err := r.TryLock(ctx, "k", "w", ttl, dlock.WithRefreshInterval(30*time.Millisecond))
		if err != nil {
			t.Fatalf("b: %v", err)
		}
		defer b.Release()
		time.Sleep(200 * time.Millisecond) // a's late releases land
		if _, err := r.TryLock(ctx, "k", "x", ttl); !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("another holder got the lock while b held it: %v", err)
		}
		if !b.Held() {
			t.Errorf("b lost the lock: %v", b.Err())
		}
		if got := exactly(fs, "k", b.Value()); got != 3 {
			t.Errorf("b's key is on %d nodes, want 3", got)
		}
	})
}

// Issue 7, item 6: a grant that lands after the Lock returned, behind a
// Refresh, is undone by the Release: every call of the lock whose outcome
// is unknown is released once more.
func TestLock_Release_undoes_a_late_grant_behind_a_refresh(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(5)
		fs[0].lateApply = 40 * time.Millisecond // the acquire errs, but lands 40ms later
		r := mustNew(t, fs)
		l, err := r.Lock("k", "v", dlock.WithTTL(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		if err := l.Refresh(t.Context()); err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
		if err := l.Release(); err != nil {
			t.Fatalf("Release: %v", err)
		}
		time.Sleep(time.Second) // well within the TTL
		synctest.Wait()
		if got := keysLeft(fs, "k"); got != 0 {
			t.Errorf("%d keys left a second after Release, want 0 (the late grant must be undone)", got)
		}
	})
}

// stepClock is the real clock (fake time in a bubble) whose readings can
// step: Now, Since and Until see the step at once; timers keep their pace,
// as a wall clock set by hand does to timers already running.
type stepClock struct {
	clock.Clock
	offset atomic.Int64
}

func newStepClock() *stepClock { return &stepClock{Clock: clock.New()} }

func (c *stepClock) step(d time.Duration)                             { c.offset.Add(int64(d)) }
func (c *stepClock) Now() time.Time                                   { return c.Clock.Now().Add(time.Duration(c.offset.Load())) }
func (c *stepClock) Since(t time.Time) time.Duration                  { return c.Now().Sub(t) }
func (c *stepClock) Until(t time.Time) time.Duration                  { return t.Sub(c.Now()) }
func (c *stepClock) AfterFunc(d time.Duration, f func()) *clock.Timer { return c.Clock.AfterFunc(d, f) }

// Issue 7, item 4: a round during which the clock steps back is not
// trusted: its elapsed time is negative, and the validity it would give
// ends after the keys expired.
func TestLock_clock_stepping_back_during_a_round_is_not_trusted(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(3)
		sc := newStepClock()
		var once sync.Once
		fs[0].hook = func(op string) {
			if op == "acquire" {
				once.Do(func() { sc.step(-time.Hour) })
			}
		}
		r := mustNew(t, fs, dlock.WithClock(sc))
		l, err := r.TryLock(t.Context(), "k", "v", dlock.WithTTL(time.Second))
		if err == nil {
			t.Fatalf("TryLock succeeded (valid until %v from now) across a backward clock step", sc.Until(l.ValidUntil()))
		}
		if !errors.Is(err, dlock.ErrNotAcquired) || !strings.Contains(err.Error(), "stepped back") {
			t.Errorf("err = %v, want ErrNotAcquired saying the clock stepped back", err)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if got := keysLeft(fs, "k"); got != 0 {
			t.Errorf("%d keys left, want 0", got)
		}

		// A refresh round across a step back keeps the old validity.
		l, err = r.TryLock(t.Context(), "k", "v", dlock.WithTTL(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		until := l.ValidUntil()
		var onceMore sync.Once
		stepOnExtend := func(op string) {
			if op == "extend" {
				onceMore.Do(func() { sc.step(-time.Hour) })
			}
		}
		mutate(func() {
			for _, f := range fs {
				f.hook = stepOnExtend
			}
		})
		if err := l.Refresh(t.Context()); err == nil || errors.Is(err, dlock.ErrLockLost) {
			t.Errorf("Refresh across a backward step: %v, want an error that does not say lost", err)
		}
		mutate(func() {
			for _, f := range fs {
				f.hook = nil
			}
		})
		if got := l.ValidUntil(); !got.Equal(until) {
			t.Errorf("ValidUntil moved from %v to %v", until, got)
		}
		_ = l.Release()
	})
}

// Issue 7, item 7: Held and Err see the end of the validity at once, even
// when the expiry timer has not fired (a clock that jumped, a process that
// resumed after a pause), and Lost agrees with them.
func TestLock_Held_and_Err(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(3)
		sc := newStepClock()
		r := mustNew(t, fs, dlock.WithClock(sc))
		l, err := r.Lock("k", "v", dlock.WithTTL(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if !l.Held() || l.Err() != nil || isClosed(l.Lost()) {
			t.Fatalf("fresh lock: Held = %v, Err = %v, Lost closed = %v", l.Held(), l.Err(), isClosed(l.Lost()))
		}
		sc.step(time.Second) // past ValidUntil; the expiry timer has not fired
		if l.Held() {
			t.Error("Held = true past ValidUntil")
		}
		if err := l.Err(); !errors.Is(err, dlock.ErrLockLost) || !strings.Contains(err.Error(), "validity") {
			t.Errorf("Err = %v, want ErrLockLost saying the validity ran out", err)
		}
		if !isClosed(l.Lost()) {
			t.Error("Lost open after Held said the lock is not held")
		}
		if err := l.Release(); !errors.Is(err, dlock.ErrLockLost) {
			t.Errorf("Release after expiry: %v, want ErrLockLost", err)
		}

		l, err = r.Lock("k2", "v")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
		if l.Held() || !errors.Is(l.Err(), dlock.ErrLockLost) || !strings.Contains(l.Err().Error(), "released") {
			t.Errorf("after Release: Held = %v, Err = %v; want false and an error saying released", l.Held(), l.Err())
		}
	})
}

// Issue 7, item 9: Refresh and ReleaseContext honour their context while
// another round of the same lock runs.
func TestLock_Refresh_and_Release_honour_ctx_while_another_round_runs(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(3)
		r := mustNew(t, fs)
		l, err := r.Lock("k", "v", dlock.WithTTL(20*time.Second)) // node timeout 1s
		if err != nil {
			t.Fatal(err)
		}
		mutate(func() {
			for _, f := range fs {
				f.hang = true
			}
		})
		go func() { _ = l.Refresh(context.Background()) }() // a round that takes the node timeout
		time.Sleep(time.Millisecond)

		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := l.Refresh(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Refresh: %v, want context.DeadlineExceeded", err)
		}
		if got := time.Since(start); got != 10*time.Millisecond {
			t.Errorf("Refresh returned after %v, want 10ms", got)
		}

		ctx, cancel = context.WithTimeout(t.Context(), 10*time.Millisecond)
		defer cancel()
		start = time.Now()
		if err := l.ReleaseContext(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("ReleaseContext: %v, want context.DeadlineExceeded", err)
		}
		if got := time.Since(start); got != 10*time.Millisecond {
			t.Errorf("ReleaseContext returned after %v, want 10ms", got)
		}
		if !isClosed(l.Lost()) {
			t.Error("Lost open after ReleaseContext")
		}
		mutate(func() {
			for _, f := range fs {
				f.hang = false
			}
		})
		time.Sleep(5 * time.Second) // the release goes on in the background
		synctest.Wait()
		if got := keysLeft(fs, "k"); got != 0 {
			t.Errorf("%d keys left, want 0: the release must still be sent", got)
		}
	})
}

// Issue 7, item 10: a Redlock built outside a synctest bubble works inside
// one (and in the next), after it was used outside.
func TestRedlock_built_outside_a_bubble_works_inside(t *testing.T) {
	fs := fakes(3)
	r := mustNew(t, fs)
	l, err := r.Lock("k", "v") // leaves idle workers outside any bubble
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	hung := time.AfterFunc(30*time.Second, func() { panic("TestRedlock_built_outside_a_bubble_works_inside: the bubble hung") })
	defer hung.Stop()
	for range 2 {
		synctest.Test(t, func(t *testing.T) {
			l, err := r.Lock("k", "v", dlock.WithRefreshInterval(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
			if !l.Held() {
				t.Errorf("lost inside the bubble: %v", l.Err())
			}
			if err := l.Release(); err != nil {
				t.Error(err)
			}
			time.Sleep(time.Second)
		})
	}
}

// Issue 7, item 10: goroutines do not depend on the injected clock: with a
// clock.Mock that is never advanced, none outlives its calls by much.
func TestRedlock_goroutines_end_with_a_mock_clock_that_never_moves(t *testing.T) {
	before := runtime.NumGoroutine()
	fs := fakes(5)
	r := mustNew(t, fs, dlock.WithClock(clock.NewMock()))
	for range 20 {
		l, err := r.Lock("k", "v")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > before {
		t.Errorf("%d goroutines 2s after the last call, want at most %d as before", got, before)
	}
}

// Issue 7, item 11: a zero slog.Logger is rejected, not a panic later.
func TestNew_rejects_a_zero_Logger(t *testing.T) {
	_, err := dlock.New(nodes(fakes(3)), dlock.WithLogger(&slog.Logger{}))
	if !errors.Is(err, dlock.ErrInvalidConfig) {
		t.Errorf("New(WithLogger(&slog.Logger{})) = %v, want ErrInvalidConfig", err)
	}
}

// Issue 7, item 14: when the caller's context ends during a round, the
// error keeps what the attempts saw.
func TestLock_ctx_end_keeps_the_attempts_node_errors(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(3)
		for _, f := range fs {
			f.hang = true
		}
		r := mustNew(t, fs, dlock.WithNodeTimeout(100*time.Millisecond))
		ctx, cancel := context.WithTimeout(t.Context(), 250*time.Millisecond) // ends during the third round
		defer cancel()
		_, err := r.LockContext(ctx, "report", "", dlock.WithRetryLimit(-1), dlock.WithRetryInterval(0), dlock.WithRetryJitter(0))
		if !errors.Is(err, dlock.ErrNotAcquired) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want ErrNotAcquired and context.DeadlineExceeded", err)
		}
		nodesSeen := map[int]bool{}
		timeouts := 0
		for _, ne := range nodeErrors(err) {
			nodesSeen[ne.Node] = true
			if errors.Is(ne, dlock.ErrNodeTimeout) {
				timeouts++
			}
		}
		// A majority of nodes explains the failure; a node still pending
		// when the last round was decided may have no error yet.
		if len(nodesSeen) < 2 || timeouts == 0 {
			t.Errorf("err = %v: names nodes %v, %d errors with a node timeout; want a majority named and the cause shown", err, nodesSeen, timeouts)
		}
	})
}

// Issue 7, item 16: an error quotes a readable prefix of a long key.
func TestLock_errors_quote_a_prefix_of_a_long_key(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(3)
		r := mustNew(t, fs)
		key := strings.Repeat("k", 1<<20)
		l, err := r.TryLock(t.Context(), key, "")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release()
		_, err = r.TryLock(t.Context(), key, "")
		if !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("err = %v, want ErrNotAcquired", err)
		}
		if n := len(err.Error()); n > 1024 {
			t.Errorf("error message is %d bytes long, want a short prefix of the key", n)
		}
		if !strings.Contains(err.Error(), "1048576 bytes") {
			t.Errorf("err = %.200s…, want it to give the key's length", err)
		}
	})
}

// Issue 7, item 17: RedisNodes takes a []*redis.Client as it is.
func TestRedisNodes_takes_a_slice_of_clients(t *testing.T) {
	cs := []*redis.Client{redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), redis.NewClient(&redis.Options{Addr: "127.0.0.1:2"})}
	defer cs[0].Close()
	defer cs[1].Close()
	if got := len(dlock.RedisNodes(cs...)); got != 2 {
		t.Errorf("len(RedisNodes(cs...)) = %d, want 2", got)
	}
	if _, err := dlock.New(dlock.RedisNodes(cs...)); err != nil {
		t.Errorf("New: %v", err)
	}
}

// Issue 7, item 18: a LockConfig decodes from JSON with Go duration
// strings (and numbers), and WithConfig applies it.
func TestLockConfig_JSON(t *testing.T) {
	cfg := dlock.DefaultLockConfig()
	in := `{"ttl":"30s","refresh_interval":"10s","retry_interval":"250ms","retry_limit":-1,"retry_jitter":0,"fencing":false}`
	if err := json.Unmarshal([]byte(in), &cfg); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	want := dlock.LockConfig{TTL: 30 * time.Second, RefreshInterval: 10 * time.Second, RetryInterval: 250 * time.Millisecond,
		RetryLimit: -1, DriftFactor: dlock.DefaultDriftFactor}
	if got := cfg; got.TTL != want.TTL || got.RefreshInterval != want.RefreshInterval || got.RetryInterval != want.RetryInterval ||
		got.RetryLimit != want.RetryLimit || got.RetryJitter != 0 || got.DriftFactor != want.DriftFactor {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"ttl":"30s"`) || !strings.Contains(string(out), `"retry_jitter":"0s"`) {
		t.Errorf("Marshal = %s, want durations as strings and the given jitter kept", out)
	}
	var again dlock.LockConfig
	if err := json.Unmarshal(out, &again); err != nil || again.TTL != cfg.TTL {
		t.Errorf("round trip: %+v, %v", again, err)
	}
	var n dlock.LockConfig
	if err := json.Unmarshal([]byte(`{"ttl":1000000000}`), &n); err != nil || n.TTL != time.Second {
		t.Errorf("a number of nanoseconds: %v, %v; want 1s", n.TTL, err)
	}
	for _, bad := range []string{`{"ttl":"thirty"}`, `{"ttl":true}`, `{"tll":"1s"}`, `[]`} {
		var c dlock.LockConfig
		if err := json.Unmarshal([]byte(bad), &c); err == nil {
			t.Errorf("Unmarshal(%s) = nil error", bad)
		}
	}

	// WithConfig sets every field: the decoded jitter of 0 means none.
	bubble(t, func(t *testing.T) {
		fs := fakes(3)
		r := mustNew(t, fs)
		holder, err := r.Lock("k", "")
		if err != nil {
			t.Fatal(err)
		}
		c := cfg
		c.TTL, c.RefreshInterval, c.RetryLimit, c.RetryInterval = time.Second, 0, 2, 100*time.Millisecond
		start := time.Now()
		_, err = r.Lock("k", "", dlock.WithConfig(c))
		if !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("err = %v", err)
		}
		if got := time.Since(start); got != 200*time.Millisecond {
			t.Errorf("two retries took %v, want exactly 200ms (no jitter)", got)
		}
		_ = holder.Release()
	})
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// uncomparableNode is a Node whose dynamic type cannot be compared with ==
// (it holds a slice), wrapped by a comparable struct.
type uncomparableNode struct {
	*fakeNode
	tags []string
}

type wrappedNode struct{ dlock.Node }

// Issue 7, item 3: New never panics on Node values that cannot be
// compared, and still tells two stores apart.
func TestNew_does_not_panic_on_uncomparable_nodes(t *testing.T) {
	fs := fakes(3)
	ns := []dlock.Node{
		wrappedNode{uncomparableNode{fs[0], []string{"a"}}},
		wrappedNode{uncomparableNode{fs[1], []string{"b"}}},
		wrappedNode{uncomparableNode{fs[2], nil}},
	}
	r, err := dlock.New(ns)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if r.Quorum() != 2 {
		t.Errorf("Quorum() = %d, want 2", r.Quorum())
	}
}
