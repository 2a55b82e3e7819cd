package dlock_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/charconstpointer/dlock"
)

// countingNode counts the calls that are inside a node right now, and the
// most there ever were at once.
type countingNode struct {
	dlock.Node
	mu          sync.Mutex
	now, most   int
	total       int
	acquires    int
	releasesFor map[string]int // releases per key
}

func (n *countingNode) in(op, key string) func() {
	n.mu.Lock()
	n.now++
	n.total++
	n.most = max(n.most, n.now)
	switch op {
	case "acquire":
		n.acquires++
	case "release":
		if n.releasesFor == nil {
			n.releasesFor = map[string]int{}
		}
		n.releasesFor[key]++
	}
	n.mu.Unlock()
	return func() {
		n.mu.Lock()
		n.now--
		n.mu.Unlock()
	}
}

func (n *countingNode) Acquire(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	defer n.in("acquire", key)()
	return n.Node.Acquire(ctx, key, value, ttl)
}

func (n *countingNode) Extend(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	defer n.in("extend", key)()
	return n.Node.Extend(ctx, key, value, ttl)
}

func (n *countingNode) Release(ctx context.Context, key, value string) (bool, error) {
	defer n.in("release", key)()
	return n.Node.Release(ctx, key, value)
}

func (n *countingNode) stats() (now, most, total, acquires int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.now, n.most, n.total, n.acquires
}

// Issue 10: one node accepts calls and never answers them (a server that
// hangs, behind a client whose only limit is its read timeout, played here
// by a channel closed at the end). However many locks are taken and
// released on fresh keys, the calls sent to that node stay within
// WithMaxInFlight: once the bound is reached its acquires are not sent, and
// a release is not sent to a node that no call with the lock's value ever
// reached. When the node's calls finally return, the releases queued behind
// its acquires go out, and nothing is left running.
func TestLock_in_flight_bound_against_a_node_that_never_answers(t *testing.T) {
	const (
		bound = 8
		locks = 500
	)
	synctest.Test(t, func(t *testing.T) {
		fs := fakes(5)
		timeout := make(chan struct{})
		var once sync.Once
		endCalls := func() { once.Do(func() { close(timeout) }) }
		defer func() { // also when the test fails: the bubble must end
			endCalls()
			time.Sleep(time.Hour)
			synctest.Wait()
		}()
		fs[4].stuck = timeout
		ns := nodes(fs)
		hung := &countingNode{Node: fs[4]}
		ns[4] = hung
		r, err := dlock.New(ns, dlock.WithMaxInFlight(bound))
		if err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()
		for i := range locks {
			key := fmt.Sprintf("key-%d", i)
			l, err := r.LockContext(ctx, key, "", dlock.WithTTL(time.Hour), dlock.WithRetryLimit(0))
			if err != nil {
				t.Fatalf("lock %d: %v", i, err)
			}
			if err := l.ReleaseContext(ctx); err != nil {
				t.Fatalf("release %d: %v", i, err)
			}
			synctest.Wait() // the releases that go on in the background
			if n := holders(fs[:4], key, l.Value()); n != 0 {
				t.Fatalf("lock %d: still on %d of the answering nodes after Release", i, n)
			}
		}
		synctest.Wait()
		now, most, total, acquires := hung.stats()
		t.Logf("hung node: %d calls inside now, at most %d at once, %d in all (%d acquires)", now, most, total, acquires)
		if most > bound {
			t.Errorf("%d calls were inside the hung node at once; WithMaxInFlight(%d) bounds them", most, bound)
		}
		if acquires == 0 || acquires > bound {
			t.Errorf("%d acquires reached the hung node, want 1 to %d (WithMaxInFlight): the rest must be refused before sending", acquires, bound)
		}

		endCalls() // the client's timeout: every call inside returns
		time.Sleep(time.Hour)
		synctest.Wait()
		now, _, total, acquires = hung.stats()
		if now != 0 {
			t.Errorf("%d calls still inside the node after its calls returned", now)
		}
		// Every acquire that was sent is followed by its release.
		hung.mu.Lock()
		defer hung.mu.Unlock()
		if got := len(hung.releasesFor); got != acquires {
			t.Errorf("releases reached the node for %d keys, want one for each of the %d acquires sent (total calls %d)", got, acquires, total)
		}
		if n := len(fs[4].keys); n != 0 {
			t.Errorf("%d keys left on the node once its calls returned", n)
		}
	})
}

// The same outside a synctest bubble, on the real clock with the worker
// goroutines of a production Redlock: the goroutines stay bounded however
// many locks are taken, and end soon after the hung calls return.
func TestLock_goroutines_stay_bounded_with_a_node_that_never_answers(t *testing.T) {
	const (
		bound = 8
		locks = 2000
	)
	fs := fakes(5)
	timeout := make(chan struct{})
	fs[4].stuck = timeout
	r := mustNew(t, fs, dlock.WithMaxInFlight(bound))
	before := runtime.NumGoroutine()
	most := before
	for i := range locks {
		l, err := r.LockContext(t.Context(), fmt.Sprintf("key-%d", i), "", dlock.WithTTL(time.Hour), dlock.WithRetryLimit(0))
		if err != nil {
			t.Fatalf("lock %d: %v", i, err)
		}
		if err := l.ReleaseContext(t.Context()); err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
		most = max(most, runtime.NumGoroutine())
	}
	// Each acquire sent to the hung node holds a goroutine, and so does the
	// release waiting behind it; the answering nodes' workers come and go
	// (more of them at once on a loaded machine), however many locks.
	limit := before + 2*bound + 64
	t.Logf("goroutines: %d before, at most %d during %d Lock+Release (limit %d)", before, most, locks, limit)
	if most > limit {
		t.Errorf("%d goroutines during the run (%d before): not bounded by WithMaxInFlight(%d)", most, before, bound)
	}
	close(timeout)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines 5s after the hung calls returned, %d before the run", n, before)
	}
}
