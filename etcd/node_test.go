package etcd_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestNewNodeNilClient(t *testing.T) {
	if n := etcd.NewNode(nil); n != nil {
		t.Errorf("NewNode(nil) = %v, want nil", n)
	}
	if _, err := dlock.New([]dlock.Node{etcd.NewNode(nil)}); err == nil {
		t.Errorf("dlock.New over NewNode(nil): err = nil, want an error")
	}
}

func TestTTLGranularity(t *testing.T) {
	n := etcd.NewNode(&clientv3.Client{})
	if got, want := n.TTLGranularity(), time.Second; got != want {
		t.Errorf("TTLGranularity() = %v, want %v", got, want)
	}
}

// getKey reads one etcd key, nil when it is missing.
func getKey(t *testing.T, cli *clientv3.Client, key string) *clientv3.GetResponse {
	t.Helper()
	r, err := cli.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return r
}

// leaseOf returns the lease of the etcd key, failing when it is missing.
func leaseOf(t *testing.T, cli *clientv3.Client, key string) clientv3.LeaseID {
	t.Helper()
	r := getKey(t, cli, key)
	if len(r.Kvs) != 1 {
		t.Fatalf("etcd key %q missing", key)
	}
	return clientv3.LeaseID(r.Kvs[0].Lease)
}

// grantedTTL returns a lease's granted TTL in seconds, -1 when it is gone.
func grantedTTL(t *testing.T, cli *clientv3.Client, id clientv3.LeaseID) int64 {
	t.Helper()
	r, err := cli.TimeToLive(t.Context(), id)
	if err != nil {
		t.Fatalf("TimeToLive(%x): %v", id, err)
	}
	if r.TTL < 0 {
		return -1
	}
	return r.GrantedTTL
}

// TestLayout checks the etcd keys the package documentation describes: the
// lock on a lease, the counter without one, release deleting only the lock
// and revoking its lease.
func TestLayout(t *testing.T) {
	n, cli, p := newNode(t)
	ctx := t.Context()
	r, err := n.AcquireFenced(ctx, dlock.Request{Key: "k", Value: "v1", TTL: 5 * time.Second, Fencing: true})
	if err != nil || !r.OK || r.Counter != 1 {
		t.Fatalf("AcquireFenced of a new key = %+v, %v; want OK with Counter 1", r, err)
	}
	lock := getKey(t, cli, p+"lock/k")
	if len(lock.Kvs) != 1 || string(lock.Kvs[0].Value) != "v1" || lock.Kvs[0].Lease == 0 {
		t.Fatalf("etcd key %q = %v, want value v1 on a lease", p+"lock/k", lock.Kvs)
	}
	lease := clientv3.LeaseID(lock.Kvs[0].Lease)
	if got := grantedTTL(t, cli, lease); got != 5 {
		t.Errorf("lease granted TTL = %ds, want 5s", got)
	}
	fence := getKey(t, cli, p+"fence/k")
	if len(fence.Kvs) != 1 || fence.Kvs[0].Lease != 0 || string(fence.Kvs[0].Value) != "0" || fence.Kvs[0].Version != 1 {
		t.Fatalf("etcd key %q = %v, want base 0 at version 1 without a lease", p+"fence/k", fence.Kvs)
	}
	if ok, err := n.Release(ctx, "k", "v1"); !ok || err != nil {
		t.Fatalf("Release = %v, %v; want true", ok, err)
	}
	if r := getKey(t, cli, p+"lock/k"); len(r.Kvs) != 0 {
		t.Errorf("lock key still there after Release: %v", r.Kvs)
	}
	if got := grantedTTL(t, cli, lease); got != -1 {
		t.Errorf("lease after Release: granted TTL %d, want revoked", got)
	}
	if r := getKey(t, cli, p+"fence/k"); len(r.Kvs) != 1 {
		t.Errorf("counter key gone after Release")
	}
	// Plain Acquire touches no counter key.
	if ok, err := n.Acquire(ctx, "plain", "v", 5*time.Second); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v; want true", ok, err)
	}
	if r := getKey(t, cli, p+"fence/plain"); len(r.Kvs) != 0 {
		t.Errorf("plain Acquire wrote a counter key: %v", r.Kvs)
	}
	if ok, err := n.Release(ctx, "plain", "v"); !ok || err != nil {
		t.Fatalf("Release = %v, %v; want true", ok, err)
	}
}

// TestLeaseTTL checks that TTLs are rounded up to whole seconds, that an
// Extend with the same TTL keeps the key's lease alive, and that one with
// another TTL moves the key to a new lease and revokes the old one.
func TestLeaseTTL(t *testing.T) {
	n, cli, p := newNode(t)
	ctx := t.Context()
	for _, c := range []struct {
		ttl  time.Duration
		want int64 // seconds; the test server's minimum lease TTL is 1s
	}{
		{time.Nanosecond, 1},
		{time.Second, 1},
		{1500 * time.Millisecond, 2},
		{2*time.Second + time.Nanosecond, 3},
		{4 * time.Second, 4},
	} {
		k := "round/" + c.ttl.String()
		if ok, err := n.Acquire(ctx, k, "v", c.ttl); !ok || err != nil {
			t.Fatalf("Acquire(ttl %v) = %v, %v; want true", c.ttl, ok, err)
		}
		if got := grantedTTL(t, cli, leaseOf(t, cli, p+"lock/"+k)); got < c.want {
			t.Errorf("Acquire(ttl %v): lease of %ds, want at least %ds (rounded up, never down)", c.ttl, got, c.want)
		} else if got != c.want {
			t.Logf("Acquire(ttl %v): lease of %ds (the server's minimum)", c.ttl, got)
		}
		n.Release(ctx, k, "v")
	}

	if ok, err := n.Acquire(ctx, "k", "v", 5*time.Second); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v; want true", ok, err)
	}
	first := leaseOf(t, cli, p+"lock/k")
	if ok, err := n.Extend(ctx, "k", "v", 4500*time.Millisecond); !ok || err != nil {
		t.Fatalf("Extend with the same TTL in seconds = %v, %v; want true", ok, err)
	}
	if got := leaseOf(t, cli, p+"lock/k"); got != first {
		t.Errorf("Extend with the same TTL moved the key to lease %x, want it kept on %x", got, first)
	}
	if ok, err := n.Extend(ctx, "k", "v", 7*time.Second); !ok || err != nil {
		t.Fatalf("Extend with a longer TTL = %v, %v; want true", ok, err)
	}
	second := leaseOf(t, cli, p+"lock/k")
	if second == first {
		t.Fatalf("Extend with a longer TTL kept the key on its 5s lease")
	}
	if got := grantedTTL(t, cli, second); got != 7 {
		t.Errorf("new lease: granted TTL %ds, want 7s", got)
	}
	if got := grantedTTL(t, cli, first); got != -1 {
		t.Errorf("old lease after the move: granted TTL %ds, want revoked", got)
	}
	// Another value extends nothing and moves nothing.
	if ok, err := n.Extend(ctx, "k", "other", time.Second); ok || err != nil {
		t.Errorf("Extend by another value = %v, %v; want false", ok, err)
	}
	if got := leaseOf(t, cli, p+"lock/k"); got != second {
		t.Errorf("Extend by another value moved the key")
	}
	// A key without a lease (written by hand) holding the value gets one.
	if _, err := cli.Put(ctx, p+"lock/bare", "v"); err != nil {
		t.Fatal(err)
	}
	if ok, err := n.Extend(ctx, "bare", "v", 3*time.Second); !ok || err != nil {
		t.Fatalf("Extend of a key without a lease = %v, %v; want true", ok, err)
	}
	if got := grantedTTL(t, cli, leaseOf(t, cli, p+"lock/bare")); got != 3 {
		t.Errorf("Extend of a key without a lease: granted TTL %ds, want 3s", got)
	}
	n.Release(ctx, "k", "v")
	n.Release(ctx, "bare", "v")
}

// TestRefusalRevokesLease checks that a refused Acquire leaves no lease
// behind: a refusal revokes the lease it was granted.
func TestRefusalRevokesLease(t *testing.T) {
	n, cli, _ := newNode(t)
	ctx := t.Context()
	if ok, err := n.Acquire(ctx, "k", "v1", 30*time.Second); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v; want true", ok, err)
	}
	defer n.Release(ctx, "k", "v1")
	// Leases granted with a TTL no other test uses, counted before and
	// after the refusals.
	const ttl = 97 * time.Second
	count := func() int {
		t.Helper()
		ls, err := cli.Leases(ctx)
		if err != nil {
			t.Fatalf("Leases: %v", err)
		}
		c := 0
		for _, l := range ls.Leases {
			if grantedTTL(t, cli, l.ID) == int64(ttl/time.Second) {
				c++
			}
		}
		return c
	}
	before := count()
	for range 3 {
		if ok, err := n.Acquire(ctx, "k", "v2", ttl); ok || err != nil {
			t.Fatalf("Acquire of a held key = %v, %v; want false", ok, err)
		}
		if r, err := n.AcquireFenced(ctx, dlock.Request{Key: "k", Value: "v2", TTL: ttl, Fencing: true}); r.OK || err != nil {
			t.Fatalf("AcquireFenced of a held key = %+v, %v; want refused", r, err)
		}
	}
	if after := count(); after != before {
		t.Errorf("leases of %v: %d before six refusals, %d after; want none left behind", ttl, before, after)
	}
}

// TestCounterBase checks the counter against the counter key's base and
// version, through Fence and a grant after it.
func TestCounterBase(t *testing.T) {
	n, cli, p := newNode(t)
	ctx := t.Context()
	grant := func(v string) uint64 {
		t.Helper()
		r, err := n.AcquireFenced(ctx, dlock.Request{Key: "k", Value: v, TTL: 5 * time.Second, Fencing: true})
		if err != nil || !r.OK {
			t.Fatalf("AcquireFenced = %+v, %v; want OK", r, err)
		}
		return r.Counter
	}
	for i := uint64(1); i <= 3; i++ {
		if c := grant("v"); c != i {
			t.Fatalf("grant %d: Counter = %d, want %d", i, c, i)
		}
		n.Release(ctx, "k", "v")
	}
	grant("holder")
	big := uint64(math.MaxInt64 - 10)
	if r, err := n.Fence(ctx, dlock.Request{Key: "k", Value: "holder", Token: big}); err != nil || !r.OK || r.Counter != big {
		t.Fatalf("Fence(%d) = %+v, %v; want OK at that counter", big, r, err)
	}
	kv := getKey(t, cli, p+"fence/k").Kvs[0]
	if got, want := string(kv.Value), "9223372036854775792"; got != want || kv.Version != 5 {
		t.Errorf("counter key after Fence: base %s version %d, want base %s version 5", got, kv.Version, want)
	}
	n.Release(ctx, "k", "holder")
	if c := grant("next"); c != big+1 {
		t.Errorf("grant after Fence(%d): Counter = %d, want %d", big, c, big+1)
	}
	// Tokens past the largest int64 are refused with an error.
	for _, call := range []func() (dlock.Reply, error){
		func() (dlock.Reply, error) {
			return n.Fence(ctx, dlock.Request{Key: "k", Value: "next", Token: math.MaxInt64 + 1})
		},
		func() (dlock.Reply, error) {
			return n.ExtendFenced(ctx, dlock.Request{Key: "k", Value: "next", TTL: time.Second, Token: math.MaxUint64})
		},
	} {
		if r, err := call(); err == nil || r.OK {
			t.Errorf("token above the largest int64: %+v, %v; want an error", r, err)
		}
	}
	n.Release(ctx, "k", "next")
}

// TestMalformedCounter checks that a counter key that does not hold a
// base is an error, and that a fenced grant that read it leaves no key held.
func TestMalformedCounter(t *testing.T) {
	n, cli, p := newNode(t)
	ctx := t.Context()
	if _, err := cli.Put(ctx, p+"fence/k", "not a number"); err != nil {
		t.Fatal(err)
	}
	r, err := n.AcquireFenced(ctx, dlock.Request{Key: "k", Value: "v", TTL: 5 * time.Second, Fencing: true})
	if err == nil || r.OK {
		t.Fatalf("AcquireFenced over a malformed counter = %+v, %v; want an error", r, err)
	}
	if !strings.Contains(err.Error(), "malformed fencing counter") {
		t.Errorf("error %q does not name the malformed counter", err)
	}
	if r := getKey(t, cli, p+"lock/k"); len(r.Kvs) != 0 {
		t.Errorf("lock key left held after the error: %v", r.Kvs)
	}
	if _, err := n.Inspect(ctx, "k"); err == nil {
		t.Errorf("Inspect over a malformed counter: err = nil, want an error")
	}
}

// TestExtendAfterLeaseRevoked checks that an Extend whose key's lease was
// revoked (as when it expires) re-creates the key, on a lease of its own,
// and that it refuses when another value took the key in between.
func TestExtendAfterLeaseRevoked(t *testing.T) {
	n, cli, p := newNode(t)
	ctx := t.Context()
	if ok, err := n.Acquire(ctx, "k", "v", 10*time.Second); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v; want true", ok, err)
	}
	old := leaseOf(t, cli, p+"lock/k")
	if _, err := cli.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	if ok, err := n.Extend(ctx, "k", "v", 10*time.Second); !ok || err != nil {
		t.Fatalf("Extend after the lease was revoked = %v, %v; want true (re-created)", ok, err)
	}
	if got := leaseOf(t, cli, p+"lock/k"); got == old || grantedTTL(t, cli, got) != 10 {
		t.Errorf("re-created key on lease %x (old %x), want a new 10s lease", got, old)
	}
	if _, err := cli.Revoke(ctx, leaseOf(t, cli, p+"lock/k")); err != nil {
		t.Fatal(err)
	}
	if ok, err := n.Acquire(ctx, "k", "other", 10*time.Second); !ok || err != nil {
		t.Fatalf("Acquire by another value after expiry = %v, %v; want true", ok, err)
	}
	if ok, err := n.Extend(ctx, "k", "v", 10*time.Second); ok || err != nil {
		t.Errorf("Extend of a key another value took = %v, %v; want false", ok, err)
	}
	n.Release(ctx, "k", "other")
}

// TestInspectTTL checks the TTL Inspect reports against the lease.
func TestInspectTTL(t *testing.T) {
	n, _, _ := newNode(t)
	ctx := t.Context()
	if ok, err := n.Acquire(ctx, "k", "v", 3*time.Second); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v; want true", ok, err)
	}
	s, err := n.Inspect(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Held || s.Value != "v" || s.TTL < time.Second || s.TTL > 3*time.Second || s.HasCounter {
		t.Errorf("Inspect = %+v, want held by v with a TTL in [1s, 3s] and no counter", s)
	}
	n.Release(ctx, "k", "v")
}

// TestCallsEndWithContext checks that calls to an unreachable server end
// with the context, wrapping its error.
func TestCallsEndWithContext(t *testing.T) {
	cli := newClient(t, []string{"http://127.0.0.1:1"}) // nothing listens on port 1
	n := etcd.NewNode(cli)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := n.Acquire(ctx, "k", "v", time.Second)
	if err == nil || ctx.Err() == nil {
		t.Fatalf("Acquire from an unreachable server: err %v, ctx err %v; want both", err, ctx.Err())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Acquire from an unreachable server took %v, want about 200ms", d)
	}
}
