package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/charconstpointer/dlock"
	"github.com/jackc/pgx/v5/pgxpool"
)

// holders checks mutual exclusion from the holders' side: each holder
// checks Lock.Held right before and after its critical section and counts
// itself in and out.
type holders struct {
	in        atomic.Int32
	overlaps  atomic.Int32
	notHeld   atomic.Int32
	acquired  atomic.Int64
	mu        sync.Mutex
	lastToken uint64
	badTokens []string
}

// critical runs one critical section under l.
func (h *holders) critical(l *dlock.Lock, work time.Duration) {
	if !l.Held() {
		h.notHeld.Add(1)
		return
	}
	if h.in.Add(1) != 1 {
		h.overlaps.Add(1)
	}
	h.acquired.Add(1)
	if tok := l.Token(); tok != 0 {
		h.mu.Lock()
		if tok <= h.lastToken {
			h.badTokens = append(h.badTokens, fmt.Sprintf("%d after %d", tok, h.lastToken))
		}
		h.lastToken = tok
		h.mu.Unlock()
	}
	time.Sleep(work)
	if !l.Held() {
		h.notHeld.Add(1)
	}
	h.in.Add(-1)
}

func (h *holders) check(t *testing.T) {
	t.Helper()
	if n := h.overlaps.Load(); n > 0 {
		t.Errorf("%d times a holder entered while another was inside", n)
	}
	if n := h.notHeld.Load(); n > 0 {
		t.Errorf("%d times Held() was false inside the critical section", n)
	}
	if len(h.badTokens) > 0 {
		t.Errorf("fencing tokens did not grow: %v", h.badTokens)
	}
}

// TestRedlock_one_node_contention runs 8 goroutines that contend for one
// key through a Redlock of one Postgres node: never two holders at once.
func TestRedlock_one_node_contention(t *testing.T) {
	urls := serverURLs(t, 1)
	node := newTestNode(t, newPool(t, urls[0], func(c *pgxpool.Config) { c.MaxConns = 8 }))
	r, err := dlock.New([]dlock.Node{node})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	var (
		h    holders
		wg   sync.WaitGroup
		errs = make([]error, 8)
	)
	for i := range errs {
		wg.Go(func() {
			for ctx.Err() == nil {
				l, err := r.LockContext(ctx, "contended", "", dlock.WithTTL(5*time.Second),
					dlock.WithRetryInterval(2*time.Millisecond), dlock.WithRetryLimit(-1), dlock.WithFencing())
				if err != nil {
					if ctx.Err() == nil {
						errs[i] = err
					}
					return
				}
				h.critical(l, time.Millisecond)
				if err := l.Release(); err != nil {
					errs[i] = fmt.Errorf("Release: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	h.check(t)
	if err := errors.Join(errs...); err != nil {
		t.Errorf("lock/release: %v", err)
	}
	if n := h.acquired.Load(); n < 50 {
		t.Errorf("%d acquisitions in 3s; want at least 50", n)
	} else {
		t.Logf("%d acquisitions in 3s by 8 goroutines", n)
	}
}

// ownServer is a PostgreSQL server this test starts with
// scripts/postgres.sh, so that it may stop it.
type ownServer struct {
	dir, url string
}

// startOwnServer starts a server of the test's own; it skips the test
// when the script fails, or fails it when DLOCK_REQUIRE_POSTGRES=1.
func startOwnServer(t *testing.T) *ownServer {
	t.Helper()
	// Not t.TempDir: the server runs as another user when the test runs as
	// root, and must reach its directory.
	dir, err := os.MkdirTemp("", "dlock-pg-test-")
	if err != nil {
		t.Fatal(err)
	}
	s := &ownServer{dir: dir}
	t.Cleanup(func() {
		if out, err := s.script("stop"); err != nil {
			t.Errorf("stopping the test's server: %v\n%s", err, out)
		}
		os.RemoveAll(dir)
	})
	out, err := s.script("start", "1")
	if err != nil {
		msg := fmt.Sprintf("starting a PostgreSQL server with scripts/postgres.sh: %v\n%s", err, out)
		if os.Getenv("DLOCK_REQUIRE_POSTGRES") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	s.url = strings.TrimSpace(string(out))
	return s
}

func (s *ownServer) script(args ...string) ([]byte, error) {
	cmd := exec.Command("bash", append([]string{filepath.Join("..", "scripts", "postgres.sh"), args[0]}, append(args[1:], s.dir)...)...)
	cmd.Stderr = os.Stderr
	return cmd.Output()
}

// crash stops the server at once, as a crash would: SIGQUIT to the
// postmaster is PostgreSQL's immediate shutdown (no checkpoint; the next
// start replays the write-ahead log).
func (s *ownServer) crash(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, "pg1", "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil {
		t.Fatalf("kill -QUIT %d: %v", pid, err)
	}
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(pid, 0) == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d still running 10s after SIGQUIT", pid)
		}
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(b), ") Z ") {
			break // a zombie nobody reaps
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedlock_three_servers_one_stopped runs contending holders through a
// Redlock of three independent PostgreSQL servers and crashes one of them
// mid-run: locking goes on with two of three, never two holders at once.
// The crashed server is then started again: its fencing counters survived
// (a PostgreSQL node needs no restart guard), and it takes part again.
func TestRedlock_three_servers_one_stopped(t *testing.T) {
	urls := serverURLs(t, 2)
	own := startOwnServer(t)
	var nodes []dlock.Node
	for _, u := range []string{urls[0], urls[1], own.url} {
		nodes = append(nodes, newTestNode(t, newPool(t, u, func(c *pgxpool.Config) { c.MaxConns = 4 })))
	}
	third := nodes[2].(*Node)
	r, err := dlock.New(nodes)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	// A fenced grant on the server about to crash, committed before it.
	before, err := third.AcquireFenced(ctx, dlock.Request{Key: "durable", Value: "v", TTL: time.Hour, Fencing: true})
	if err != nil || !before.OK {
		t.Fatalf("AcquireFenced(durable) = %+v, %v", before, err)
	}
	if _, err := third.Fence(ctx, dlock.Request{Key: "durable", Value: "v", Token: 41}); err != nil {
		t.Fatal(err)
	}

	// Run 1s with three servers, then crash one, then run 1.5s more.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		h           holders
		wg          sync.WaitGroup
		crashed     atomic.Bool
		afterCrash  atomic.Int64
		lostAtCrash atomic.Int64
		errs        = make([]error, 4)
	)
	for i := range errs {
		wg.Go(func() {
			for runCtx.Err() == nil {
				l, err := r.LockContext(runCtx, "contended", "", dlock.WithTTL(5*time.Second),
					dlock.WithRetryInterval(5*time.Millisecond), dlock.WithRetryJitter(20*time.Millisecond),
					dlock.WithRetryLimit(-1), dlock.WithFencing())
				if err != nil {
					if runCtx.Err() == nil {
						errs[i] = err
					}
					return
				}
				h.critical(l, time.Millisecond)
				if crashed.Load() {
					afterCrash.Add(1)
				}
				if err := l.Release(); err != nil {
					// A lock granted by the crashing server and one other
					// is no longer on a majority: Release reports it lost,
					// or, when the crash cut the release itself, that the
					// crashed node failed to confirm it.
					if crashed.Load() && (errors.Is(err, dlock.ErrLockLost) || onlyNodeFailed(err, 2)) {
						lostAtCrash.Add(1)
						continue
					}
					errs[i] = fmt.Errorf("Release: %w", err)
					return
				}
			}
		})
	}
	time.Sleep(time.Second)
	beforeCrash := h.acquired.Load()
	crashStart := time.Now()
	crashed.Store(true)
	own.crash(t)
	t.Logf("the server took %v to stop", time.Since(crashStart))
	time.Sleep(1500 * time.Millisecond)
	cancel()
	wg.Wait()
	h.check(t)
	if err := errors.Join(errs...); err != nil {
		t.Errorf("lock/release: %v", err)
	}
	t.Logf("acquisitions: %d before the crash, %d after it (2 of 3 servers up); %d releases found the lock lost at the crash",
		beforeCrash, afterCrash.Load(), lostAtCrash.Load())
	if n := lostAtCrash.Load(); n > 4 {
		t.Errorf("%d releases found the lock lost; want at most one per goroutine (those holding at the crash)", n)
	}
	// Contended locking slows down a lot with one node of three down
	// (contenders split the two live nodes' votes), so liveness under
	// contention asks only for progress; uncontended locking, below, must
	// not fail at all.
	if beforeCrash < 10 || afterCrash.Load() < 1 {
		t.Errorf("acquisitions: %d before the crash, %d after it; want at least 10 before and 1 after", beforeCrash, afterCrash.Load())
	}

	// While the server is down, every uncontended lock takes two of three.
	for i := range 20 {
		l, err := r.TryLock(ctx, fmt.Sprintf("down-%d", i), "", dlock.WithFencing())
		if err != nil {
			t.Fatalf("TryLock %d with one server down: %v", i, err)
		}
		if err := l.Release(); err != nil {
			t.Fatalf("Release %d with one server down: %v", i, err)
		}
	}

	// Start it again, on its old port with its old data.
	if out, err := own.script("start", "1"); err != nil {
		t.Fatalf("restarting the server: %v\n%s", err, out)
	}
	var s dlock.KeyState
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		s, err = third.Inspect(ctx, "durable") // the pool's dead connections fail first
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || !s.Held || s.Value != "v" || s.Counter != 41 {
		t.Fatalf("Inspect(durable) after the restart = %+v, %v; want held by v, counter 41", s, err)
	}
	// It votes again: a lock taken now is held on it too.
	for i, deadline := 0, time.Now().Add(10*time.Second); ; i++ {
		key := fmt.Sprintf("after-%d", i)
		l, err := r.TryLock(ctx, key, "")
		if err != nil {
			t.Fatalf("TryLock after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // the third grant may land after TryLock returned
		s, err := third.Inspect(ctx, key)
		rerr := l.Release()
		if rerr != nil {
			t.Fatalf("Release after the restart: %v", rerr)
		}
		if err == nil && s.Held && s.Value == l.Value() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted server holds %+v (%v) for a lock taken on all three; want it held", s, err)
		}
	}
}

// onlyNodeFailed reports whether every *dlock.NodeError joined in err is
// for node i, and there is at least one.
func onlyNodeFailed(err error, i int) bool {
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return false
	}
	found := false
	for _, e := range joined.Unwrap() {
		var ne *dlock.NodeError
		if errors.As(e, &ne) {
			if ne.Node != i {
				return false
			}
			found = true
		}
	}
	return found
}
