package dlock_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/dlocktest"
)

// Issue 10, found in review: two Lock calls of one Redlock whose order on
// the nodes differs from their local order. b asks first and the nodes
// remember it, but its replies come late, so a, which came 15ms later,
// fails first and becomes the first of the local queue; b waits behind it
// and no longer asks. Once the key is free, a must not be refused by the
// nodes for having waited less than b: the first of the queue claims the
// longest wait of the calls queued behind it.
func TestLock_local_order_and_node_order_disagree(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ns := make([]dlock.Node, 5)
		for i := range ns {
			ns[i] = &lateFirstReply{MemoryNode: dlocktest.NewMemoryNode(nil), who: "b.", delay: 40 * time.Millisecond}
		}
		other, _ := dlock.New(ns)
		r, _ := dlock.New(ns)
		holder, err := other.Lock("k", "h")
		if err != nil {
			t.Fatal(err)
		}
		opts := []dlock.LockOpt{dlock.WithRetryInterval(100 * time.Millisecond), dlock.WithRetryJitter(0), dlock.WithRetryLimit(-1)}
		start := time.Now()
		var wg sync.WaitGroup
		for _, who := range []string{"b", "a"} {
			wg.Go(func() {
				l, err := r.LockContext(t.Context(), "k", who, opts...)
				if err != nil {
					t.Error(err)
					return
				}
				time.Sleep(10 * time.Millisecond)
				_ = l.Release()
			})
			time.Sleep(15 * time.Millisecond)
		}
		time.Sleep(100*time.Millisecond - time.Since(start))
		_ = holder.Release()
		released := time.Now()
		wg.Wait()
		if d := time.Since(released); d > 300*time.Millisecond {
			t.Errorf("both waiters were served %v after the release; want about a poll interval each (the nodes kept refusing the first waiter)", d)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
	})
}

// lateFirstReply is a memory node that answers the first fenced acquire
// of a value starting with who only after delay (the node has applied it).
type lateFirstReply struct {
	*dlocktest.MemoryNode
	who   string
	delay time.Duration
	mu    sync.Mutex
	done  bool
}

func (n *lateFirstReply) AcquireFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	rep, err := n.MemoryNode.AcquireFenced(ctx, req)
	n.mu.Lock()
	late := strings.HasPrefix(req.Value, n.who) && !n.done
	n.done = n.done || late
	n.mu.Unlock()
	if late {
		time.Sleep(n.delay)
	}
	return rep, err
}

// Issue 10, found in review: a waiter does not wait, before every attempt,
// for its calls to a node that never answers: it waits at most for a call's
// own budget, so with one hung node of five it still polls at its retry
// interval and takes a released key promptly.
func TestLock_waiter_polls_at_its_interval_with_a_hung_node(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := fakes(5)
		ns, _ := notifying(fs)
		stuck := make(chan struct{})
		defer func() {
			close(stuck)
			time.Sleep(time.Hour)
			synctest.Wait()
		}()
		ra, _ := dlock.New(ns)
		rb, _ := dlock.New(ns)
		holder, err := ra.Lock("k", "")
		if err != nil {
			t.Fatal(err)
		}
		mutate(func() { fs[4].stuck = stuck }) // from now on node 4 never answers, ignoring ctx
		go func() {
			time.Sleep(5 * time.Second)
			_ = holder.Release()
		}()
		start := time.Now()
		l, err := rb.Lock("k", "", dlock.WithRetryInterval(100*time.Millisecond), dlock.WithRetryJitter(0), dlock.WithRetryLimit(-1))
		if err != nil {
			t.Fatal(err)
		}
		if late := time.Since(start) - 5*time.Second; late > 150*time.Millisecond {
			t.Errorf("the waiter got the key %v after the release; with a 100ms poll, want about 100ms at most", late)
		}
		_ = l.Release()
	})
}

// Issue 10, found in review: a Lock call waiting behind an earlier call of
// its Redlock gives up only after as long as its own retries could take
// (RetryLimit+1 times RetryInterval + jitter + node timeout), not after
// RetryLimit poll intervals spent without asking any node, and says why;
// with a RetryInterval of 0 it does not spin (a spinning goroutine would
// keep this bubble's clock from moving).
func TestLock_waiter_behind_others_keeps_its_retry_budget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := fakes(5)
		other := mustNew(t, fs)
		r := mustNew(t, fs, dlock.WithNodeTimeout(100*time.Millisecond))
		holder, err := other.Lock("k", "")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		first := make(chan error, 1)
		go func() {
			_, err := r.LockContext(ctx, "k", "", dlock.WithRetryInterval(10*time.Millisecond), dlock.WithRetryLimit(-1))
			first <- err
		}()
		time.Sleep(time.Millisecond)
		start := time.Now()
		_, err = r.Lock("k", "", dlock.WithRetryInterval(0), dlock.WithRetryLimit(3))
		took := time.Since(start)
		if !errors.Is(err, dlock.ErrNotAcquired) || !strings.Contains(err.Error(), "an earlier Lock call of this Redlock waits for the key") {
			t.Errorf("the waiter behind: %v; want ErrNotAcquired saying that an earlier Lock call waits for the key", err)
		}
		if took < 399*time.Millisecond || took > 500*time.Millisecond {
			t.Errorf("the waiter behind gave up after %v, want 400ms: 4 attempts' worth of node timeouts", took)
		}
		cancel()
		if err := <-first; !errors.Is(err, context.Canceled) {
			t.Errorf("the first waiter: %v, want context.Canceled", err)
		}
		_ = holder.Release()
		time.Sleep(time.Minute)
		synctest.Wait()
	})
}

// slowReleaseNode is a notifying node whose releases take d; its acquires
// are instant.
type slowReleaseNode struct {
	notifyingNode
	d time.Duration
}

func (n slowReleaseNode) ReleaseNotify(ctx context.Context, key, value string) (bool, error) {
	time.Sleep(n.d)
	return n.notifyingNode.ReleaseNotify(ctx, key, value)
}
