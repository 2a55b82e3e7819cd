package dlock_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/charconstpointer/dlock"
)

// These tests run RedisNode against miniredis: an in-process Redis that runs
// the real Lua scripts. Its TTLs move only with FastForward, so every TTL
// assertion here is exact. miniredis serves real sockets: keep it out of
// testing/synctest bubbles.

// mrClientKind builds one kind of go-redis client in front of one server.
type mrClientKind struct {
	name string
	dial func(t *testing.T, addr string) redis.UniversalClient
}

// mrClientKinds are the client types RedisNode accepts.
var mrClientKinds = []mrClientKind{
	{"Client", func(t *testing.T, addr string) redis.UniversalClient {
		t.Helper()
		c := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { c.Close() })
		return c
	}},
	{"Ring", func(t *testing.T, addr string) redis.UniversalClient {
		t.Helper()
		c := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"shard0": addr}})
		t.Cleanup(func() { c.Close() })
		return c
	}},
	{"ClusterClient", func(t *testing.T, addr string) redis.UniversalClient {
		t.Helper()
		c := redis.NewClusterClient(&redis.ClusterOptions{
			ClusterSlots: func(context.Context) ([]redis.ClusterSlot, error) {
				return []redis.ClusterSlot{{Start: 0, End: 16383, Nodes: []redis.ClusterNode{{Addr: addr}}}}, nil
			},
		})
		t.Cleanup(func() { c.Close() })
		return c
	}},
}

// forEachClientKind runs f once per client kind, each with a fresh
// miniredis and a RedisNode over a client of that kind.
func forEachClientKind(t *testing.T, f func(t *testing.T, m *miniredis.Miniredis, n dlock.Node)) {
	t.Helper()
	for _, kind := range mrClientKinds {
		t.Run(kind.name, func(t *testing.T) {
			m := miniredis.RunT(t)
			n := dlock.RedisNode(kind.dial(t, m.Addr()))
			if n == nil {
				t.Fatalf("RedisNode(%s) = nil", kind.name)
			}
			f(t, m, n)
		})
	}
}

// mrWant checks what m holds at key: the value and the TTL, or absence when
// want is "".
func mrWant(t *testing.T, m *miniredis.Miniredis, key, want string, wantTTL time.Duration) {
	t.Helper()
	if want == "" {
		if m.Exists(key) {
			got, _ := m.Get(key)
			t.Errorf("key %q = %q, want no key", key, got)
		}
		return
	}
	got, err := m.Get(key)
	if err != nil {
		t.Errorf("key %q: %v, want %q", key, err, want)
		return
	}
	if !heldBy(got, want) {
		t.Errorf("key %q = %q, want %q", key, got, want)
	}
	if gotTTL := m.TTL(key); gotTTL != wantTTL {
		t.Errorf("TTL of %q = %v, want %v", key, gotTTL, wantTTL)
	}
}

// mrSet sets key to value with ttl directly on m, as another holder would.
func mrSet(t *testing.T, m *miniredis.Miniredis, key, value string, ttl time.Duration) {
	t.Helper()
	if err := m.Set(key, value); err != nil {
		t.Fatal(err)
	}
	m.SetTTL(key, ttl)
}

func TestRedisNode_Acquire_sets_free_key_with_TTL(t *testing.T) {
	tests := []struct {
		name    string
		ttl     time.Duration
		wantTTL time.Duration // TTL rounded up to whole milliseconds
	}{
		{"seconds", 10 * time.Second, 10 * time.Second},
		{"milliseconds", 1500 * time.Millisecond, 1500 * time.Millisecond},
		{"whole ms", 250 * time.Millisecond, 250 * time.Millisecond},
		{"sub-ms part rounds up", 1500 * time.Microsecond, 2 * time.Millisecond},
		{"just above a ms", time.Millisecond + time.Nanosecond, 2 * time.Millisecond},
		{"below one ms", time.Nanosecond, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachClientKind(t, func(t *testing.T, m *miniredis.Miniredis, n dlock.Node) {
				got, err := n.Acquire(t.Context(), "k", "v1", tt.ttl)
				if err != nil || !got {
					t.Fatalf("Acquire = %v, %v; want true, nil", got, err)
				}
				mrWant(t, m, "k", "v1", tt.wantTTL)
			})
		})
	}
}

func TestRedisNode_Acquire_refuses_held_key(t *testing.T) {
	tests := []struct {
		name   string
		holder string // value already on the node
	}{
		{"other value", "v2"},
		{"same value", "v1"}, // SET NX: a second acquire is refused too
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachClientKind(t, func(t *testing.T, m *miniredis.Miniredis, n dlock.Node) {
				mrSet(t, m, "k", tt.holder, 5*time.Second)
				got, err := n.Acquire(t.Context(), "k", "v1", time.Second)
				if err != nil || got {
					t.Fatalf("Acquire = %v, %v; want false, nil", got, err)
				}
				mrWant(t, m, "k", tt.holder, 5*time.Second)
			})
		})
	}
}

func TestRedisNode_Acquire_after_expiry(t *testing.T) {
	forEachClientKind(t, func(t *testing.T, m *miniredis.Miniredis, n dlock.Node) {
		ctx := t.Context()
		if got, err := n.Acquire(ctx, "k", "v1", 100*time.Millisecond); err != nil || !got {
			t.Fatalf("first Acquire = %v, %v; want true, nil", got, err)
		}
		m.FastForward(99 * time.Millisecond)
		if got, err := n.Acquire(ctx, "k", "v2", time.Second); err != nil || got {
			t.Fatalf("Acquire 1ms before expiry = %v, %v; want false, nil", got, err)
		}
		m.FastForward(time.Millisecond)
		if got, err := n.Acquire(ctx, "k", "v2", time.Second); err != nil || !got {
			t.Fatalf("Acquire after expiry = %v, %v; want true, nil", got, err)
		}
		mrWant(t, m, "k", "v2", time.Second)
	})
}

func TestRedisNode_Extend_sets_new_TTL(t *testing.T) {
	tests := []struct {
		name    string
		ttl     time.Duration
		wantTTL time.Duration
	}{
		{"longer", 3 * time.Second, 3 * time.Second},
		{"shorter", 200 * time.Millisecond, 200 * time.Millisecond},
		{"sub-ms part rounds up", 2500 * time.Microsecond, 3 * time.Millisecond},
		{"below one ms", time.Microsecond, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachClientKind(t, func(t *testing.T, m *miniredis.Miniredis, n dlock.Node) {
				ctx := t.Context()
				if got, err := n.Acquire(ctx, "k", "v1", time.Second); err != nil || !got {
					t.Fatalf("Acquire = %v, %v; want true, nil", got, err)
				}
				m.FastForward(600 * time.Millisecond)
				mrWant(t, m, "k", "v1", 400*time.Millisecond)
				got, err := n.Extend(ctx, "k", "v1", tt.ttl)
				if err != nil || !got {
					t.Fatalf("Extend = %v, %v; want true, nil", got, err)
				}
				mrWant(t, m, "k", "v1", tt.wantTTL)
			})
		})
	}
}

func TestRedisNode_Extend_refuses_other_value(t *testing.T) {
	forEachClientKind(t, func(t *testing.T, m *miniredis.Miniredis, n dlock.Node) {
		mrSet(t, m, "k", "v2", 5*time.Second)
		got, err := n.Extend(t.Context(), "k", "v1", time.Minute)
		if err != nil || got {
			t.Fatalf("Extend = %v, %v; want false, nil", got, err)
		}
		mrWant(t, m, "k", "v2", 5*time.Second)
	})
}

func TestRedisNode_Extend_puts_back_a_missing_key(t *testing.T) {
	t.Run("never set", func(t *testing.T) {
		forEachClientKind(t, func(t *testing.T, m *miniredis.Miniredis, n dlock.Node) {
			got, err := n.Extend(t.Context(), "k", "v1", time.Second)
			if err != nil || !got {
				t.Fatalf("Extend = %v, %v; want true, nil", got, err)
			}
			mrWant(t, m, "k", "v1", time.Second)
		})
	})
	t.Run("expired", func(t *testing.T) {
		forEachClientKind(t, func(t *testing.T, m *miniredis.Miniredis, n dlock.Node) {
			ctx := t.Context()
			if got, err := n.Acquire(ctx, "k", "v1", 100*time.Millisecond); err != nil || !got {
				t.Fatalf("Acquire = %v, %v; want true, nil", got, err)
			}
			m.FastForward(100 * time.Millisecond)
			got, err := n.Extend(ctx, "k", "v1", time.Second)
			if err != nil || !got {
				t.Fatalf("Extend after expiry = %v, %v; want true, nil", got, err)
			}
			mrWant(t, m, "k", "v1", time.Second)
		})
	})
	t.Run("held by another value", func(t *testing.T) {
		forEachClientKind(t, func(t *testing.T, m *miniredis.Miniredis, n dlock.Node) {
			ctx := t.Context()
			if got, err := n.Acquire(ctx, "k", "other", time.Minute); err != nil || !got {
				t.Fatalf("Acquire = %v, %v; want true, nil", got, err)
			}
			got, err := n.Extend(ctx, "k", "v1", time.Second)
			if err != nil || got {
				t.Fatalf("Extend of another holder's key = %v, %v; want false, nil", got, err)
			}
			mrWant(t, m, "k", "other", time.Minute)
		})
	})
	t.Run("a key of another type", func(t *testing.T) {
		forEachClientKind(t, func(t *testing.T, m *miniredis.Miniredis, n dlock.Node) {
			m.Lpush("k", "x")
			got, err := n.Extend(t.Context(), "k", "v1", time.Second)
			if err != nil || got {
				t.Fatalf("Extend of a list = %v, %v; want false, nil (refused, not an error)", got, err)
			}
			if ok, err := n.Release(t.Context(), "k", "v1"); err != nil || ok {
				t.Fatalf("Release of a list = %v, %v; want false, nil", ok, err)
			}
		})
	})
}

func TestRedisNode_Release_deletes_matching_value(t *testing.T) {
	forEachClientKind(t, func(t *testing.T, m *miniredis.Miniredis, n dlock.Node) {
		ctx := t.Context()
		if got, err := n.Acquire(ctx, "k", "v1", time.Second); err != nil || !got {
			t.Fatalf("Acquire = %v, %v; want true, nil", got, err)
		}
		got, err := n.Release(ctx, "k", "v1")
		if err != nil || !got {
			t.Fatalf("Release = %v, %v; want true, nil", got, err)
		}
		mrWant(t, m, "k", "", 0)
		got, err = n.Release(ctx, "k", "v1")
		if err != nil || got {
			t.Fatalf("second Release = %v, %v; want false, nil", got, err)
		}
	})
}

func TestRedisNode_Release_refuses_other_value(t *testing.T) {
	forEachClientKind(t, func(t *testing.T, m *miniredis.Miniredis, n dlock.Node) {
		mrSet(t, m, "k", "v2", 5*time.Second)
		got, err := n.Release(t.Context(), "k", "v1")
		if err != nil || got {
			t.Fatalf("Release = %v, %v; want false, nil", got, err)
		}
		mrWant(t, m, "k", "v2", 5*time.Second)
	})
}

// A holder whose key expired and was taken by another must not delete the
// new holder's key.
func TestRedisNode_Release_never_deletes_next_holders_key(t *testing.T) {
	forEachClientKind(t, func(t *testing.T, m *miniredis.Miniredis, n dlock.Node) {
		ctx := t.Context()
		if got, err := n.Acquire(ctx, "k", "old", 100*time.Millisecond); err != nil || !got {
			t.Fatalf("Acquire old = %v, %v; want true, nil", got, err)
		}
		m.FastForward(100 * time.Millisecond)
		if got, err := n.Acquire(ctx, "k", "new", time.Second); err != nil || !got {
			t.Fatalf("Acquire new = %v, %v; want true, nil", got, err)
		}
		if got, err := n.Extend(ctx, "k", "old", time.Minute); err != nil || got {
			t.Fatalf("Extend old = %v, %v; want false, nil", got, err)
		}
		if got, err := n.Release(ctx, "k", "old"); err != nil || got {
			t.Fatalf("Release old = %v, %v; want false, nil", got, err)
		}
		mrWant(t, m, "k", "new", time.Second)
	})
}

// mrScriptSHA returns the SHA1 by which Redis caches the Lua script in file.
func mrScriptSHA(t *testing.T, file string) string {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(src)
	return hex.EncodeToString(sum[:])
}

// mrScriptsCached reports, per SHA, whether the server at addr has it cached.
func mrScriptsCached(t *testing.T, addr string, shas ...string) []bool {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	got, err := c.ScriptExists(t.Context(), shas...).Result()
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func mrScriptFlush(t *testing.T, addr string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	if err := c.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
}

// Extend and Release run by SHA and fall back to sending the script when the
// server answers NOSCRIPT: on a fresh server, and after SCRIPT FLUSH.
func TestRedisNode_scripts_survive_NOSCRIPT(t *testing.T) {
	extendSHA, releaseSHA := mrScriptSHA(t, "extend.lua"), mrScriptSHA(t, "release.lua")
	forEachClientKind(t, func(t *testing.T, m *miniredis.Miniredis, n dlock.Node) {
		ctx := t.Context()
		cached := func() []bool { return mrScriptsCached(t, m.Addr(), extendSHA, releaseSHA) }
		if got, want := cached(), []bool{false, false}; !slices.Equal(got, want) {
			t.Fatalf("fresh server: scripts cached = %v, want %v", got, want)
		}
		for round := range 2 {
			if got, err := n.Acquire(ctx, "k", "v1", time.Second); err != nil || !got {
				t.Fatalf("round %d: Acquire = %v, %v; want true, nil", round, got, err)
			}
			if got, err := n.Extend(ctx, "k", "v1", 2*time.Second); err != nil || !got {
				t.Fatalf("round %d: Extend = %v, %v; want true, nil", round, got, err)
			}
			mrWant(t, m, "k", "v1", 2*time.Second)
			if got, err := n.Release(ctx, "k", "v1"); err != nil || !got {
				t.Fatalf("round %d: Release = %v, %v; want true, nil", round, got, err)
			}
			mrWant(t, m, "k", "", 0)
			if got, want := cached(), []bool{true, true}; !slices.Equal(got, want) {
				t.Fatalf("round %d: after use, scripts cached = %v, want %v", round, got, want)
			}
			mrScriptFlush(t, m.Addr())
			if got, want := cached(), []bool{false, false}; !slices.Equal(got, want) {
				t.Fatalf("round %d: after SCRIPT FLUSH, scripts cached = %v, want %v", round, got, want)
			}
		}
	})
}

func TestRedisNode_server_error_is_returned(t *testing.T) {
	forEachClientKind(t, func(t *testing.T, m *miniredis.Miniredis, n dlock.Node) {
		m.SetError("LOADING Redis is loading the dataset in memory")
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		ops := []struct {
			name string
			call func() (bool, error)
		}{
			{"Acquire", func() (bool, error) { return n.Acquire(ctx, "k", "v1", time.Second) }},
			{"Extend", func() (bool, error) { return n.Extend(ctx, "k", "v1", time.Second) }},
			{"Release", func() (bool, error) { return n.Release(ctx, "k", "v1") }},
		}
		for _, op := range ops {
			got, err := op.call()
			if err == nil || got {
				t.Errorf("%s = %v, %v; want false and an error", op.name, got, err)
			}
		}
		m.SetError("")
		mrWant(t, m, "k", "", 0)
	})
}

func TestRedisNode_nil_client_fails_New(t *testing.T) {
	tests := []struct {
		name   string
		client redis.UniversalClient
	}{
		{"untyped nil", nil},
		{"nil *redis.Client", (*redis.Client)(nil)},
		{"nil *redis.Ring", (*redis.Ring)(nil)},
		{"nil *redis.ClusterClient", (*redis.ClusterClient)(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Run("RedisNode", func(t *testing.T) {
				r, err := dlock.New([]dlock.Node{dlock.RedisNode(tt.client)})
				if !errors.Is(err, dlock.ErrInvalidConfig) {
					t.Errorf("New(RedisNode(nil)) = %v, %v; want an error wrapping ErrInvalidConfig", r, err)
				}
			})
			t.Run("RedisNodes", func(t *testing.T) {
				m := miniredis.RunT(t)
				c := redis.NewClient(&redis.Options{Addr: m.Addr()})
				defer c.Close()
				r, err := dlock.New(dlock.RedisNodes[redis.UniversalClient](c, tt.client, c))
				if !errors.Is(err, dlock.ErrInvalidConfig) {
					t.Errorf("New(RedisNodes(c, nil, c)) = %v, %v; want an error wrapping ErrInvalidConfig", r, err)
				}
			})
		})
	}
}

// mrCluster is a Redlock over n miniredis servers, each behind a *redis.Client.
type mrCluster struct {
	servers []*miniredis.Miniredis
	clients []*redis.Client
}

func newMRCluster(t *testing.T, n int) *mrCluster {
	t.Helper()
	c := &mrCluster{}
	for range n {
		m := miniredis.RunT(t)
		rc := redis.NewClient(&redis.Options{Addr: m.Addr()})
		t.Cleanup(func() { rc.Close() })
		c.servers = append(c.servers, m)
		c.clients = append(c.clients, rc)
	}
	return c
}

func (c *mrCluster) nodes() []dlock.Node {
	nodes := make([]dlock.Node, len(c.clients))
	for i, rc := range c.clients {
		nodes[i] = dlock.RedisNode(rc)
	}
	return nodes
}

func (c *mrCluster) fastForward(d time.Duration) {
	for _, m := range c.servers {
		m.FastForward(d)
	}
}

// want checks key on every server. Lock and Release return once a majority
// answered, so it first waits a little for the last server to agree.
func (c *mrCluster) want(t *testing.T, key, value string, ttl time.Duration) {
	t.Helper()
	mrEventually(2*time.Second, func() bool {
		for _, m := range c.servers {
			got, err := m.Get(key)
			if value == "" && m.Exists(key) || value != "" && (err != nil || !heldBy(got, value) || m.TTL(key) != ttl) {
				return false
			}
		}
		return true
	})
	for _, m := range c.servers {
		mrWant(t, m, key, value, ttl)
	}
}

func TestRedisNode_key_prefix(t *testing.T) {
	c := newMRCluster(t, 3)
	// miniredis runs the scripts in-process: under the race detector and a
	// loaded machine a call can outlast a short TTL's derived node timeout.
	r, err := dlock.New(c.nodes(), dlock.WithKeyPrefix("app:locks:"), dlock.WithNodeTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.TryLock(t.Context(), "job", "v1", dlock.WithTTL(time.Second))
	if err != nil {
		t.Fatalf("TryLock: %v", err)
	}
	if got, want := l.Key(), "job"; got != want {
		t.Errorf("Key() = %q, want %q", got, want)
	}
	c.want(t, "app:locks:job", "v1", time.Second)
	c.want(t, "job", "", 0)
	for i, m := range c.servers {
		// c.want waited for every server to hold the key.
		if got, want := m.Keys(), []string{"app:locks:job"}; !slices.Equal(got, want) {
			t.Errorf("server %d keys = %q, want %q", i, got, want)
		}
	}

	// The same key without the prefix is another lock.
	plain, err := dlock.New(c.nodes(), dlock.WithNodeTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	l2, err := plain.TryLock(t.Context(), "job", "v2", dlock.WithTTL(time.Second))
	if err != nil {
		t.Fatalf("TryLock without prefix: %v", err)
	}
	c.want(t, "job", "v2", time.Second)

	if err := l.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	c.want(t, "app:locks:job", "", 0)
	c.want(t, "job", "v2", time.Second)
	if err := l2.Release(); err != nil {
		t.Fatalf("Release without prefix: %v", err)
	}
	c.want(t, "job", "", 0)
}

// A whole lock life over three miniredis servers: Lock, Refresh, Release.
func TestRedlock_miniredis_Lock_Refresh_Release(t *testing.T) {
	c := newMRCluster(t, 3)
	r, err := dlock.New(c.nodes(), dlock.WithNodeTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 5 * time.Second
	before := time.Now()
	l, err := r.Lock("res", "", dlock.WithTTL(ttl), dlock.WithRetryLimit(0))
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	after := time.Now()
	if got := len(l.Value()); got != 32 {
		t.Errorf("generated Value() = %q (%d chars), want 32 hex chars", l.Value(), got)
	}
	if _, err := hex.DecodeString(l.Value()); err != nil {
		t.Errorf("generated Value() = %q, not hex: %v", l.Value(), err)
	}
	c.want(t, "res", l.Value(), ttl)
	vu := l.ValidUntil()
	if drift := ttl/100 + 2*time.Millisecond; vu.After(after.Add(ttl-drift)) || vu.Before(before.Add(ttl-drift)) {
		t.Errorf("ValidUntil = %v, want within [%v, %v]", vu, before.Add(ttl-drift), after.Add(ttl-drift))
	}

	// Another holder is refused while the lock is held.
	if l2, err := r.TryLock(t.Context(), "res", "intruder", dlock.WithTTL(ttl)); !errors.Is(err, dlock.ErrNotAcquired) {
		t.Fatalf("TryLock of a held key = %v, %v; want ErrNotAcquired", l2, err)
	}
	c.want(t, "res", l.Value(), ttl)

	c.fastForward(2 * time.Second)
	c.want(t, "res", l.Value(), ttl-2*time.Second)
	time.Sleep(5 * time.Millisecond) // so that the refresh starts measurably later
	if err := l.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	c.want(t, "res", l.Value(), ttl)
	if got := l.ValidUntil(); !got.After(vu) {
		t.Errorf("ValidUntil after Refresh = %v, want after %v", got, vu)
	}
	select {
	case <-l.Lost():
		t.Fatal("Lost() closed while held")
	default:
	}

	if err := l.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	c.want(t, "res", "", 0)
	select {
	case <-l.Lost():
	default:
		t.Error("Lost() not closed after Release")
	}
	if err := l.Release(); err != nil && !errors.Is(err, dlock.ErrLockLost) {
		t.Errorf("second Release = %v, want nil or ErrLockLost", err)
	}
	if err := l.Refresh(t.Context()); !errors.Is(err, dlock.ErrLockLost) {
		t.Errorf("Refresh after Release = %v, want ErrLockLost", err)
	}
	c.want(t, "res", "", 0)

	// The key is free again.
	l3, err := r.TryLock(t.Context(), "res", "next", dlock.WithTTL(ttl))
	if err != nil {
		t.Fatalf("TryLock after Release: %v", err)
	}
	c.want(t, "res", "next", ttl)
	if err := l3.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

// A refresh after the key expired on a majority of servers, and was taken
// by another holder, loses the lock and leaves the new holder's key alone.
func TestRedlock_miniredis_Refresh_after_expiry_loses_lock(t *testing.T) {
	c := newMRCluster(t, 3)
	r, err := dlock.New(c.nodes(), dlock.WithNodeTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.TryLock(t.Context(), "res", "old", dlock.WithTTL(10*time.Second))
	if err != nil {
		t.Fatalf("TryLock: %v", err)
	}
	c.want(t, "res", "old", 10*time.Second) // TryLock returned once 2 of 3 granted
	c.fastForward(10 * time.Second)
	c.want(t, "res", "", 0)
	l2, err := r.TryLock(t.Context(), "res", "new", dlock.WithTTL(10*time.Second))
	if err != nil {
		t.Fatalf("TryLock after expiry: %v", err)
	}
	c.want(t, "res", "new", 10*time.Second)
	if err := l.Refresh(t.Context()); !errors.Is(err, dlock.ErrLockLost) {
		t.Fatalf("Refresh of the expired lock = %v, want ErrLockLost", err)
	}
	select {
	case <-l.Lost():
	default:
		t.Error("Lost() not closed after a failed Refresh")
	}
	if err := l.Release(); !errors.Is(err, dlock.ErrLockLost) {
		t.Errorf("Release of the lost lock = %v, want ErrLockLost", err)
	}
	c.want(t, "res", "new", 10*time.Second)
	if err := l2.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	c.want(t, "res", "", 0)
}

func TestRedlock_miniredis_node_errors_are_NodeErrors(t *testing.T) {
	c := newMRCluster(t, 3)
	// Retries by go-redis would only slow the test down; the node timeout
	// bounds the round anyway.
	for i, rc := range c.clients {
		c.clients[i] = redis.NewClient(&redis.Options{Addr: rc.Options().Addr, MaxRetries: -1})
		t.Cleanup(func() { c.clients[i].Close() })
	}
	r, err := dlock.New(c.nodes(), dlock.WithNodeTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}

	// One node down of three: the lock is still granted.
	c.servers[1].Close()
	l, err := r.TryLock(t.Context(), "res", "v1", dlock.WithTTL(10*time.Second))
	if err != nil {
		t.Fatalf("TryLock with 1 of 3 nodes down: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatalf("Release with 1 of 3 nodes down: %v", err)
	}

	// Two down: not acquired, and each failure is a *NodeError naming its node.
	c.servers[2].Close()
	l, err = r.TryLock(t.Context(), "res", "v1", dlock.WithTTL(10*time.Second))
	if !errors.Is(err, dlock.ErrNotAcquired) {
		t.Fatalf("TryLock with 2 of 3 nodes down = %v, %v; want ErrNotAcquired", l, err)
	}
	var ne *dlock.NodeError
	if !errors.As(err, &ne) {
		t.Fatalf("errors.As(%v, *NodeError) = false", err)
	}
	if ne.Err == nil || ne.Node < 1 || ne.Node > 2 {
		t.Errorf("NodeError = %+v, want Node 1 or 2 and a cause", ne)
	}
	var got []int
	for _, ne := range nodeErrors(err) {
		got = append(got, ne.Node)
		if !errors.Is(err, ne.Err) {
			t.Errorf("errors.Is(err, NodeError.Err) = false for %v", ne)
		}
	}
	slices.Sort(got)
	if want := []int{1, 2}; !slices.Equal(got, want) {
		t.Errorf("NodeError nodes = %v, want %v (err: %v)", got, want, err)
	}
	// The failed attempt is undone in the background.
	if !mrEventually(5*time.Second, func() bool { return !c.servers[0].Exists("res") }) {
		t.Error("key left on the reachable node after a failed TryLock")
	}
}

// mrEventually polls cond until it holds or timeout passes.
func mrEventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}
