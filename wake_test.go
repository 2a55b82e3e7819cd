package dlock_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/internal/redistest"
)

// announcer is the Pub/Sub of a set of notifying fake nodes: a node's
// announcements reach the watches of that node.
type announcer struct {
	mu       sync.Mutex
	watchers map[int]watcher
	next     int
	watching int // watches running now
}

type watcher struct {
	node     int
	released func(string)
}

// notifyingNode is a fakeNode that announces the releases made through
// ReleaseNotify to every watcher.
type notifyingNode struct {
	*fakeNode
	a    *announcer
	id   int
	mute bool // announcements from this node are lost
}

func (n notifyingNode) ReleaseNotify(ctx context.Context, key, value string) (bool, error) {
	ok, err := n.Release(ctx, key, value)
	if ok && !n.mute {
		n.a.mu.Lock()
		for _, w := range n.a.watchers {
			if w.node == n.id {
				w.released(key)
			}
		}
		n.a.mu.Unlock()
	}
	return ok, err
}

func (n notifyingNode) WatchReleases(ctx context.Context, released func(string)) error {
	n.a.mu.Lock()
	id := n.a.next
	n.a.next++
	n.a.watchers[id] = watcher{node: n.id, released: released}
	n.a.watching++
	n.a.mu.Unlock()
	<-ctx.Done()
	n.a.mu.Lock()
	delete(n.a.watchers, id)
	n.a.watching--
	n.a.mu.Unlock()
	return ctx.Err()
}

func notifying(fs []*fakeNode) ([]dlock.Node, *announcer) {
	a := &announcer{watchers: map[int]watcher{}}
	ns := make([]dlock.Node, len(fs))
	for i, f := range fs {
		ns[i] = notifyingNode{fakeNode: f, a: a, id: i}
	}
	return ns, a
}

// Issue 10: a waiter is woken by a release, without waiting for its retry
// interval; its watches end with the wait.
func TestLock_waiter_wakes_on_release(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := fakes(3)
		ns, a := notifying(fs)
		r, err := dlock.New(ns)
		if err != nil {
			t.Fatal(err)
		}
		l, got := lockUntilRelease(t, r, r, time.Second, nil)
		if got != time.Second {
			t.Errorf("the waiter got the lock after %v, want 1s (at the release, not at its 10s poll)", got)
		}
		synctest.Wait()
		a.mu.Lock()
		watching := a.watching
		a.mu.Unlock()
		if watching != 0 {
			t.Errorf("%d watches still running after the last waiter, want 0", watching)
		}
		_ = l.Release()
	})
}

// A failed attempt's own undo announces nothing: a waiter does not wake
// itself into a busy loop while the lock is held elsewhere, and a waiter
// whose context ends stops at once.
func TestLock_waiter_does_not_wake_on_undo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := fakes(5)
		ns, _ := notifying(fs)
		for _, f := range fs[:3] {
			f.set("k", "other", time.Hour) // held by another on a majority
		}
		r, err := dlock.New(ns)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		_, err = r.LockContext(ctx, "k", "", dlock.WithRetryLimit(-1), dlock.WithRetryInterval(100*time.Millisecond), dlock.WithRetryJitter(0))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
		if got := time.Since(start); got != time.Second {
			t.Errorf("LockContext returned after %v, want at its context's end (1s)", got)
		}
		if got := fs[4].count("acquire"); got > 11 {
			t.Errorf("%d attempts in 1s at a 100ms retry interval: the undo of each attempt woke the next", got)
		}
		synctest.Wait()
	})
}

// On real Redis nodes, a waiter with a long retry interval gets the lock
// within a few round trips of the release.
func TestRedis_waiter_wakes_on_release(t *testing.T) {
	addrs := redistest.Addrs(t)
	var cs []*redis.Client
	for _, addr := range addrs {
		c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = c.Close() })
		cs = append(cs, c)
	}
	r, err := dlock.New(dlock.RedisNodes(cs...), dlock.WithKeyPrefix("wake-test:"+strings.ReplaceAll(t.Name(), "/", "-")+":"))
	if err != nil {
		t.Fatal(err)
	}
	holder, err := r.Lock("k", "")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan time.Duration, 1)
	go func() {
		l, err := r.Lock("k", "", dlock.WithRetryInterval(5*time.Second), dlock.WithRetryJitter(0))
		if err != nil {
			got <- -1
			return
		}
		defer l.Release()
		got <- time.Duration(time.Now().UnixNano())
	}()
	time.Sleep(300 * time.Millisecond) // the waiter has tried once and is waiting
	released := time.Now()
	if err := holder.Release(); err != nil {
		t.Fatal(err)
	}
	at := <-got
	if at < 0 {
		t.Fatal("the waiter failed")
	}
	if d := time.Duration(at) - time.Duration(released.UnixNano()); d > time.Second {
		t.Errorf("the waiter got the lock %v after the release, want well under its 5s retry interval", d)
	}
}

// A waiter woken by a release first lets its earlier attempt's calls end
// on the slow nodes, so that its retry reaches every node rather than only
// those whose calls happened to have ended: without that, the slow nodes
// are skipped as busy, and an attempt woken while every node is still busy
// fails outright and waits a node timeout.
func TestLock_woken_waiter_retries_on_every_node(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := fakes(5)
		fs[3].delay, fs[4].delay = 20*time.Millisecond, 20*time.Millisecond
		ns, _ := notifying(fs)
		ra, err := dlock.New(ns)
		if err != nil {
			t.Fatal(err)
		}
		rb, err := dlock.New(ns)
		if err != nil {
			t.Fatal(err)
		}
		holder, err := ra.Lock("k", "")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // the holder's calls have all ended
		go func() {
			time.Sleep(5 * time.Millisecond) // while the waiter's first attempt runs on the slow nodes
			_ = holder.Release()
		}()
		l, err := rb.Lock("k", "", dlock.WithRetryInterval(10*time.Second), dlock.WithRetryJitter(0))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := holders(fs, "k", l.Value()); n != 5 {
			t.Errorf("the woken waiter holds the key on %d of 5 nodes, want all 5", n)
		}
		_ = l.Release()
		time.Sleep(time.Minute)
		synctest.Wait()
	})
}

// A waiter is woken once a quorum of nodes announced the release, not at
// the first announcement: its attempt then finds the key free on enough
// nodes and succeeds at once, instead of being refused by the nodes the
// release has not reached yet. When too few announcements come (lost, or
// the holder was not on every node), it is woken a couple of milliseconds
// after the first, not at its next poll.
func TestLock_waiter_wakes_at_a_quorum_of_announcements(t *testing.T) {
	t.Run("quorum", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			fs := fakes(5)
			ns, _ := notifying(fs)
			for i := range ns { // the release reaches node i after i ms; acquires are instant
				ns[i] = slowReleaseNode{ns[i].(notifyingNode), time.Duration(i) * time.Millisecond}
			}
			ra, _ := dlock.New(ns)
			rb, _ := dlock.New(ns)
			var acquires atomic.Int64
			l, got := lockUntilRelease(t, ra, rb, time.Second, func() {
				mutate(func() {
					for _, f := range fs {
						f.hook = func(op string) {
							if op == "acquire" {
								acquires.Add(1)
							}
						}
					}
				})
			})
			if got != time.Second+2*time.Millisecond {
				t.Errorf("the waiter got the lock after %v, want 1.002s: when the third node announced the release", got)
			}
			synctest.Wait()
			if n := acquires.Load(); n != 5 {
				t.Errorf("%d acquire calls after the release, want 5 (one attempt, once a quorum announced)", n)
			}
			time.Sleep(time.Second)
			_ = l.Release()
			time.Sleep(time.Minute)
			synctest.Wait()
		})
	})
	t.Run("too few", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			fs := fakes(5)
			ns, _ := notifying(fs)
			for i := 2; i < 5; i++ { // only nodes 0 and 1 are heard
				n := ns[i].(notifyingNode)
				n.mute = true
				ns[i] = n
			}
			ra, _ := dlock.New(ns)
			rb, _ := dlock.New(ns)
			l, got := lockUntilRelease(t, ra, rb, time.Second, nil)
			if got < time.Second || got > time.Second+10*time.Millisecond {
				t.Errorf("the waiter got the lock after %v, want a few ms after the release at 1s, not at its 10s poll", got)
			}
			_ = l.Release()
			time.Sleep(time.Minute)
			synctest.Wait()
		})
	})
}

// lockUntilRelease locks "k" with holder, and releases it after d in the
// background (running before first, when not nil); it returns the lock
// that waiter then takes (polling only every 10s), and how long that took.
func lockUntilRelease(t *testing.T, holder, waiter *dlock.Redlock, d time.Duration, before func()) (*dlock.Lock, time.Duration) {
	t.Helper()
	h, err := holder.Lock("k", "")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(d)
		if before != nil {
			before()
		}
		_ = h.Release()
	}()
	start := time.Now()
	l, err := waiter.Lock("k", "", dlock.WithRetryInterval(10*time.Second), dlock.WithRetryJitter(0))
	if err != nil {
		t.Fatal(err)
	}
	return l, time.Since(start)
}
