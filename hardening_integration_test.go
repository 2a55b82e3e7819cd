package dlock_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/internal/redistest"
	"github.com/charconstpointer/dlock/internal/tcpproxy"
)

// Integration tests for the hardening of issue 7 (items 3, 5, 12, 13, 15),
// on redis-server processes that each test starts itself
// (redistest.StartServer): servers that are killed, restarted empty,
// protected by a password or made replicas, and ports where nothing
// listens. They need redis-server on PATH, not DLOCK_REDIS_ADDRS: without
// it they are skipped, or fail under DLOCK_REQUIRE_REDIS=1.

var hdQuietOnce sync.Once

// hdQuietLogger drops go-redis's log lines.
type hdQuietLogger struct{}

func (hdQuietLogger) Printf(context.Context, string, ...any) {}

// hdQuiet silences go-redis's logger, which prints a line for every failed
// dial of a node these tests keep down. The logger is global; it only
// writes to stderr, and no test reads it.
func hdQuiet() { hdQuietOnce.Do(func() { redis.SetLogger(hdQuietLogger{}) }) }

// hdSettle registers a cleanup, run after every cleanup registered later
// (clients closed, servers stopped), that waits until the goroutines the
// test started have returned, so that its background calls cannot leak
// into the next test.
func hdSettle(t *testing.T) {
	t.Helper()
	hdQuiet()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		// go-redis probes a dead node once a second until its client closes.
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines still running 10s after the test, %d before it", runtime.NumGoroutine(), base)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// hdOptions are the options of the tests' clients: go-redis cuts calls
// short at the node timeout, and a dead node costs one quick dial.
func hdOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:                  addr,
		ContextTimeoutEnabled: true,
		DialTimeout:           200 * time.Millisecond,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
		DialerRetries:         1,
	}
}

// hdClient returns a client built from opt, closed when the test ends.
func hdClient(t *testing.T, opt *redis.Options) *redis.Client {
	t.Helper()
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// hdServers starts n redis-servers of the test's own.
func hdServers(t *testing.T, n int, args ...string) []*redistest.Server {
	t.Helper()
	ss := make([]*redistest.Server, n)
	for i := range ss {
		ss[i] = redistest.StartServer(t, args...)
	}
	return ss
}

// hdClientsOf returns one hdOptions client per server.
func hdClientsOf(t *testing.T, ss []*redistest.Server) []*redis.Client {
	t.Helper()
	cs := make([]*redis.Client, len(ss))
	for i, s := range ss {
		cs[i] = hdClient(t, hdOptions(s.Addr()))
	}
	return cs
}

// hdByNode groups the node errors in err by node.
func hdByNode(err error) map[int][]*dlock.NodeError {
	m := make(map[int][]*dlock.NodeError)
	for _, ne := range nodeErrors(err) {
		m[ne.Node] = append(m[ne.Node], ne)
	}
	return m
}

// hdGet returns what key holds on the node behind c: its value, or "" when
// it is not set.
func hdGet(ctx context.Context, c *redis.Client, key string) (string, error) {
	v, err := c.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return v, err
}

// hdWaitValue waits up to timeout until key holds want on every node behind
// cs ("" for not set), and fails the test naming the nodes that do not.
func hdWaitValue(t *testing.T, cs []*redis.Client, key, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var wrong []string
		for i, c := range cs {
			got, err := hdGet(t.Context(), c, key)
			if err != nil || got != want {
				wrong = append(wrong, fmt.Sprintf("node %d: GET %s = %q, %v", i, key, got, err))
			}
		}
		if len(wrong) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("after %v, want %q on every node:\n%s", timeout, want, strings.Join(wrong, "\n"))
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Item 3: one store behind two nodes would count twice towards the quorum.
// New rejects the same client twice and two clients of one address and
// database, and accepts two databases of one server. Where New accepts a
// duplicate, the test shows the harm: with the other server down, a Refresh
// succeeds with one real server behind two of three nodes.
func TestHardening_same_store_twice_is_rejected(t *testing.T) {
	hdSettle(t)
	tests := []struct {
		name string
		// clients returns three clients over servers a and b.
		clients func(t *testing.T, a, b *redistest.Server) []*redis.Client
		reject  bool
	}{
		{"same client twice", func(t *testing.T, a, b *redistest.Server) []*redis.Client {
			ca := hdClient(t, hdOptions(a.Addr()))
			return []*redis.Client{ca, ca, hdClient(t, hdOptions(b.Addr()))}
		}, true},
		{"two clients of one address and DB", func(t *testing.T, a, b *redistest.Server) []*redis.Client {
			return []*redis.Client{hdClient(t, hdOptions(a.Addr())), hdClient(t, hdOptions(a.Addr())), hdClient(t, hdOptions(b.Addr()))}
		}, true},
		{"two clients of one address and DB 3", func(t *testing.T, a, b *redistest.Server) []*redis.Client {
			o1, o2 := hdOptions(a.Addr()), hdOptions(a.Addr())
			o1.DB, o2.DB = 3, 3
			return []*redis.Client{hdClient(t, hdOptions(b.Addr())), hdClient(t, o1), hdClient(t, o2)}
		}, true},
		{"one address, two DBs", func(t *testing.T, a, b *redistest.Server) []*redis.Client {
			o1 := hdOptions(a.Addr())
			o1.DB = 1
			return []*redis.Client{hdClient(t, hdOptions(a.Addr())), hdClient(t, o1), hdClient(t, hdOptions(b.Addr()))}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := redistest.StartServer(t), redistest.StartServer(t)
			r, err := dlock.New(dlock.RedisNodes(tt.clients(t, a, b)...))
			if !tt.reject {
				if err != nil {
					t.Fatalf("New = %v, want nil: two databases of one server are two stores", err)
				}
				l, err := r.TryLock(t.Context(), "k", "")
				if err != nil {
					t.Fatalf("TryLock: %v", err)
				}
				if err := l.Release(); err != nil {
					t.Errorf("Release: %v", err)
				}
				return
			}
			if err == nil {
				t.Errorf("New accepted one store behind two nodes; want an error wrapping ErrInvalidConfig. %s", hdDuplicateHarm(t, r, a, b))
				return
			}
			if !errors.Is(err, dlock.ErrInvalidConfig) {
				t.Errorf("New = %v, want an error wrapping ErrInvalidConfig", err)
			}
			t.Logf("New: %v", err)
		})
	}
}

// hdDuplicateHarm describes what a Redlock built over one store twice (on
// server a) and server b does when b goes down: a lock is taken, b stops,
// and a Refresh is tried.
func hdDuplicateHarm(t *testing.T, r *dlock.Redlock, a, b *redistest.Server) string {
	t.Helper()
	l, err := r.TryLock(t.Context(), "k", "", dlock.WithTTL(10*time.Second))
	if err != nil {
		return fmt.Sprintf("(TryLock on the duplicate: %v)", err)
	}
	defer l.Release()
	b.Stop()
	err = l.Refresh(t.Context())
	return fmt.Sprintf("With the other server stopped, Refresh = %v (nil: the lock claims a majority of 3 with one live server, %s)", err, a.Addr())
}

// Item 5: a rolling restart that keeps a majority up at every moment never
// loses a held lock. Five nodes restart one at a time, each down longer
// than the TTL and back empty on the same port; the auto-refresh puts the
// key back where it is missing. Throughout, Held is true and Lost stays
// open; at the end every node holds the lock's value and Release succeeds.
func TestHardening_rolling_restart_keeps_the_lock(t *testing.T) {
	const (
		ttl     = 2 * time.Second
		refresh = 500 * time.Millisecond
		down    = ttl + 500*time.Millisecond
	)
	hdSettle(t)
	servers := hdServers(t, 5)
	clients := hdClientsOf(t, servers)
	// A node timeout above the derived TTL/20 (100ms) only absorbs the
	// stalls of a loaded machine.
	r, err := dlock.New(dlock.RedisNodes(clients...), dlock.WithNodeTimeout(250*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.TryLock(t.Context(), "job", "holder", dlock.WithTTL(ttl), dlock.WithRefreshInterval(refresh))
	if err != nil {
		t.Fatalf("TryLock: %v", err)
	}
	hdWaitValue(t, clients, "job", l.Value(), time.Second)

	// Watch the lock from another goroutine, which only records.
	var (
		mu       sync.Mutex
		firstBad string
	)
	stop := make(chan struct{})
	watched := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(watched)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-l.Lost():
				mu.Lock()
				firstBad = fmt.Sprintf("Lost closed %v into the restarts: %v", time.Since(start).Round(time.Millisecond), l.Err())
				mu.Unlock()
				return
			case <-tick.C:
			}
			if !l.Held() {
				mu.Lock()
				firstBad = fmt.Sprintf("Held false %v into the restarts: %v", time.Since(start).Round(time.Millisecond), l.Err())
				mu.Unlock()
				return
			}
		}
	}()
	bad := func() string {
		mu.Lock()
		defer mu.Unlock()
		return firstBad
	}

	for i, s := range servers {
		s.Stop()
		time.Sleep(down)
		s.Start()
		t.Logf("node %d restarted empty at %v", i, time.Since(start).Round(time.Millisecond))
		if b := bad(); b != "" {
			t.Errorf("after restarting node %d: %s", i, b)
			break
		}
	}
	// The last node restarted gets the key back at a refresh.
	if bad() == "" {
		hdWaitValue(t, clients, "job", l.Value(), 3*refresh+time.Second)
	}
	close(stop)
	<-watched
	if b := bad(); b != "" {
		t.Errorf("the lock was lost during a rolling restart with 4 of 5 nodes always up: %s", b)
	}
	if err := l.Release(); err != nil {
		t.Errorf("Release = %v, want nil", err)
	}
	hdWaitValue(t, clients, "job", "", 2*time.Second)
}

// Item 12: with 3 of 5 nodes refusing connections (nothing listens on
// their ports), Lock's error names the real cause, "connection refused",
// for each of them, never a bare "not sent" or "skipped".
//
// A client whose dial fails within the node timeout reports the refusal
// itself, which must reach the error. A client with go-redis's default dial
// retries (5 dials, 100ms apart, and then command retries) outlasts the
// node timeout, and go-redis then returns only the context's deadline: the
// cause it hides cannot be named, but the node's error must still say what
// it waited for, a node timeout (errors.Is ErrNodeTimeout), also in later
// attempts that found the node's previous call still running.
func TestHardening_unreachable_nodes_name_the_cause(t *testing.T) {
	tests := []struct {
		name string
		opt  func(addr string) *redis.Options
		// timeoutOK accepts a node timeout in place of the refusal.
		timeoutOK bool
	}{
		{"client with short timeouts", hdOptions, false},
		{"client with ContextTimeoutEnabled", func(addr string) *redis.Options {
			return &redis.Options{Addr: addr, ContextTimeoutEnabled: true}
		}, true},
		{"client with go-redis defaults", func(addr string) *redis.Options { return &redis.Options{Addr: addr} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdSettle(t)
			servers := hdServers(t, 2)
			var clients []*redis.Client
			for range 3 {
				clients = append(clients, hdClient(t, tt.opt(hdClosedAddr(t))))
			}
			for _, s := range servers {
				clients = append(clients, hdClient(t, tt.opt(s.Addr())))
			}
			r, err := dlock.New(dlock.RedisNodes(clients...))
			if err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			l, err := r.Lock("k", "", dlock.WithRetryLimit(3), dlock.WithRetryInterval(50*time.Millisecond))
			t.Logf("Lock returned after %v: %v", time.Since(begin).Round(time.Millisecond), err)
			if !errors.Is(err, dlock.ErrNotAcquired) {
				t.Fatalf("Lock = %v, %v; want ErrNotAcquired", l, err)
			}
			byNode := hdByNode(err)
			for i := range 3 {
				if len(byNode[i]) == 0 {
					t.Errorf("node %d (refused connections): no *NodeError in the error", i)
				}
				for _, ne := range byNode[i] {
					msg := ne.Error()
					switch {
					case strings.Contains(msg, "connection refused"):
					case tt.timeoutOK && errors.Is(ne, dlock.ErrNodeTimeout):
					case tt.timeoutOK:
						t.Errorf("node %d: %q names neither the cause, connection refused, nor a node timeout (errors.Is ErrNodeTimeout)", i, msg)
					default:
						t.Errorf("node %d: %q does not name the cause, connection refused", i, msg)
					}
				}
			}
			for i := 3; i < 5; i++ {
				for _, ne := range byNode[i] {
					t.Errorf("node %d is up but has a *NodeError: %v", i, ne)
				}
			}
			hdWaitValue(t, clients[3:], "k", "", 2*time.Second)
		})
	}
}

// hdClosedAddr returns a loopback address where nothing listens.
func hdClosedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Item 15: errors that cannot heal by retrying (no password or a wrong one
// for a server with requirepass, a replica listed as a master) are
// permanent. With 3 of 5 nodes failing so, LockContext with unlimited
// retries and a 10s context fails at once with ErrNotAcquired and the
// nodes' own errors, and leaves no key on the healthy nodes.
func TestHardening_permanent_errors_are_not_retried(t *testing.T) {
	const secret = "s3cret"
	hdSettle(t)
	// The replicas' master starts a full sync at once, not after the
	// default 5s wait for more replicas.
	masters := []*redistest.Server{redistest.StartServer(t, "--repl-diskless-sync-delay", "0"), redistest.StartServer(t)}
	protected := hdServers(t, 3, "--requirepass", secret)
	replicas := make([]*redistest.Server, 3)
	for i := range replicas {
		replicas[i] = redistest.StartServer(t, "--replicaof", "127.0.0.1", masters[0].Port())
		hdWaitReplica(t, replicas[i])
	}
	noPassword := func(i int) *redis.Options { return hdOptions(protected[i].Addr()) }
	wrongPassword := func(i int) *redis.Options {
		o := hdOptions(protected[i].Addr())
		o.Password = "wrong"
		return o
	}
	replica := func(i int) *redis.Options { return hdOptions(replicas[i].Addr()) }
	var (
		isAuth     = redis.IsAuthError
		isReadOnly = redis.IsReadOnlyError
	)
	type bad struct {
		opt  func(i int) *redis.Options
		want string // the error's prefix
		is   func(error) bool
	}
	tests := []struct {
		name string
		bad  [3]bad // nodes 0-2
	}{
		{"NOAUTH", [3]bad{{noPassword, "NOAUTH", isAuth}, {noPassword, "NOAUTH", isAuth}, {noPassword, "NOAUTH", isAuth}}},
		{"WRONGPASS", [3]bad{{wrongPassword, "WRONGPASS", isAuth}, {wrongPassword, "WRONGPASS", isAuth}, {wrongPassword, "WRONGPASS", isAuth}}},
		{"READONLY replica", [3]bad{{replica, "READONLY", isReadOnly}, {replica, "READONLY", isReadOnly}, {replica, "READONLY", isReadOnly}}},
		{"mixed", [3]bad{{noPassword, "NOAUTH", isAuth}, {wrongPassword, "WRONGPASS", isAuth}, {replica, "READONLY", isReadOnly}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var clients []*redis.Client
			for i, b := range tt.bad {
				clients = append(clients, hdClient(t, b.opt(i)))
			}
			for _, m := range masters {
				clients = append(clients, hdClient(t, hdOptions(m.Addr())))
			}
			r, err := dlock.New(dlock.RedisNodes(clients...))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			key := strings.ReplaceAll(tt.name, " ", "-")
			begin := time.Now()
			l, err := r.LockContext(ctx, key, "", dlock.WithRetryLimit(-1), dlock.WithRetryInterval(50*time.Millisecond))
			elapsed := time.Since(begin)
			t.Logf("LockContext returned after %v: %v", elapsed.Round(time.Millisecond), err)
			if !errors.Is(err, dlock.ErrNotAcquired) {
				t.Fatalf("LockContext = %v, %v; want ErrNotAcquired", l, err)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("LockContext ran until its context ended: the permanent errors were retried")
			}
			if elapsed > time.Second {
				t.Errorf("LockContext took %v, want well under a second", elapsed)
			}
			byNode := hdByNode(err)
			for i, b := range tt.bad {
				if len(byNode[i]) == 0 {
					t.Errorf("node %d: no *NodeError, want one with %s", i, b.want)
				}
				for _, ne := range byNode[i] {
					// A server that requires a password answers a long
					// script call (EVALSHA with many arguments) from an
					// unauthenticated client with "Protocol error:
					// unauthenticated", not NOAUTH: the same cause.
					msgOK := strings.Contains(ne.Error(), b.want) ||
						(b.want == "NOAUTH" && strings.Contains(ne.Error(), "unauthenticated"))
					if !b.is(ne) || !msgOK {
						t.Errorf("node %d: %v; want the node's %s error", i, ne, b.want)
					}
				}
			}
			// Nothing is left on the healthy nodes: the attempt was undone.
			hdWaitValue(t, clients[3:], key, "", 2*time.Second)
		})
	}
}

// hdWaitReplica waits until the replica s has synchronised with its master,
// so that it answers writes with READONLY (not LOADING or MASTERDOWN).
func hdWaitReplica(t *testing.T, s *redistest.Server) {
	t.Helper()
	c := hdClient(t, hdOptions(s.Addr()))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		info, err := c.Info(t.Context(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s not in sync after 10s: %v\n%s\n%s", s.Addr(), err, info, s.Output())
		}
	}
}

// Item 15: a held key that a majority of nodes now holds as another type
// (here a list: DEL, then LPUSH) is no longer the lock's. Refresh reports
// the lock lost (the nodes refused; the outcome is not unknown), Lost
// closes, and the lists are left alone.
func TestHardening_WRONGTYPE_on_refresh_loses_the_lock(t *testing.T) {
	tests := []struct {
		name    string
		refresh time.Duration // auto-refresh interval; 0: Refresh is called
	}{
		{"Refresh", 0},
		{"auto-refresh", 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const ttl = 10 * time.Second
			hdSettle(t)
			clients := hdClientsOf(t, hdServers(t, 5))
			r, err := dlock.New(dlock.RedisNodes(clients...))
			if err != nil {
				t.Fatal(err)
			}
			l, err := r.TryLock(t.Context(), "k", "", dlock.WithTTL(ttl), dlock.WithRefreshInterval(tt.refresh))
			if err != nil {
				t.Fatalf("TryLock: %v", err)
			}
			hdWaitValue(t, clients, "k", l.Value(), time.Second)
			for i, c := range clients[:3] {
				if err := c.Del(t.Context(), "k").Err(); err != nil {
					t.Fatalf("node %d: DEL: %v", i, err)
				}
				if err := c.LPush(t.Context(), "k", "intruder").Err(); err != nil {
					t.Fatalf("node %d: LPUSH: %v", i, err)
				}
			}

			if tt.refresh == 0 {
				err := l.Refresh(t.Context())
				t.Logf("Refresh: %v", err)
				if !errors.Is(err, dlock.ErrLockLost) {
					t.Errorf("Refresh = %v, want an error wrapping ErrLockLost (the key is another's now)", err)
				}
			}
			// Well before the validity (about the TTL) runs out.
			select {
			case <-l.Lost():
			case <-time.After(ttl / 2):
				t.Fatalf("Lost not closed %v after the key became a list on a majority (Held = %v, Err = %v)", ttl/2, l.Held(), l.Err())
			}
			if err := l.Err(); !errors.Is(err, dlock.ErrLockLost) {
				t.Errorf("Err = %v, want an error wrapping ErrLockLost", err)
			}
			if l.Held() {
				t.Error("Held = true after the lock was lost")
			}
			if err := l.Release(); !errors.Is(err, dlock.ErrLockLost) {
				t.Errorf("Release = %v, want an error wrapping ErrLockLost", err)
			}
			hdWaitValue(t, clients[3:], "k", "", 2*time.Second)
			for i, c := range clients[:3] {
				if got, err := c.Type(t.Context(), "k").Result(); err != nil || got != "list" {
					t.Errorf("node %d: TYPE k = %q, %v; want the list left alone", i, got, err)
				}
			}
		})
	}
}

// hdHungListener accepts connections and never answers. It is closed, with
// every connection it accepted, when the test ends.
func hdHungListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// Item 13: a node that accepts connections and never answers is reported
// as a node timeout: its *NodeError satisfies errors.Is(err,
// dlock.ErrNodeTimeout) and not errors.Is(err, context.DeadlineExceeded),
// which is kept for the caller's own context (here without a deadline),
// whether or not the client cuts calls short at the context's deadline.
func TestHardening_hung_node_is_a_node_timeout(t *testing.T) {
	const nodeTimeout = 100 * time.Millisecond
	tests := []struct {
		name string
		opt  func(addr string) *redis.Options
	}{
		{"ContextTimeoutEnabled", hdOptions},
		{"client ignores ctx deadlines", func(addr string) *redis.Options {
			o := hdOptions(addr)
			o.ContextTimeoutEnabled = false
			return o
		}},
	}
	check := func(t *testing.T, what string, err error, hung []int) {
		t.Helper()
		t.Logf("%s: %v", what, err)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: errors.Is(err, context.DeadlineExceeded) holds, but the caller's context has no deadline", what)
		}
		byNode := hdByNode(err)
		for _, i := range hung {
			if len(byNode[i]) == 0 {
				t.Errorf("%s: node %d (hung): no *NodeError", what, i)
			}
			for _, ne := range byNode[i] {
				if !errors.Is(ne, dlock.ErrNodeTimeout) {
					t.Errorf("%s: node %d: %v; want errors.Is ErrNodeTimeout", what, i, ne)
				}
				if errors.Is(ne, context.DeadlineExceeded) {
					t.Errorf("%s: node %d: %v satisfies errors.Is(context.DeadlineExceeded)", what, i, ne)
				}
			}
		}
	}
	for _, tt := range tests {
		// newRedlock returns a Redlock over a redis-server and two hung nodes.
		newRedlock := func(t *testing.T) *dlock.Redlock {
			s := redistest.StartServer(t)
			clients := []*redis.Client{
				hdClient(t, tt.opt(s.Addr())),
				hdClient(t, tt.opt(hdHungListener(t))),
				hdClient(t, tt.opt(hdHungListener(t))),
			}
			r, err := dlock.New(dlock.RedisNodes(clients...), dlock.WithNodeTimeout(nodeTimeout))
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		t.Run(tt.name+"/TryLock", func(t *testing.T) {
			hdSettle(t)
			r := newRedlock(t)
			l, err := r.TryLock(context.Background(), "k", "")
			if !errors.Is(err, dlock.ErrNotAcquired) {
				t.Fatalf("TryLock = %v, %v; want ErrNotAcquired", l, err)
			}
			check(t, "TryLock", err, []int{1, 2})
		})
		// Later attempts find the calls of earlier ones still hanging: the
		// node is still reported as a node timeout, its last real error.
		t.Run(tt.name+"/Lock with retries", func(t *testing.T) {
			hdSettle(t)
			r := newRedlock(t)
			l, err := r.Lock("k", "", dlock.WithRetryLimit(2), dlock.WithRetryInterval(10*time.Millisecond))
			if !errors.Is(err, dlock.ErrNotAcquired) {
				t.Fatalf("Lock = %v, %v; want ErrNotAcquired", l, err)
			}
			check(t, "Lock", err, []int{1, 2})
		})
		t.Run(tt.name+"/Refresh", func(t *testing.T) {
			hdSettle(t)
			servers := hdServers(t, 3)
			var clients []*redis.Client
			var proxies []*tcpproxy.Proxy
			for i, s := range servers {
				addr := s.Addr()
				if i > 0 {
					p, err := tcpproxy.New(addr)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { p.Close() })
					proxies = append(proxies, p)
					addr = p.Addr()
				}
				clients = append(clients, hdClient(t, tt.opt(addr)))
			}
			r, err := dlock.New(dlock.RedisNodes(clients...), dlock.WithNodeTimeout(nodeTimeout))
			if err != nil {
				t.Fatal(err)
			}
			l, err := r.TryLock(context.Background(), "k", "", dlock.WithTTL(10*time.Second))
			if err != nil {
				t.Fatalf("TryLock: %v", err)
			}
			// TryLock returns once two nodes granted; let the third call
			// end too, so that the refresh is sent to every node.
			hdWaitValue(t, hdClientsOf(t, servers), "k", l.Value(), time.Second)
			time.Sleep(50 * time.Millisecond)
			for _, p := range proxies {
				p.Cut()
			}
			err = l.Refresh(context.Background())
			if err == nil {
				t.Fatal("Refresh = nil with 2 of 3 nodes hung, want an error")
			}
			if errors.Is(err, dlock.ErrLockLost) {
				t.Errorf("Refresh = %v; want a failure that keeps the lock until its validity, not ErrLockLost", err)
			}
			check(t, "Refresh", err, []int{1, 2})
			for _, p := range proxies {
				p.Heal()
			}
			// Let the calls cut short or hanging end (at the latest at the
			// client's ReadTimeout), so that the release is not queued
			// behind them.
			time.Sleep(hdOptions("").ReadTimeout + 200*time.Millisecond)
			if err := l.Release(); err != nil {
				t.Errorf("Release after the nodes healed = %v, want nil", err)
			}
		})
	}
}

// Issue 10: with one node that accepts connections and never answers,
// Lock+Release on fresh keys keeps its goroutines bounded however many
// locks are taken (acquires beyond WithMaxInFlight are not sent to it, and
// no release goes where no acquire went), and they end soon after the
// client's own timeouts. Before, each Lock+Release parked a goroutine
// behind the hung node for as long as the client let its calls hang.
func TestHardening_hung_node_keeps_goroutines_bounded(t *testing.T) {
	const (
		locks = 1000
		bound = 16
	)
	hdSettle(t) // also: the goroutines end within 10s of the test
	servers := hdServers(t, 4)
	opts := func(addr string) *redis.Options {
		o := hdOptions(addr)
		o.ContextTimeoutEnabled = false // calls to the hung node end at ReadTimeout (1s), not at dlock's deadline
		return o
	}
	clients := []*redis.Client{hdClient(t, opts(hdHungListener(t)))}
	for _, s := range servers {
		clients = append(clients, hdClient(t, opts(s.Addr())))
	}
	r, err := dlock.New(dlock.RedisNodes(clients...), dlock.WithMaxInFlight(bound), dlock.WithNodeTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	most := base
	start := time.Now()
	for i := range locks {
		l, err := r.LockContext(t.Context(), fmt.Sprintf("hung-node-%d", i), "", dlock.WithTTL(time.Hour), dlock.WithRetryLimit(0))
		if err != nil {
			t.Fatalf("lock %d: %v", i, err)
		}
		if err := l.ReleaseContext(t.Context()); err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
		if i%10 == 0 {
			most = max(most, runtime.NumGoroutine())
		}
	}
	// Per hung acquire: its call, and the release queued behind it; the
	// clients' own goroutines and dlock's idle workers come on top.
	limit := base + 2*bound + 64
	t.Logf("%d Lock+Release in %v with a hung node: goroutines %d before, at most %d during (limit %d)",
		locks, time.Since(start).Round(time.Millisecond), base, most, limit)
	if most > limit {
		t.Errorf("%d goroutines during %d Lock+Release with a hung node (%d before): not bounded by WithMaxInFlight(%d)", most, locks, base, bound)
	}
	for i, c := range clients[1:] {
		if n, err := c.DBSize(context.Background()).Result(); err != nil || n != 0 {
			t.Errorf("server %d: %d keys left (%v), want 0", i, n, err)
		}
	}
}
