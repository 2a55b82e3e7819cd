package dlock_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/internal/redistest"
	"github.com/charconstpointer/dlock/internal/tcpproxy"
)

// Integration tests on real redis-server nodes: the ones `make test` starts
// and lists in DLOCK_REDIS_ADDRS (skipped under plain `go test` without it).
//
// The nodes are shared with other tests and packages, so these tests never
// flush them: each uses a key prefix of its own and checks only its keys.
// They do not use t.Parallel, so that goroutine and connection counts are
// their own.

// itNodeCount is how many nodes the tests need.
const itNodeCount = 5

// itAddrs returns the addresses of the first five shared nodes.
func itAddrs(t *testing.T) []string {
	t.Helper()
	addrs := redistest.Addrs(t)
	if len(addrs) < itNodeCount {
		t.Fatalf("%s lists %d nodes, want at least %d", redistest.EnvAddrs, len(addrs), itNodeCount)
	}
	return addrs[:itNodeCount]
}

var itUnsafe = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// itPrefix returns a key prefix unique to this test run, without glob
// metacharacters, so that SCAN MATCH prefix* finds exactly this test's keys.
func itPrefix(t *testing.T) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "dlock-it:" + itUnsafe.ReplaceAllString(t.Name(), "_") + ":" + hex.EncodeToString(b[:]) + ":"
}

// itClient returns a client for addr, closed when the test ends.
func itClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// itClients returns one client per address.
func itClients(t *testing.T, addrs []string) []*redis.Client {
	t.Helper()
	cs := make([]*redis.Client, len(addrs))
	for i, a := range addrs {
		cs[i] = itClient(t, a)
	}
	return cs
}

func itNodes(cs []*redis.Client) []dlock.Node {
	ns := make([]dlock.Node, len(cs))
	for i, c := range cs {
		ns[i] = dlock.RedisNode(c)
	}
	return ns
}

// itKeys returns the keys under prefix on the node behind c.
func itKeys(ctx context.Context, c *redis.Client, prefix string) ([]string, error) {
	var keys []string
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	return keys, iter.Err()
}

// itWaitNoKeys waits up to timeout until no node behind cs holds a key under
// prefix, and fails the test naming what is left otherwise.
func itWaitNoKeys(t *testing.T, cs []*redis.Client, prefix string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var left []string
		for i, c := range cs {
			keys, err := itKeys(t.Context(), c, prefix)
			if err != nil {
				t.Fatalf("node %d: SCAN: %v", i, err)
			}
			for _, k := range keys {
				left = append(left, fmt.Sprintf("node %d: %s", i, k))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			if len(left) > 10 {
				left = append(left[:10], fmt.Sprintf("... %d more", len(left)-10))
			}
			t.Errorf("%d keys left under %q %v after the last operation:\n%s", len(left), prefix, timeout, strings.Join(left, "\n"))
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// itStacks returns the stacks of all goroutines, one string each.
func itStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(string(buf[:n]), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// itDump returns the first stacks of all goroutines, for a failure message.
func itDump() string {
	stacks := itStacks()
	if len(stacks) > 40 {
		stacks = append(stacks[:40], fmt.Sprintf("... and %d more goroutines", len(stacks)-40))
	}
	return strings.Join(stacks, "\n\n")
}

// itGoroutines counts the goroutines that are not the proxy's own (a proxy
// runs a few per open connection, and go-redis keeps idle connections open).
func itGoroutines() int {
	n := 0
	for _, s := range itStacks() {
		if !strings.Contains(s, "dlock/internal/tcpproxy.") {
			n++
		}
	}
	return n
}

// itSettle registers a cleanup, run after every later one (clients closed,
// proxies closed), that waits until the goroutines started during the test
// have returned, so that one test's stragglers cannot leak into the next.
func itSettle(t *testing.T) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		// go-redis's dial-retry loop sleeps 1s between probes of a dead node.
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines still running 10s after the test, %d before it:\n%s",
					runtime.NumGoroutine(), base, itDump())
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// itFreePort returns a loopback port that was free a moment ago.
func itFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// itStartRedis starts a redis-server of the test's own, in the foreground,
// and returns its address and a function that kills it with SIGKILL and
// waits until it has exited. It is killed when the test ends, if not before.
func itStartRedis(t *testing.T) (addr string, kill func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(redistest.EnvRequire) == "1" {
			t.Fatalf("redis-server not found: %v", err)
		}
		t.Skipf("redis-server not found: %v", err)
	}
	for attempt := 1; ; attempt++ {
		port := strconv.Itoa(itFreePort(t))
		var out bytes.Buffer
		cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", t.TempDir())
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		kill := func() {
			select {
			case <-exited:
			default:
				cmd.Process.Signal(syscall.SIGKILL)
				<-exited
			}
		}
		t.Cleanup(kill)

		addr := "127.0.0.1:" + port
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		up := false
	wait:
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			select {
			case <-exited:
				break wait
			default:
			}
			if c.Ping(t.Context()).Err() == nil {
				up = true
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		c.Close()
		if up {
			return addr, kill
		}
		kill()
		if attempt == 5 {
			t.Fatalf("redis-server on port %s did not come up:\n%s", port, out.String())
		}
	}
}

// itErrors collects the errors of worker goroutines, which must not call
// t.Fatal themselves.
type itErrors struct {
	mu   sync.Mutex
	errs []error
}

func (e *itErrors) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errs = append(e.errs, err)
}

func (e *itErrors) check(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, err := range e.errs {
		if i == 10 {
			t.Errorf("... and %d more errors", len(e.errs)-10)
			break
		}
		t.Error(err)
	}
}

// Eight goroutines contend for one key over five nodes: never two holders at
// once, and every goroutine gets the lock several times.
func TestIntegration_mutual_exclusion(t *testing.T) {
	itSettle(t)
	clients := itClients(t, itAddrs(t))
	prefix := itPrefix(t)
	r, err := dlock.New(itNodes(clients), dlock.WithKeyPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}

	const (
		workers  = 8
		wantEach = 10
	)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var (
		inside       atomic.Int32 // holders in the critical section now
		overlaps     atomic.Int32 // times a holder found another inside
		lateExits    atomic.Int32 // holders that left after ValidUntil (not a violation)
		releaseFails atomic.Int32
		counts       [workers]int
		workerErrs   itErrors
		wg           sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for counts[w] < wantEach {
				l, err := r.LockContext(ctx, "counter", "",
					dlock.WithTTL(10*time.Second), dlock.WithRetryLimit(-1),
					dlock.WithRetryInterval(2*time.Millisecond), dlock.WithRetryJitter(10*time.Millisecond))
				if err != nil {
					workerErrs.add(fmt.Errorf("worker %d after %d locks: Lock: %w", w, counts[w], err))
					return
				}
				if n := inside.Add(1); n != 1 {
					overlaps.Add(1)
				}
				time.Sleep(time.Millisecond) // work on the resource
				if time.Now().After(l.ValidUntil()) {
					lateExits.Add(1)
				}
				inside.Add(-1)
				counts[w]++
				if err := l.Release(); err != nil {
					// Not what this test is about: on a machine too loaded
					// for a majority to confirm within NodeTimeout, the key
					// just expires later. Anything else is an error.
					if !errors.Is(err, dlock.ErrLockLost) {
						workerErrs.add(fmt.Errorf("worker %d: Release: %w", w, err))
						return
					}
					releaseFails.Add(1)
				}
			}
		})
	}
	wg.Wait()
	workerErrs.check(t)
	if got := overlaps.Load(); got != 0 {
		t.Errorf("%d times a holder entered while another was inside; want 0", got)
	}
	if got := releaseFails.Load(); got != 0 {
		t.Logf("%d releases were not confirmed by a majority in time (loaded machine)", got)
	}
	if got := lateExits.Load(); got != 0 {
		t.Logf("%d holders left after ValidUntil (the machine is very slow); overlaps then are not violations", got)
	}
	for w, n := range counts {
		if n < wantEach {
			t.Errorf("worker %d acquired %d times, want %d", w, n, wantEach)
		}
	}
	if releaseFails.Load() == 0 {
		itWaitNoKeys(t, clients, prefix, 5*time.Second)
	}
}

// A node killed with SIGKILL while locks are being taken: every lock is
// still granted, by the four nodes left.
func TestIntegration_node_killed_mid_run(t *testing.T) {
	itSettle(t)
	shared := itClients(t, itAddrs(t)[:itNodeCount-1])
	ownAddr, kill := itStartRedis(t)
	own := itClient(t, ownAddr)
	clients := append(slices.Clone(shared), own)
	prefix := itPrefix(t)
	// The retries and the generous NodeTimeout only absorb the stalls of a
	// loaded machine: with four of five nodes up, each attempt succeeds.
	r, err := dlock.New(itNodes(clients), dlock.WithKeyPrefix(prefix), dlock.WithNodeTimeout(time.Second),
		dlock.WithDefaults(dlock.WithTTL(10*time.Second), dlock.WithRetryLimit(3), dlock.WithRetryInterval(10*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}

	const (
		workers    = 4
		wantBefore = 40 // locks taken before the kill
		wantAfter  = 80 // locks taken after it
	)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var (
		total      atomic.Int64
		killed     atomic.Bool
		afterKill  atomic.Int64
		stop       = make(chan struct{})
		workerErrs itErrors
		wg         sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				wasKilled := killed.Load()
				l, err := r.LockContext(ctx, key, "")
				if err != nil {
					workerErrs.add(fmt.Errorf("worker %d, lock %d (node killed: %v): Lock: %w", w, i, wasKilled, err))
					return
				}
				if err := l.Release(); err != nil {
					workerErrs.add(fmt.Errorf("worker %d, lock %d (node killed: %v): Release: %w", w, i, wasKilled, err))
					return
				}
				total.Add(1)
				if wasKilled {
					afterKill.Add(1)
				}
			}
		})
	}
	waitFor := func(what string, cond func() bool) bool {
		for !cond() {
			if ctx.Err() != nil {
				t.Errorf("timed out waiting for %s", what)
				return false
			}
			workerErrs.mu.Lock()
			failed := len(workerErrs.errs) > 0
			workerErrs.mu.Unlock()
			if failed {
				return false
			}
			time.Sleep(time.Millisecond)
		}
		return true
	}
	if waitFor("locks before the kill", func() bool { return total.Load() >= wantBefore }) {
		kill() // SIGKILL, while the workers keep locking
		killed.Store(true)
		waitFor("locks after the kill", func() bool { return afterKill.Load() >= wantAfter })
	}
	close(stop)
	wg.Wait()
	workerErrs.check(t)
	t.Logf("%d locks, %d of them after the kill", total.Load(), afterKill.Load())

	// A lock taken now is held by the four nodes left.
	l, err := r.LockContext(t.Context(), "after", "v-after")
	if err != nil {
		t.Fatalf("Lock with the own node dead: %v", err)
	}
	for i, c := range shared {
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, err := c.Get(t.Context(), prefix+"after").Result()
			if err == nil && got == l.Value() {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("node %d: GET = %q, %v; want %q", i, got, err, l.Value())
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := l.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	itWaitNoKeys(t, shared, prefix, 5*time.Second)
}

// Three of five nodes unreachable: Lock fails with ErrNotAcquired within a
// time set by NodeTimeout and the retries (not by the client's 3s read
// timeout), and leaves no key on the reachable nodes.
func TestIntegration_majority_unreachable(t *testing.T) {
	const (
		nodeTimeout   = 100 * time.Millisecond
		retryLimit    = 2
		retryInterval = 50 * time.Millisecond
		attempts      = retryLimit + 1
		// Each attempt waits NodeTimeout for the unreachable nodes.
		expected = attempts*nodeTimeout + retryLimit*retryInterval
		// Generous for a loaded 2-core machine under -race, and still well
		// under go-redis's default 3s ReadTimeout, which a round that waited
		// on a hung node would take at least once.
		bound = expected + 1500*time.Millisecond
	)
	tests := []struct {
		name string
		// unreachable returns an address standing for node addr that does
		// not answer.
		unreachable func(t *testing.T, addr string) string
	}{
		{"blackholed", func(t *testing.T, addr string) string {
			p, err := tcpproxy.New(addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			p.Cut()
			return p.Addr()
		}},
		{"refused", func(t *testing.T, addr string) string {
			return fmt.Sprintf("127.0.0.1:%d", itFreePort(t))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			itSettle(t)
			addrs := itAddrs(t)
			direct := itClients(t, addrs) // to inspect every node
			var clients []*redis.Client
			for i, a := range addrs {
				if i < 3 {
					a = tt.unreachable(t, a)
				}
				clients = append(clients, itClient(t, a))
			}
			prefix := itPrefix(t)
			r, err := dlock.New(itNodes(clients), dlock.WithKeyPrefix(prefix), dlock.WithNodeTimeout(nodeTimeout))
			if err != nil {
				t.Fatal(err)
			}

			start := time.Now()
			l, err := r.Lock("k", "", dlock.WithTTL(10*time.Second), dlock.WithRetryLimit(retryLimit),
				dlock.WithRetryInterval(retryInterval), dlock.WithRetryJitter(0))
			elapsed := time.Since(start)
			if !errors.Is(err, dlock.ErrNotAcquired) {
				t.Fatalf("Lock = %v, %v; want ErrNotAcquired", l, err)
			}
			var ne *dlock.NodeError
			if !errors.As(err, &ne) || ne.Node > 2 {
				t.Errorf("Lock error has no *NodeError for an unreachable node (0-2): %v", err)
			}
			t.Logf("ErrNotAcquired after %v (expected about %v, bound %v)", elapsed, expected, bound)
			if elapsed > bound {
				t.Errorf("Lock took %v, want at most %v", elapsed, bound)
			}
			if floor := retryLimit * retryInterval; elapsed < floor {
				t.Errorf("Lock took %v, less than its %d retry intervals (%v)", elapsed, retryLimit, floor)
			}
			itWaitNoKeys(t, direct[3:], prefix, 2*time.Second)
			itWaitNoKeys(t, direct[:3], prefix, 0)
		})
	}
}

// itSlowProxies puts a proxy with delay each way in front of the first n
// nodes; it returns clients for the Redlock (through the proxies) and
// direct clients for inspection.
func itSlowProxies(t *testing.T, n int, delay time.Duration) (clients, direct []*redis.Client) {
	t.Helper()
	addrs := itAddrs(t)
	direct = itClients(t, addrs)
	for i, a := range addrs {
		if i < n {
			p, err := tcpproxy.New(a)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			p.SetDelay(delay, delay)
			a = p.Addr()
		}
		clients = append(clients, itClient(t, a))
	}
	return clients, direct
}

// itBurst runs workers goroutines, each taking and releasing perWorker
// locks on keys of its own as fast as it can. It returns how many locks were
// not acquired and how many releases were not confirmed (on a loaded machine
// a fast node can miss the node timeout too); any other error fails the test.
func itBurst(t *testing.T, r *dlock.Redlock, workers, perWorker int) (notAcquired, notReleased int64) {
	t.Helper()
	var (
		nA, nR     atomic.Int64
		workerErrs itErrors
		wg         sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				l, err := r.TryLock(t.Context(), fmt.Sprintf("w%d-%d", w, i), "", dlock.WithTTL(10*time.Second))
				if err != nil {
					if !errors.Is(err, dlock.ErrNotAcquired) {
						workerErrs.add(fmt.Errorf("worker %d, lock %d: TryLock: %w", w, i, err))
						return
					}
					nA.Add(1)
					continue
				}
				if err := l.Release(); err != nil {
					if !errors.Is(err, dlock.ErrLockLost) {
						workerErrs.add(fmt.Errorf("worker %d, lock %d: Release: %w", w, i, err))
						return
					}
					nR.Add(1)
				}
			}
		})
	}
	wg.Wait()
	workerErrs.check(t)
	return nA.Load(), nR.Load()
}

// itCountingNode counts the calls on a node that returned an error, by
// operation, and keeps the first few errors, for diagnostics.
type itCountingNode struct {
	dlock.Node
	mu     sync.Mutex
	failed map[string]int
	first  []string
}

func (n *itCountingNode) note(op string, err error) {
	if err == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.failed == nil {
		n.failed = make(map[string]int)
	}
	n.failed[op]++
	if len(n.first) < 3 {
		n.first = append(n.first, op+": "+err.Error())
	}
}

func (n *itCountingNode) Acquire(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	ok, err := n.Node.Acquire(ctx, key, value, ttl)
	n.note("Acquire", err)
	return ok, err
}

func (n *itCountingNode) Extend(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	ok, err := n.Node.Extend(ctx, key, value, ttl)
	n.note("Extend", err)
	return ok, err
}

func (n *itCountingNode) Release(ctx context.Context, key, value string) (bool, error) {
	ok, err := n.Node.Release(ctx, key, value)
	n.note("Release", err)
	return ok, err
}

func (n *itCountingNode) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return fmt.Sprintf("failed calls %v, first errors %q", n.failed, n.first)
}

// itCounting wraps every node in an itCountingNode.
func itCounting(nodes []dlock.Node) ([]dlock.Node, []*itCountingNode) {
	wrapped := make([]dlock.Node, len(nodes))
	counters := make([]*itCountingNode, len(nodes))
	for i, n := range nodes {
		counters[i] = &itCountingNode{Node: n}
		wrapped[i] = counters[i]
	}
	return wrapped, counters
}

// Two of five nodes 20ms away each way: Lock and Release return at the pace
// of the three fast nodes, and once everything settled no key is left
// anywhere, even though every release on a slow node had to wait for the
// acquire before it.
func TestIntegration_slow_nodes(t *testing.T) {
	const (
		delay   = 20 * time.Millisecond
		slowRTT = 2 * delay
		rounds  = 25
	)
	itSettle(t)
	clients, direct := itSlowProxies(t, 2, delay)
	prefix := itPrefix(t)
	r, err := dlock.New(itNodes(clients), dlock.WithKeyPrefix(prefix), dlock.WithNodeTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Open the connections first: a dial is not what is measured.
	warm, err := r.TryLock(t.Context(), "warm-up", "", dlock.WithTTL(10*time.Second))
	if err != nil {
		t.Fatalf("warm-up TryLock: %v", err)
	}
	if err := warm.Release(); err != nil {
		t.Fatalf("warm-up Release: %v", err)
	}

	t.Run("Lock and Release", func(t *testing.T) {
		var lockTimes, releaseTimes []time.Duration
		for i := range rounds {
			// A new key each time, so that every slow node grants it and
			// every release there has an acquire to wait for.
			start := time.Now()
			l, err := r.Lock(fmt.Sprintf("k%d", i), "", dlock.WithTTL(10*time.Second), dlock.WithRetryLimit(0))
			lockTimes = append(lockTimes, time.Since(start))
			if err != nil {
				t.Fatalf("Lock %d: %v", i, err)
			}
			start = time.Now()
			if err := l.Release(); err != nil {
				t.Fatalf("Release %d: %v", i, err)
			}
			releaseTimes = append(releaseTimes, time.Since(start))
		}
		slices.Sort(lockTimes)
		slices.Sort(releaseTimes)
		lockMedian, releaseMedian := lockTimes[rounds/2], releaseTimes[rounds/2]
		t.Logf("Lock: median %v, max %v; Release: median %v, max %v; slow round trip %v",
			lockMedian, lockTimes[rounds-1], releaseMedian, releaseTimes[rounds-1], slowRTT)
		if lockMedian >= slowRTT {
			t.Errorf("median Lock took %v, want under the slow nodes' round trip %v", lockMedian, slowRTT)
		}
		if releaseMedian >= slowRTT {
			t.Errorf("median Release took %v, want under the slow nodes' round trip %v", releaseMedian, slowRTT)
		}
		itWaitNoKeys(t, direct, prefix, 3*time.Second)
	})

	// The fast nodes are held by another: the attempt fails at their pace,
	// and the grants that the slow nodes give afterwards are undone.
	t.Run("failed attempt undoes late grants", func(t *testing.T) {
		for i, c := range direct[2:] {
			if err := c.Set(t.Context(), prefix+"held", "other", time.Minute).Err(); err != nil {
				t.Fatalf("node %d: SET: %v", i+2, err)
			}
		}
		start := time.Now()
		l, err := r.TryLock(t.Context(), "held", "mine", dlock.WithTTL(10*time.Second))
		elapsed := time.Since(start)
		if !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("TryLock = %v, %v; want ErrNotAcquired", l, err)
		}
		t.Logf("ErrNotAcquired after %v", elapsed)
		if elapsed >= slowRTT {
			t.Errorf("TryLock took %v, want under the slow round trip %v", elapsed, slowRTT)
		}
		// Wait until both slow nodes have seen the acquire and its release.
		time.Sleep(4 * slowRTT)
		deadline := time.Now().Add(3 * time.Second)
		for i, c := range direct {
			want := ""
			if i >= 2 {
				want = "other"
			}
			for {
				got, err := c.Get(t.Context(), prefix+"held").Result()
				if errors.Is(err, redis.Nil) {
					got, err = "", nil
				}
				if err == nil && got == want {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("node %d: GET held = %q, %v; want %q", i, got, err, want)
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		for _, c := range direct[2:] {
			c.Del(t.Context(), prefix+"held")
		}
		itWaitNoKeys(t, direct, prefix, 3*time.Second)
	})
}

// After a burst of Lock+Release against slow nodes, the stragglers finish:
// goroutines and in-use pooled connections return to where they were.
func TestIntegration_stragglers_are_bounded(t *testing.T) {
	const (
		delay       = 20 * time.Millisecond
		nodeTimeout = 300 * time.Millisecond
		workers     = 4
		perWorker   = 50
		// Stragglers end within the node timeout once their node answers;
		// the slow nodes answer within 2*delay; the rest is for the machine.
		settleBound = nodeTimeout + 2*delay + 3*time.Second
	)
	itSettle(t)
	clients, _ := itSlowProxies(t, 2, delay)
	prefix := itPrefix(t)
	nodes, counters := itCounting(itNodes(clients))
	r, err := dlock.New(nodes, dlock.WithKeyPrefix(prefix), dlock.WithNodeTimeout(nodeTimeout))
	if err != nil {
		t.Fatal(err)
	}
	inUse := func() []int {
		var n []int
		for _, c := range clients {
			s := c.PoolStats()
			n = append(n, int(s.TotalConns)-int(s.IdleConns))
		}
		return n
	}
	idle := func(n []int) bool { return !slices.ContainsFunc(n, func(x int) bool { return x != 0 }) }

	// Warm up, then take the baseline once everything is quiet.
	warm, err := r.TryLock(t.Context(), "warm-up", "", dlock.WithTTL(10*time.Second))
	if err != nil {
		t.Fatalf("warm-up TryLock: %v", err)
	}
	if err := warm.Release(); err != nil {
		t.Fatalf("warm-up Release: %v", err)
	}
	time.Sleep(4 * delay)
	for deadline := time.Now().Add(settleBound); !idle(inUse()) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	baseline := itGoroutines()

	start := time.Now()
	notAcquired, notReleased := itBurst(t, r, workers, perWorker)
	burst := time.Since(start)
	t.Logf("burst of %d Lock+Release in %v: %d not acquired, %d releases not confirmed in time",
		workers*perWorker, burst, notAcquired, notReleased)

	end := time.Now()
	var g int
	var conns []int
	for {
		g, conns = itGoroutines(), inUse()
		if g <= baseline && idle(conns) {
			break
		}
		if time.Since(end) > settleBound {
			t.Fatalf("%v after the burst: %d goroutines (baseline %d), in-use connections per node %v; want the baseline and none:\n%s",
				settleBound, g, baseline, conns, itDump())
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("settled %v after the burst (baseline %d goroutines)", time.Since(end), baseline)
	for i, c := range counters {
		t.Logf("node %d: %v", i, c)
	}
	// No check of keys left here: this burst outruns the slow nodes, see
	// TestIntegration_burst_on_slow_nodes_leaves_no_key.
}

// A burst that outruns two slow nodes (default go-redis pool of
// 10*GOMAXPROCS connections, 40ms round trip: at most PoolSize/RTT calls a
// second) must still leave no key behind once it settled: every grant on a
// slow node is eventually undone. (A release waits for a pooled connection
// behind the acquires queued there; with only the node timeout as its
// budget it gave up in the queue and left the key until its TTL. Releases
// now get the TTL as their budget.)
func TestIntegration_burst_on_slow_nodes_leaves_no_key(t *testing.T) {
	const (
		delay       = 20 * time.Millisecond
		nodeTimeout = 300 * time.Millisecond
		workers     = 4
		perWorker   = 50
	)
	itSettle(t)
	clients, direct := itSlowProxies(t, 2, delay)
	prefix := itPrefix(t)
	nodes, counters := itCounting(itNodes(clients))
	r, err := dlock.New(nodes, dlock.WithKeyPrefix(prefix), dlock.WithNodeTimeout(nodeTimeout))
	if err != nil {
		t.Fatal(err)
	}
	notAcquired, notReleased := itBurst(t, r, workers, perWorker)
	t.Logf("%d not acquired, %d releases not confirmed in time", notAcquired, notReleased)
	itWaitNoKeys(t, direct, prefix, 5*time.Second)
	if t.Failed() {
		for i, c := range counters {
			t.Logf("node %d: %v", i, c)
		}
	}
}
