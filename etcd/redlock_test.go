package etcd_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/etcd"
)

// TestRedlockContention runs 8 goroutines that take turns at one key
// through a Redlock of one etcd node: never two holders at once (an
// in-critical-section counter), each holder sees Held, and every goroutine
// gets the lock.
func TestRedlockContention(t *testing.T) {
	n, _, _ := newNode(t)
	r, err := dlock.New([]dlock.Node{n})
	if err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 8, 5
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var (
		inside, maxInside, acquired atomic.Int32
		mu                          sync.Mutex
		errs                        []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				l, err := r.LockContext(ctx, "contended", "",
					dlock.WithTTL(5*time.Second), dlock.WithRetryInterval(10*time.Millisecond),
					dlock.WithRetryLimit(-1))
				if err != nil {
					fail(err)
					return
				}
				now := inside.Add(1)
				for m := maxInside.Load(); now > m && !maxInside.CompareAndSwap(m, now); m = maxInside.Load() {
				}
				if !l.Held() {
					fail(errors.New("Held() = false right after Lock returned"))
				}
				time.Sleep(2 * time.Millisecond)
				if !l.Held() {
					fail(errors.New("Held() = false inside the critical section"))
				}
				inside.Add(-1)
				acquired.Add(1)
				if err := l.Release(); err != nil {
					fail(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if got := maxInside.Load(); got != 1 {
		t.Errorf("at most %d holders at once, want 1", got)
	}
	if got, want := acquired.Load(), int32(workers*rounds); got != want {
		t.Errorf("%d acquisitions, want %d", got, want)
	}
}

// TestRedlockFencedTokens takes a fenced lock in turns from 4 goroutines
// and checks that each holder's token is above the previous holder's. It is
// skipped while the Redlock does not hand out tokens.
func TestRedlockFencedTokens(t *testing.T) {
	n, _, _ := newNode(t)
	r, err := dlock.New([]dlock.Node{n})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	l, err := r.LockContext(ctx, "fenced", "", dlock.WithFencing())
	if err != nil {
		t.Fatalf("Lock with fencing: %v", err)
	}
	first := l.Token()
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if first == 0 {
		t.Skip("the Redlock returned token 0 with WithFencing: it does not take fencing tokens yet")
	}
	var (
		mu     sync.Mutex
		last   = first
		errs   []error
		tokens int
	)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5 {
				l, err := r.LockContext(ctx, "fenced", "", dlock.WithFencing(),
					dlock.WithRetryInterval(10*time.Millisecond), dlock.WithRetryLimit(-1))
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				mu.Lock()
				if l.Token() <= last {
					errs = append(errs, errors.New("token did not grow"))
					t.Logf("token %d after %d", l.Token(), last)
				}
				last = l.Token()
				tokens++
				mu.Unlock()
				_ = l.Release()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if tokens != 20 {
		t.Errorf("%d fenced locks, want 20", tokens)
	}
}

// startPrivateServer starts an etcd server of the test's own with
// scripts/etcd.sh, stopped when the test ends, and returns its endpoints
// and a function that stops it now.
func startPrivateServer(t *testing.T) ([]string, func()) {
	t.Helper()
	endpoints(t) // skip, or fail, as the tests on the shared server do
	script, err := filepath.Abs(filepath.Join("..", "scripts", "etcd.sh"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := func(arg string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "bash", script, arg, dir).CombinedOutput()
		return string(out), err
	}
	out, err := run("start")
	if err != nil {
		t.Fatalf("%s start: %v\n%s", script, err, out)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			if out, err := run("stop"); err != nil {
				t.Errorf("%s stop: %v\n%s", script, err, out)
			}
		})
	}
	t.Cleanup(stop)
	eps := strings.TrimSpace(lastLine(out))
	if !strings.HasPrefix(eps, "http://") {
		t.Fatalf("%s start printed %q, want the endpoints", script, out)
	}
	return strings.Split(eps, ","), stop
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// TestRedlockServerStopped holds a lock with auto-refresh through a Redlock
// of one etcd node, stops the etcd server, and checks that the holder sees
// Lost closed and Err wrapping dlock.ErrLockLost.
func TestRedlockServerStopped(t *testing.T) {
	eps, stop := startPrivateServer(t)
	cli := newClient(t, eps)
	r, err := dlock.New([]dlock.Node{etcd.NewNode(cli)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.LockContext(t.Context(), "stopped", "",
		dlock.WithTTL(2*time.Second), dlock.WithRefreshInterval(300*time.Millisecond))
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	defer l.Release()
	// Refreshes keep it past its TTL while the server runs.
	time.Sleep(2500 * time.Millisecond)
	if !l.Held() {
		t.Fatalf("lock not held after 2.5s of auto-refresh with a 2s TTL: %v", l.Err())
	}
	stopped := time.Now()
	stop()
	select {
	case <-l.Lost():
	case <-time.After(15 * time.Second):
		t.Fatalf("Lost not closed 15s after the server stopped (TTL 2s)")
	}
	t.Logf("Lost closed %v after the server stopped", time.Since(stopped).Round(time.Millisecond))
	if err := l.Err(); !errors.Is(err, dlock.ErrLockLost) {
		t.Errorf("Err() = %v, want an error wrapping dlock.ErrLockLost", err)
	}
	if l.Held() {
		t.Errorf("Held() = true after Lost closed")
	}
}
