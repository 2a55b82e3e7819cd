package dlock_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/charconstpointer/dlock"
)

// scriptedNode is a key store whose calls fail or stall by call number, to
// model one bad connection among several.
type scriptedNode struct {
	mu         sync.Mutex
	keys       map[string]entry
	acquires   int
	releases   int
	acquireErr func(n int) error         // error for the n-th Acquire (1-based)
	stall      func(n int) time.Duration // delay of the n-th Release
	down       bool
}

func (s *scriptedNode) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

func (s *scriptedNode) Acquire(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return false, errFake
	}
	s.acquires++
	if s.acquireErr != nil {
		if err := s.acquireErr(s.acquires); err != nil {
			return false, err
		}
	}
	if e, ok := s.keys[key]; ok && time.Now().Before(e.expires) {
		return false, nil
	}
	if s.keys == nil {
		s.keys = map[string]entry{}
	}
	s.keys[key] = entry{value: value, expires: time.Now().Add(ttl)}
	return true, nil
}

func (s *scriptedNode) Extend(context.Context, string, string, time.Duration) (bool, error) {
	return false, errFake
}

func (s *scriptedNode) Release(ctx context.Context, key, value string) (bool, error) {
	s.mu.Lock()
	if s.down {
		s.mu.Unlock()
		return false, errFake
	}
	s.releases++
	n := s.releases
	s.mu.Unlock()
	if s.stall != nil {
		if d := s.stall(n); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return false, ctx.Err()
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.keys[key]; !ok || e.value != value || !time.Now().Before(e.expires) {
		return false, nil
	}
	delete(s.keys, key)
	return true, nil
}

// A call that gave up waiting for the call before it on a node must still
// not end before it: otherwise a stale release (of attempt 1, stalled on
// its connection) lands after attempt 3's grant of the same value, deletes
// it, and a second client gets a majority while the first lock is valid.
func TestLock_stale_release_never_overtakes_a_later_acquire(t *testing.T) {
	bubble(t, func(t *testing.T) {
		n0 := &scriptedNode{}
		n1 := &scriptedNode{down: true}
		n2 := &scriptedNode{
			acquireErr: func(n int) error {
				if n == 1 {
					return errors.New("connection reset: outcome unknown")
				}
				return nil
			},
			stall: func(n int) time.Duration {
				if n == 1 {
					return 5 * time.Second
				}
				return 0
			},
		}
		ns := []dlock.Node{n0, n1, n2}
		a, err := dlock.New(ns, dlock.WithNodeTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		la, err := a.Lock("k", "A", dlock.WithTTL(10*time.Second), dlock.WithRetryInterval(100*time.Millisecond), dlock.WithRetryJitter(0))
		if err != nil {
			return // not acquired: safe
		}
		time.Sleep(6 * time.Second) // the stalled release has landed by now
		n1.setDown(false)
		b, err := dlock.New(ns)
		if err != nil {
			t.Fatal(err)
		}
		lb, err := b.TryLock(t.Context(), "k", "B", dlock.WithTTL(10*time.Second))
		if err == nil {
			select {
			case <-la.Lost():
			default:
				t.Errorf("B acquired while A is valid until %v and A.Lost() is open", la.ValidUntil())
			}
			lb.Release()
		}
		la.Release()
	})
}

// A release must be sent however long the acquire before it on the node
// takes, even past the TTL (a client whose ReadTimeout exceeds the TTL).
func TestLock_Release_waits_for_a_straggler_that_outlasts_the_TTL(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(3)
		stuck := make(chan struct{})
		fs[2].stuck = stuck
		r := mustNew(t, fs)
		l, err := r.Lock("k", "", dlock.WithTTL(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		close(stuck) // the acquire reaches the node at last
		synctest.Wait()
		if v := fs[2].value("k"); v != "" {
			t.Errorf("key left on node 2 after Release: %q (calls %q)", v, fs[2].history())
		}
	})
}

func TestLock_retry_wait_saturates_instead_of_overflowing(t *testing.T) {
	bubble(t, func(t *testing.T) {
		fs := fakes(1)
		fs[0].refuse = true
		r := mustNew(t, fs)
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		_, err := r.LockContext(ctx, "k", "", dlock.WithRetryInterval(math.MaxInt64), dlock.WithRetryLimit(5))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want the context's deadline to end the wait", err)
		}
		if got := fs[0].count("acquire"); got != 1 {
			t.Errorf("%d attempts, want 1: the retry wait wrapped around", got)
		}
	})
}

// panicOnce panics on its first Read.
type panicOnce struct{ done bool }

func (p *panicOnce) Read(b []byte) (int, error) {
	if !p.done {
		p.done = true
		panic("rand failure")
	}
	return len(b), nil
}

func TestLock_panicking_rand_leaves_the_Redlock_usable(t *testing.T) {
	bubble(t, func(t *testing.T) {
		r := mustNew(t, fakes(1), dlock.WithRand(&panicOnce{}))
		func() {
			defer func() { _ = recover() }()
			r.Lock("k", "")
		}()
		l, err := r.TryLock(t.Context(), "k2", "")
		if err != nil {
			t.Fatalf("TryLock after a recovered panic: %v", err)
		}
		l.Release()
	})
}

func TestNew_validates_what_custom_options_set(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opt   dlock.Option
		field string
	}{
		{"negative node timeout", func(c *dlock.Config) { c.NodeTimeout = -time.Second }, "NodeTimeout"},
		{"nil clock", func(c *dlock.Config) { c.Clock = nil }, "Clock"},
		{"nil logger", func(c *dlock.Config) { c.Logger = nil }, "Logger"},
		{"nil rand", func(c *dlock.Config) { c.Rand = nil }, "Rand"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dlock.New(nodes(fakes(3)), tc.opt)
			if !errors.Is(err, dlock.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field+" = ") {
				t.Errorf("New: %v, want ErrInvalidConfig naming %s", err, tc.field)
			}
		})
	}
}

func TestNew_rejects_the_same_node_twice(t *testing.T) {
	f := &fakeNode{}
	_, err := dlock.New([]dlock.Node{f, &fakeNode{}, f})
	if !errors.Is(err, dlock.ErrInvalidConfig) || !strings.Contains(err.Error(), "nodes[2] = nodes[0]") {
		t.Errorf("New: %v, want ErrInvalidConfig naming nodes[2] = nodes[0]", err)
	}
}

func TestLock_rejects_settings_that_can_never_hold(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []dlock.LockOpt
		field string
	}{
		{"TTL within the drift allowance", []dlock.LockOpt{dlock.WithTTL(2 * time.Millisecond)}, "TTL"},
		{"refresh after the validity", []dlock.LockOpt{dlock.WithTTL(time.Second), dlock.WithRefreshInterval(990 * time.Millisecond)}, "RefreshInterval"},
		{"huge TTL with drift near 1", []dlock.LockOpt{dlock.WithTTL(math.MaxInt64), dlock.WithDriftFactor(math.Nextafter(1, 0))}, "TTL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mustNew(t, fakes(1)).TryLock(t.Context(), "k", "v", tc.opts...)
			if !errors.Is(err, dlock.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field+" = ") {
				t.Errorf("TryLock: %v, want ErrInvalidConfig naming %s", err, tc.field)
			}
		})
	}
}
