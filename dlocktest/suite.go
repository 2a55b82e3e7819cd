package dlocktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charconstpointer/dlock"
)

// Timing of the suite. Real stores judge expiry by their own clocks, so the
// suite sleeps in real time; TTLs are short and the subtests run in
// parallel, so that it takes a few seconds even at a granularity of 1s.
const (
	// shortTTL is the TTL of keys that the suite watches expire, unless the
	// node's TTL granularity is coarser.
	shortTTL = 200 * time.Millisecond
	// holdTTL is the TTL of keys that must not expire during a subtest.
	holdTTL = time.Minute
	// expirySlack is how late, beyond its TTL and the node's granularity, a
	// key may still be held: the time a store takes to notice an expiry
	// (etcd revokes leases on a timer), plus scheduling noise.
	expirySlack = 250 * time.Millisecond
	// prompt bounds a call made with a context that is already done.
	prompt = 2 * time.Second
	// contenders is the number of goroutines that race for one key.
	contenders = 32
	// foreverGuard is a restart guard that no store's marker has outlived:
	// 100 years, longer than since the Unix epoch (a provisioned store may
	// date its marker there), and still exact in microseconds as a float64
	// (Lua's numbers).
	foreverGuard = 100 * 365 * 24 * time.Hour
)

// TestNode runs the conformance suite for a dlock.Node as subtests of t,
// grouped under "conformance", and returns when they have all finished. It
// calls newNode once per subtest, with that subtest's t; newNode may return
// nodes over one shared store, and may register cleanups on t.
//
// The subtests run in parallel (t.Parallel) and share the store: each uses
// keys of its own, named after the subtest with a random suffix, and none
// assumes the store is empty or flushes it. They sleep in real time,
// because a real store judges expiry by its own clock: keys watched
// expiring have a TTL of 200ms, or of the node's granularity when it
// implements dlock.TTLGranularity and that is coarser; other keys are held
// for a minute and released at the end. Keys are valid UTF-8 without NUL.
//
// Every Node is checked for:
//   - acquire, extend, release: compare on value; Acquire of a held key is
//     refused, also for its own value; a foreign Extend or Release changes
//     nothing; keys that share a prefix are independent.
//   - extend_missing_key: Extend of a key never set, released, or expired
//     sets it; of a key another value took since, it is refused.
//   - expiry: a key set with TTL d by Acquire or Extend is held until d has
//     passed (so an uneven TTL is rounded up, never down) and free by d plus
//     the granularity plus 250ms; Extend sets the TTL from now, shorter or
//     longer.
//   - concurrent_acquire: of 32 goroutines racing for a key, exactly one
//     wins.
//   - context_done: every method given a context already canceled or past
//     its deadline returns, within 2s, an error wrapping ctx.Err().
//   - odd_keys: unicode, spaces, hash-tag braces, newlines, quotes, Lua and
//     SQL syntax, 1 KiB.
//
// A node that implements dlock.Fencer is checked for counters that only
// grow by one per fenced grant, are left alone by refusals and by calls
// without fencing, and survive release and expiry; Fence raising only
// while the value holds the key and never lowering; ExtendFenced's
// re-creation raising the counter to its token, refused below the counter;
// and the restart guard as far as it can be seen without restarting the
// store: a guard of 100 years refuses grants and re-creations but lets the
// holder extend, fence and release; a request without a guard is not
// refused; a guard of 100ms has passed 300ms after the marker was written.
// A request with a guard makes a store without a restart marker write one,
// after which new counters start at its floor, so the suite assumes
// nothing about counters' first values. A Fencer that grants a request
// with a guard of 100 years is taken as a store that cannot lose its data,
// and the guard subtests skip with a note. What happens when a store does
// lose its data (the floor, the wait after a restart) needs a restart and
// is left to each backend's own tests.
//
// A node that implements dlock.Inspector is checked for reporting the
// value, TTL and counter it holds.
//
// A Fencer that implements dlock.Queue is checked for keeping waiters: a
// waiter refused while the key is held keeps a newcomer that has waited
// less from the key once it is free, while one that has waited as long (within
// the slack) or longer is granted; a waiter granted the key, or gone by
// Leave, no longer keeps anyone from it; Leave of a waiter the node does
// not know is not an error.
func TestNode(t *testing.T, newNode func(t *testing.T) dlock.Node) {
	t.Helper()
	if newNode == nil {
		t.Fatal("dlocktest.TestNode: newNode is nil")
	}
	t.Run("conformance", func(t *testing.T) {
		for _, c := range suite {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				c.run(t, newEnv(t, newNode))
			})
		}
	})
}

// suite lists the subtests of TestNode. The ones that wait for keys to
// expire come first, so that they take the first of the -parallel slots.
var suite = []struct {
	name string
	run  func(t *testing.T, e *env)
}{
	{"expiry", testExpiry},
	{"extend_missing_key", testExtendMissing},
	{"guard_passes", testGuardPasses},
	{"fencing_survives_release_and_expiry", testFencingSurvives},
	{"acquire", testAcquire},
	{"extend", testExtend},
	{"release", testRelease},
	{"concurrent_acquire", testConcurrentAcquire},
	{"context_done", testContextDone},
	{"odd_keys", testOddKeys},
	{"inspect", testInspect},
	{"fencing_acquire", testFencingAcquire},
	{"fencing_fence", testFence},
	{"fencing_extend_recreates", testExtendFencedRecreate},
	{"fencing_concurrent_acquire", testFencingConcurrent},
	{"guard_refuses_grants", testGuardRefuses},
	{"queue", testQueue},
}

// env is one subtest's node and the helpers that call it, failing the
// subtest on an error.
type env struct {
	t    *testing.T
	ctx  context.Context
	node dlock.Node
	gran time.Duration // the node's TTL granularity, 0 when it has none
	unit time.Duration // TTL of keys watched expiring: max(shortTTL, gran)
}

func newEnv(t *testing.T, newNode func(t *testing.T) dlock.Node) *env {
	t.Helper()
	n := newNode(t)
	if n == nil {
		t.Fatal("newNode returned nil")
	}
	e := &env{t: t, ctx: t.Context(), node: n}
	if g, ok := n.(dlock.TTLGranularity); ok {
		e.gran = max(g.TTLGranularity(), 0)
	}
	e.unit = max(shortTTL, e.gran)
	return e
}

// key returns a key of the subtest's own: its name, the given part and a
// random suffix, so that subtests and runs sharing a store never meet.
func (e *env) key(part string) string {
	return "dlocktest/" + e.t.Name() + "/" + part + "/" + random()
}

// value returns a fresh holder value.
func value(who string) string { return who + "-" + random() }

// random returns 16 random hex digits.
func random() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

// show abbreviates a key for messages.
func show(key string) string {
	if len(key) > 80 {
		return fmt.Sprintf("%q...(%d bytes)", key[:60], len(key))
	}
	return fmt.Sprintf("%q", key)
}

func (e *env) acquire(key, value string, ttl time.Duration) bool {
	e.t.Helper()
	ok, err := e.node.Acquire(e.ctx, key, value, ttl)
	if err != nil {
		e.t.Fatalf("Acquire(%s, %q, %v): %v", show(key), value, ttl, err)
	}
	return ok
}

func (e *env) extend(key, value string, ttl time.Duration) bool {
	e.t.Helper()
	ok, err := e.node.Extend(e.ctx, key, value, ttl)
	if err != nil {
		e.t.Fatalf("Extend(%s, %q, %v): %v", show(key), value, ttl, err)
	}
	return ok
}

func (e *env) release(key, value string) bool {
	e.t.Helper()
	ok, err := e.node.Release(e.ctx, key, value)
	if err != nil {
		e.t.Fatalf("Release(%s, %q): %v", show(key), value, err)
	}
	return ok
}

// mustAcquire acquires key for value, failing the subtest when refused, and
// releases it when the subtest ends (where value still holds it).
func (e *env) mustAcquire(key, value string, ttl time.Duration) {
	e.t.Helper()
	if !e.acquire(key, value, ttl) {
		e.t.Fatalf("Acquire(%s, %q, %v) on a free key = false, want true", show(key), value, ttl)
	}
	e.cleanupRelease(key, value)
}

// cleanupRelease releases key for value when the subtest ends, so that a
// shared store is not left holding keys for long. Errors are ignored.
func (e *env) cleanupRelease(key, value string) {
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = e.node.Release(ctx, key, value)
	})
}

// wantHeldBy checks that key is held by holder: another value cannot
// acquire or extend it, and (when the node is an Inspector) it reports it.
func (e *env) wantHeldBy(key, holder string) {
	e.t.Helper()
	other := value("intruder")
	if e.acquire(key, other, holdTTL) {
		e.release(key, other)
		e.t.Errorf("Acquire(%s) by another value = true, want false: the key should be held by %q", show(key), holder)
		return
	}
	if e.extend(key, other, holdTTL) {
		e.release(key, other)
		e.t.Errorf("Extend(%s) by another value = true, want false: the key should be held by %q", show(key), holder)
		return
	}
	if in, ok := e.node.(dlock.Inspector); ok {
		s, err := in.Inspect(e.ctx, key)
		if err != nil {
			e.t.Fatalf("Inspect(%s): %v", show(key), err)
		}
		if !s.Held || s.Value != holder {
			e.t.Errorf("Inspect(%s) = held %v, value %q; want held by %q", show(key), s.Held, s.Value, holder)
		}
	}
}

// wantFree checks that key is not set: another value acquires it (and
// releases it again).
func (e *env) wantFree(key string) {
	e.t.Helper()
	other := value("probe")
	if !e.acquire(key, other, holdTTL) {
		e.t.Errorf("Acquire(%s) = false, want true: the key should be free", show(key))
		return
	}
	if !e.release(key, other) {
		e.t.Errorf("Release(%s) of a key just acquired = false, want true", show(key))
	}
}

// fencer returns the node as a dlock.Fencer, or skips the subtest.
func (e *env) fencer() dlock.Fencer {
	e.t.Helper()
	f, ok := e.node.(dlock.Fencer)
	if !ok {
		e.t.Skipf("%T does not implement dlock.Fencer", e.node)
	}
	return f
}

func (e *env) acquireFenced(req dlock.Request) dlock.Reply {
	e.t.Helper()
	r, err := e.fencer().AcquireFenced(e.ctx, req)
	if err != nil {
		e.t.Fatalf("AcquireFenced(%+v): %v", req, err)
	}
	return r
}

func (e *env) extendFenced(req dlock.Request) dlock.Reply {
	e.t.Helper()
	r, err := e.fencer().ExtendFenced(e.ctx, req)
	if err != nil {
		e.t.Fatalf("ExtendFenced(%+v): %v", req, err)
	}
	return r
}

func (e *env) fence(req dlock.Request) dlock.Reply {
	e.t.Helper()
	r, err := e.fencer().Fence(e.ctx, req)
	if err != nil {
		e.t.Fatalf("Fence(%+v): %v", req, err)
	}
	return r
}

// grantFenced acquires key for value with fencing, failing the subtest when
// refused, and returns the counter. The key is released at the end.
func (e *env) grantFenced(key, value string, ttl time.Duration) uint64 {
	e.t.Helper()
	r := e.acquireFenced(dlock.Request{Key: key, Value: value, TTL: ttl, Fencing: true})
	if !r.OK || r.Guarded {
		e.t.Fatalf("AcquireFenced(%s, %q, fencing) on a free key = %+v, want OK", show(key), value, r)
	}
	if r.Counter == 0 {
		e.t.Errorf("AcquireFenced(%s, fencing) granted with Counter 0, want ≥ 1", show(key))
	}
	e.cleanupRelease(key, value)
	return r.Counter
}

// wantReply compares a reply with the one wanted.
func (e *env) wantReply(call string, got, want dlock.Reply) {
	e.t.Helper()
	if got != want {
		e.t.Errorf("%s = %+v, want %+v", call, got, want)
	}
}

func testAcquire(t *testing.T, e *env) {
	k, v1, v2 := e.key("k"), value("v1"), value("v2")
	e.mustAcquire(k, v1, holdTTL)
	if e.acquire(k, v2, holdTTL) {
		t.Errorf("Acquire of a held key by another value = true, want false")
	}
	if e.acquire(k, v1, holdTTL) {
		t.Errorf("Acquire of a held key by its own value = true, want false (Acquire sets only a key that is not set)")
	}
	e.wantHeldBy(k, v1)

	// Keys that share a prefix are independent.
	for _, other := range []string{k + "/", k[:len(k)-1], k + "x"} {
		v := value("v3")
		if !e.acquire(other, v, holdTTL) {
			t.Errorf("Acquire(%s) while %s is held = false, want true: keys are independent", show(other), show(k))
			continue
		}
		if !e.release(other, v) {
			t.Errorf("Release(%s) = false, want true", show(other))
		}
	}
	e.wantHeldBy(k, v1)
}

func testExtend(t *testing.T, e *env) {
	k, v1, v2 := e.key("k"), value("v1"), value("v2")
	e.mustAcquire(k, v1, holdTTL)
	if !e.extend(k, v1, holdTTL) {
		t.Errorf("Extend of a key held by its value = false, want true")
	}
	if e.extend(k, v2, holdTTL) {
		t.Errorf("Extend of a key held by another value = true, want false")
	}
	e.wantHeldBy(k, v1)
	if !e.release(k, v1) {
		t.Errorf("Release by the holder after a refused foreign Extend = false, want true")
	}
}

func testExtendMissing(t *testing.T, e *env) {
	t.Run("never_set", func(t *testing.T) {
		e := e.sub(t)
		k, v := e.key("k"), value("v")
		if !e.extend(k, v, holdTTL) {
			t.Fatalf("Extend of a key that is not set = false, want true (it sets the key, as Acquire would)")
		}
		e.cleanupRelease(k, v)
		e.wantHeldBy(k, v)
	})
	t.Run("released", func(t *testing.T) {
		e := e.sub(t)
		k, v := e.key("k"), value("v")
		e.mustAcquire(k, v, holdTTL)
		if !e.release(k, v) {
			t.Fatalf("Release by the holder = false, want true")
		}
		if !e.extend(k, v, holdTTL) {
			t.Fatalf("Extend of a released key = false, want true (it sets the key again)")
		}
		e.wantHeldBy(k, v)
	})
	t.Run("expired", func(t *testing.T) {
		// A store may keep an expired key until it is looked at (Redis) or
		// swept (a SQL row): Extend must take it for not set.
		e := e.sub(t)
		k, v := e.key("k"), value("v")
		e.mustAcquire(k, v, e.unit)
		time.Sleep(e.unit + e.gran + expirySlack)
		if !e.extend(k, v, holdTTL) {
			t.Fatalf("Extend of an expired key = false, want true (it sets the key again)")
		}
		e.wantHeldBy(k, v)
	})
	t.Run("taken_by_another", func(t *testing.T) {
		e := e.sub(t)
		k, v1, v2 := e.key("k"), value("v1"), value("v2")
		e.mustAcquire(k, v1, holdTTL)
		if !e.release(k, v1) {
			t.Fatalf("Release by the holder = false, want true")
		}
		e.mustAcquire(k, v2, holdTTL)
		if e.extend(k, v1, holdTTL) {
			t.Errorf("Extend by a former holder of a key now held by another value = true, want false")
		}
		e.wantHeldBy(k, v2)
	})
}

// sub returns an env for subtest t over the same node.
func (e *env) sub(t *testing.T) *env {
	s := *e
	s.t, s.ctx = t, t.Context()
	return &s
}

func testRelease(t *testing.T, e *env) {
	k, v1, v2 := e.key("k"), value("v1"), value("v2")
	if e.release(k, v1) {
		t.Errorf("Release of a key that is not set = true, want false")
	}
	e.mustAcquire(k, v1, holdTTL)
	if e.release(k, v2) {
		t.Errorf("Release of a key held by another value = true, want false")
	}
	e.wantHeldBy(k, v1)
	if !e.release(k, v1) {
		t.Errorf("Release by the holder = false, want true")
	}
	if e.release(k, v1) {
		t.Errorf("second Release by the holder = true, want false")
	}
	e.wantFree(k)
}

// expiryCase sets key to value with ttl and returns the instant just before
// the call that set the ttl, and the instant just after it.
type expiryCase struct {
	name string
	ttl  func(unit, granularity time.Duration) time.Duration
	set  func(e *env, key, value string, ttl time.Duration) (before, after time.Time)
}

var expiryCases = []expiryCase{{
	name: "acquire",
	ttl:  func(u, _ time.Duration) time.Duration { return u },
	set: func(e *env, key, value string, ttl time.Duration) (time.Time, time.Time) {
		before := time.Now()
		e.mustAcquire(key, value, ttl)
		return before, time.Now()
	},
}, {
	// A TTL just short of a whole number of granules (and of 100ms): rounded
	// down, the key would expire a granule (or up to 100ms) early.
	name: "acquire_uneven_ttl",
	ttl:  func(u, g time.Duration) time.Duration { return u + u/2 + g/2 - 1 },
	set: func(e *env, key, value string, ttl time.Duration) (time.Time, time.Time) {
		before := time.Now()
		e.mustAcquire(key, value, ttl)
		return before, time.Now()
	},
}, {
	name: "extend_creates",
	ttl:  func(u, _ time.Duration) time.Duration { return u },
	set: func(e *env, key, value string, ttl time.Duration) (time.Time, time.Time) {
		before := time.Now()
		if !e.extend(key, value, ttl) {
			e.t.Fatalf("Extend of a key that is not set = false, want true")
		}
		e.cleanupRelease(key, value)
		return before, time.Now()
	},
}, {
	// Extend sets the TTL from now, also when that is shorter.
	name: "extend_shortens",
	ttl:  func(u, _ time.Duration) time.Duration { return u },
	set: func(e *env, key, value string, ttl time.Duration) (time.Time, time.Time) {
		e.mustAcquire(key, value, holdTTL)
		before := time.Now()
		if !e.extend(key, value, ttl) {
			e.t.Fatalf("Extend by the holder = false, want true")
		}
		return before, time.Now()
	},
}, {
	// Extend halfway through the TTL keeps the key past the first expiry.
	name: "extend_prolongs",
	ttl:  func(u, _ time.Duration) time.Duration { return u },
	set: func(e *env, key, value string, ttl time.Duration) (time.Time, time.Time) {
		e.mustAcquire(key, value, ttl)
		time.Sleep(ttl / 2)
		before := time.Now()
		if !e.extend(key, value, ttl) {
			e.t.Fatalf("Extend by the holder halfway through the TTL = false, want true")
		}
		return before, time.Now()
	},
}}

// testExpiry runs its cases at once, each in a subtest started from a
// goroutine of its own (which testing allows) rather than with t.Parallel:
// they mostly sleep, and t.Parallel would queue them behind -parallel
// (GOMAXPROCS by default) slots.
func testExpiry(t *testing.T, e *env) {
	var wg sync.WaitGroup
	for _, c := range expiryCases {
		wg.Go(func() {
			t.Run(c.name, func(t *testing.T) {
				e := e.sub(t)
				k, v := e.key("k"), value("v")
				ttl := c.ttl(e.unit, e.gran)
				before, after := c.set(e, k, v, ttl)
				if !e.heldUntil(k, before, ttl) {
					return
				}
				e.goneBy(k, after.Add(ttl+e.gran+expirySlack), ttl)
			})
		})
	}
	wg.Wait()
}

// heldUntil checks that key, set with ttl by a call that started at before,
// stays held until before+ttl: probes by another value, every eighth of the
// TTL and just before its end, are refused. It reports false when a probe
// got the key.
func (e *env) heldUntil(key string, before time.Time, ttl time.Duration) bool {
	e.t.Helper()
	end := before.Add(ttl)
	margin := min(ttl/10, 20*time.Millisecond)
	for i := range 9 {
		at := min(ttl*time.Duration(i)/8, ttl-margin)
		time.Sleep(time.Until(before.Add(at)))
		probe := value("probe")
		ok := e.acquire(key, probe, ttl)
		now := time.Now()
		if !ok {
			continue
		}
		e.release(key, probe)
		if now.Before(end) {
			e.t.Errorf("key %s set with TTL %v was free after %v: it expired early (the TTL must be rounded up, never down)",
				show(key), ttl, now.Sub(before).Round(time.Millisecond))
		} else {
			e.t.Logf("probe at %v came too late to tell (after the TTL %v); the machine is slow", now.Sub(before), ttl)
		}
		return false
	}
	return true
}

// goneBy checks that key, set with ttl, is free by deadline: another value
// acquires it.
func (e *env) goneBy(key string, deadline time.Time, ttl time.Duration) {
	e.t.Helper()
	poll := min(max(ttl/20, 5*time.Millisecond), 50*time.Millisecond)
	for {
		probe := value("probe")
		if e.acquire(key, probe, holdTTL) {
			e.release(key, probe)
			return
		}
		if time.Now().After(deadline) {
			e.t.Errorf("key %s set with TTL %v still held at the deadline (TTL + granularity %v + slack %v)",
				show(key), ttl, e.gran, expirySlack)
			return
		}
		time.Sleep(poll)
	}
}

// race runs try from contenders goroutines at once and returns their
// results, in order.
func race[R any](try func(i int) (R, error)) ([]R, []error) {
	results := make([]R, contenders)
	errs := make([]error, contenders)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range contenders {
		wg.Go(func() {
			<-start
			results[i], errs[i] = try(i)
		})
	}
	close(start)
	wg.Wait()
	return results, errs
}

func testConcurrentAcquire(t *testing.T, e *env) {
	for round := range 3 {
		k := e.key(fmt.Sprint("round", round))
		values := make([]string, contenders)
		for i := range values {
			values[i] = value(fmt.Sprint("g", i))
		}
		oks, errs := race(func(i int) (bool, error) {
			return e.node.Acquire(e.ctx, k, values[i], holdTTL)
		})
		winners := 0
		for i, ok := range oks {
			if errs[i] != nil {
				t.Errorf("round %d: goroutine %d: Acquire: %v", round, i, errs[i])
			}
			if ok {
				winners++
				e.cleanupRelease(k, values[i])
				e.wantHeldBy(k, values[i])
			}
		}
		if winners != 1 {
			t.Errorf("round %d: %d goroutines racing for one key: %d granted, want exactly 1", round, contenders, winners)
		}
	}
}

func testFencingConcurrent(t *testing.T, e *env) {
	e.fencer()
	k, first := e.key("k"), value("first")
	c := e.grantFenced(k, first, holdTTL)
	if !e.release(k, first) {
		t.Fatalf("Release by the holder = false, want true")
	}
	values := make([]string, contenders)
	for i := range values {
		values[i] = value(fmt.Sprint("g", i))
	}
	replies, errs := race(func(i int) (dlock.Reply, error) {
		return e.fencer().AcquireFenced(e.ctx, dlock.Request{Key: k, Value: values[i], TTL: holdTTL, Fencing: true})
	})
	winners := 0
	for i, r := range replies {
		if errs[i] != nil {
			t.Errorf("goroutine %d: AcquireFenced: %v", i, errs[i])
			continue
		}
		switch {
		case r.OK:
			winners++
			e.cleanupRelease(k, values[i])
			if r.Counter != c+1 {
				t.Errorf("winner's Counter = %d, want %d (one more than before)", r.Counter, c+1)
			}
		case r.Counter != c && r.Counter != c+1:
			t.Errorf("goroutine %d: refused with Counter %d, want %d or %d (a refusal changes nothing)", i, r.Counter, c, c+1)
		}
	}
	if winners != 1 {
		t.Errorf("%d goroutines racing for one key with fencing: %d granted, want exactly 1", contenders, winners)
	}
}

// nodeCall is one call of a Node or capability method, for the context
// subtest; it reports whether the node implements the method.
type nodeCall struct {
	name string
	call func(ctx context.Context, n dlock.Node, key, value string) (bool, error)
}

var nodeCalls = []nodeCall{
	{"Acquire", func(ctx context.Context, n dlock.Node, k, v string) (bool, error) {
		_, err := n.Acquire(ctx, k, v, holdTTL)
		return true, err
	}},
	{"Extend", func(ctx context.Context, n dlock.Node, k, v string) (bool, error) {
		_, err := n.Extend(ctx, k, v, holdTTL)
		return true, err
	}},
	{"Release", func(ctx context.Context, n dlock.Node, k, v string) (bool, error) {
		_, err := n.Release(ctx, k, v)
		return true, err
	}},
	{"AcquireFenced", func(ctx context.Context, n dlock.Node, k, v string) (bool, error) {
		f, ok := n.(dlock.Fencer)
		if !ok {
			return false, nil
		}
		_, err := f.AcquireFenced(ctx, dlock.Request{Key: k, Value: v, TTL: holdTTL, Fencing: true})
		return true, err
	}},
	{"ExtendFenced", func(ctx context.Context, n dlock.Node, k, v string) (bool, error) {
		f, ok := n.(dlock.Fencer)
		if !ok {
			return false, nil
		}
		_, err := f.ExtendFenced(ctx, dlock.Request{Key: k, Value: v, TTL: holdTTL, Token: 1})
		return true, err
	}},
	{"Fence", func(ctx context.Context, n dlock.Node, k, v string) (bool, error) {
		f, ok := n.(dlock.Fencer)
		if !ok {
			return false, nil
		}
		_, err := f.Fence(ctx, dlock.Request{Key: k, Value: v, Token: 1})
		return true, err
	}},
	{"Leave", func(ctx context.Context, n dlock.Node, k, _ string) (bool, error) {
		q, ok := n.(dlock.Queue)
		if !ok {
			return false, nil
		}
		return true, q.Leave(ctx, dlock.Request{Key: k, Waiter: "w-" + random()})
	}},
	{"Inspect", func(ctx context.Context, n dlock.Node, k, _ string) (bool, error) {
		in, ok := n.(dlock.Inspector)
		if !ok {
			return false, nil
		}
		_, err := in.Inspect(ctx, k)
		return true, err
	}},
}

func testContextDone(t *testing.T, e *env) {
	kinds := []struct {
		name string
		ctx  func(t *testing.T) context.Context
		want error
	}{
		{"canceled", func(t *testing.T) context.Context {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			return ctx
		}, context.Canceled},
		{"deadline_exceeded", func(t *testing.T) context.Context {
			ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
			t.Cleanup(cancel)
			return ctx
		}, context.DeadlineExceeded},
	}
	for _, kind := range kinds {
		for _, c := range nodeCalls {
			t.Run(kind.name+"/"+c.name, func(t *testing.T) {
				e := e.sub(t)
				k, v := e.key("k"), value("v")
				ctx := kind.ctx(t)
				type result struct {
					implemented bool
					err         error
				}
				done := make(chan result, 1)
				start := time.Now()
				go func() {
					ok, err := c.call(ctx, e.node, k, v)
					done <- result{ok, err}
				}()
				select {
				case r := <-done:
					switch {
					case !r.implemented:
						t.Skipf("%T does not implement %s", e.node, c.name)
					case r.err == nil:
						t.Errorf("%s with a context already done: err = nil, want an error wrapping %v", c.name, kind.want)
						// The call may have taken effect: undo it.
						e.cleanupRelease(k, v)
					case !errors.Is(r.err, kind.want):
						t.Errorf("%s with a context already done: err = %v, want an error wrapping %v (errors.Is)", c.name, r.err, kind.want)
					}
				case <-time.After(prompt):
					t.Errorf("%s with a context already done did not return within %v", c.name, prompt)
					return
				}
				if d := time.Since(start); d > prompt/2 {
					t.Logf("%s with a context already done took %v", c.name, d)
				}
			})
		}
	}
}

// oddKeys are keys with bytes that a backend might quote, escape or parse
// wrongly: Redis Cluster hash tags, Lua and SQL quoting, line breaks.
var oddKeys = []struct{ name, key string }{
	{"unicode", "zamek-🔒-ключ-鍵-ü"},
	{"spaces", " a key  with spaces "},
	{"hash_tag", "{tag}key"},
	{"empty_braces", "{}"},
	{"unbalanced_braces", "}{ {"},
	{"newlines", "line\nbreak\r\n"},
	{"quotes", `tab	'single' "double" \backslash`},
	{"lua_and_sql", "%s%d.*[]^$; DROP TABLE locks; -- ]]"},
	{"long_1KiB", ""}, // filled to 1024 bytes by testOddKeys
}

func testOddKeys(t *testing.T, e *env) {
	for _, c := range oddKeys {
		t.Run(c.name, func(t *testing.T) {
			e := e.sub(t)
			k := c.key + "/" + e.key("k")
			if c.key == "" {
				k = e.key("k")
				k += "/" + strings.Repeat("x", max(1024-len(k)-1, 0))
			}
			v1, v2 := value("v1"), value("v2")
			e.mustAcquire(k, v1, holdTTL)
			if e.acquire(k, v2, holdTTL) {
				t.Errorf("Acquire by another value = true, want false")
			}
			if !e.extend(k, v1, holdTTL) {
				t.Errorf("Extend by the holder = false, want true")
			}
			e.wantHeldBy(k, v1)
			if !e.release(k, v1) {
				t.Errorf("Release by the holder = false, want true")
			}
			e.wantFree(k)
			if _, ok := e.node.(dlock.Fencer); !ok {
				return
			}
			c1 := e.grantFenced(k, v1, holdTTL)
			if !e.release(k, v1) {
				t.Errorf("Release after AcquireFenced = false, want true")
			}
			if c2 := e.grantFenced(k, v2, holdTTL); c2 != c1+1 {
				t.Errorf("second AcquireFenced: Counter = %d, want %d", c2, c1+1)
			}
		})
	}
}

func testInspect(t *testing.T, e *env) {
	in, ok := e.node.(dlock.Inspector)
	if !ok {
		t.Skipf("%T does not implement dlock.Inspector", e.node)
	}
	inspect := func(key string) dlock.KeyState {
		t.Helper()
		s, err := in.Inspect(e.ctx, key)
		if err != nil {
			t.Fatalf("Inspect(%s): %v", show(key), err)
		}
		return s
	}
	k, v := e.key("k"), value("v")
	if got, want := inspect(k), (dlock.KeyState{}); got != want {
		t.Errorf("Inspect of a key never set = %+v, want %+v", got, want)
	}

	// The TTL reported may be cut to the store's unit, and a key may live up
	// to one granule longer than asked.
	unit := max(e.gran, time.Millisecond)
	before := time.Now()
	e.mustAcquire(k, v, holdTTL)
	s := inspect(k)
	elapsed := time.Since(before)
	if !s.Held || s.Value != v {
		t.Errorf("Inspect of a held key: held %v, value %q; want held by %q", s.Held, s.Value, v)
	}
	if lo, hi := holdTTL-elapsed-unit, holdTTL+e.gran+unit; s.TTL < lo || s.TTL > hi {
		t.Errorf("Inspect of a key acquired with TTL %v %v ago: TTL %v, want within [%v, %v]", holdTTL, elapsed, s.TTL, lo, hi)
	}
	if !e.release(k, v) {
		t.Fatalf("Release by the holder = false, want true")
	}
	if s := inspect(k); s.Held {
		t.Errorf("Inspect of a released key: %+v, want not held", s)
	}

	if _, ok := e.node.(dlock.Fencer); !ok {
		return
	}
	k = e.key("fenced")
	c := e.grantFenced(k, v, holdTTL)
	if s := inspect(k); !s.Held || s.Value != v || !s.HasCounter || s.Counter != c {
		t.Errorf("Inspect after AcquireFenced granted counter %d: %+v, want held by %q with that counter", c, s, v)
	}
	if !e.release(k, v) {
		t.Fatalf("Release by the holder = false, want true")
	}
	if s := inspect(k); s.Held || !s.HasCounter || s.Counter != c {
		t.Errorf("Inspect after release: %+v, want not held, counter %d kept", s, c)
	}
}

func testFencingAcquire(t *testing.T, e *env) {
	e.fencer()
	k, v1, v2 := e.key("k"), value("v1"), value("v2")
	c := e.grantFenced(k, v1, holdTTL)

	req := dlock.Request{Key: k, Value: v2, TTL: holdTTL, Fencing: true}
	e.wantReply("AcquireFenced of a held key (refused)", e.acquireFenced(req), dlock.Reply{Counter: c})
	req.Fencing = false
	e.wantReply("AcquireFenced without fencing of a held key (refused)", e.acquireFenced(req), dlock.Reply{Counter: c})
	e.wantReply("ExtendFenced by the holder", e.extendFenced(dlock.Request{Key: k, Value: v1, TTL: holdTTL}), dlock.Reply{OK: true, Counter: c})

	if !e.release(k, v1) {
		t.Fatalf("Release by the holder = false, want true")
	}
	// A grant without fencing leaves the counter alone, and so do the
	// plain Node methods.
	e.wantReply("AcquireFenced without fencing", e.acquireFenced(req), dlock.Reply{OK: true, Counter: c})
	e.cleanupRelease(k, v2)
	if !e.release(k, v2) {
		t.Fatalf("Release by the holder = false, want true")
	}
	if c2 := e.grantFenced(k, v2, holdTTL); c2 != c+1 {
		t.Errorf("AcquireFenced after release: Counter = %d, want %d (one more than before)", c2, c+1)
	}
	if !e.release(k, v2) {
		t.Fatalf("Release by the holder = false, want true")
	}
	v3 := value("v3")
	e.mustAcquire(k, v3, holdTTL)
	e.extend(k, v3, holdTTL)
	e.release(k, v3)
	if c3 := e.grantFenced(k, v1, holdTTL); c3 != c+2 {
		t.Errorf("AcquireFenced after plain Acquire, Extend, Release: Counter = %d, want %d", c3, c+2)
	}
}

func testFencingSurvives(t *testing.T, e *env) {
	e.fencer()
	k, v := e.key("k"), value("v")
	c := e.grantFenced(k, v, holdTTL)
	if !e.release(k, v) {
		t.Fatalf("Release by the holder = false, want true")
	}
	if c2 := e.grantFenced(k, v, e.unit); c2 != c+1 {
		t.Fatalf("AcquireFenced after release: Counter = %d, want %d", c2, c+1)
	}
	// Let the key expire: a plain Acquire by another value, which does not
	// touch the counter, gets it.
	e.goneBy(k, time.Now().Add(e.unit+e.gran+expirySlack), e.unit)
	if c3 := e.grantFenced(k, v, holdTTL); c3 != c+2 {
		t.Errorf("AcquireFenced after expiry: Counter = %d, want %d (the counter has no TTL)", c3, c+2)
	}
}

func testFence(t *testing.T, e *env) {
	e.fencer()
	k, v1, v2, v3 := e.key("k"), value("v1"), value("v2"), value("v3")
	c := e.grantFenced(k, v1, holdTTL)

	fences := []struct {
		name  string
		value string
		token uint64
		want  dlock.Reply
	}{
		{"raise", v1, c + 3, dlock.Reply{OK: true, Counter: c + 3}},
		{"same_token", v1, c + 3, dlock.Reply{OK: true, Counter: c + 3}},
		{"lower_token", v1, c + 1, dlock.Reply{Counter: c + 3}},
		{"another_value", v2, c + 100, dlock.Reply{Counter: c + 3}},
	}
	for _, f := range fences {
		got := e.fence(dlock.Request{Key: k, Value: f.value, Token: f.token})
		e.wantReply(fmt.Sprintf("%s: Fence(token %d)", f.name, f.token), got, f.want)
	}
	if !e.release(k, v1) {
		t.Fatalf("Release by the holder = false, want true")
	}
	e.wantReply("Fence by the former holder of a released key", e.fence(dlock.Request{Key: k, Value: v1, Token: c + 100}), dlock.Reply{Counter: c + 3})
	if c2 := e.grantFenced(k, v3, holdTTL); c2 != c+4 {
		t.Errorf("AcquireFenced after Fence to %d: Counter = %d, want %d", c+3, c2, c+4)
	}
}

func testExtendFencedRecreate(t *testing.T, e *env) {
	e.fencer()
	k, v1, v2, v3 := e.key("k"), value("v1"), value("v2"), value("v3")
	c := e.grantFenced(k, v1, holdTTL)
	if !e.release(k, v1) {
		t.Fatalf("Release by the holder = false, want true")
	}

	// Re-created with a token above the counter: the counter rises to it.
	r := e.extendFenced(dlock.Request{Key: k, Value: v2, TTL: holdTTL, Token: c + 10})
	if !r.OK || r.Guarded || r.Counter < c+10 {
		t.Errorf("ExtendFenced re-creating with token %d over counter %d = %+v, want OK with Counter ≥ %d", c+10, c, r, c+10)
	}
	e.cleanupRelease(k, v2)
	e.wantHeldBy(k, v2)
	raised := r.Counter
	if !e.release(k, v2) {
		t.Fatalf("Release by the holder = false, want true")
	}

	// Re-creation with a token below the counter: a later holder was here.
	e.wantReply(fmt.Sprintf("ExtendFenced re-creating with token %d under counter %d", c+5, raised),
		e.extendFenced(dlock.Request{Key: k, Value: v3, TTL: holdTTL, Token: c + 5}), dlock.Reply{Counter: raised})
	e.wantFree(k)

	// With the token equal to the counter, and without a token, it
	// re-creates the key and leaves the counter.
	e.wantReply("ExtendFenced re-creating with the counter's own token",
		e.extendFenced(dlock.Request{Key: k, Value: v3, TTL: holdTTL, Token: raised}), dlock.Reply{OK: true, Counter: raised})
	e.cleanupRelease(k, v3)
	if !e.release(k, v3) {
		t.Fatalf("Release by the holder = false, want true")
	}
	e.wantReply("ExtendFenced re-creating without a token",
		e.extendFenced(dlock.Request{Key: k, Value: v3, TTL: holdTTL}), dlock.Reply{OK: true, Counter: raised})
	e.wantHeldBy(k, v3)

	// Held by another value: refused, whatever the token.
	e.wantReply("ExtendFenced of a key held by another value",
		e.extendFenced(dlock.Request{Key: k, Value: v1, TTL: holdTTL, Token: raised + 100}), dlock.Reply{Counter: raised})
	if !e.release(k, v3) {
		t.Fatalf("Release by the holder = false, want true")
	}
	if c2 := e.grantFenced(k, v1, holdTTL); c2 != raised+1 {
		t.Errorf("AcquireFenced after the re-creations: Counter = %d, want %d", c2, raised+1)
	}
}

// guardedOrSkip sends a request with a guard that no marker has outlived,
// and skips the subtest when the node grants it: such a node does not
// enforce the restart guard, which only a store that cannot lose its data
// may do.
func (e *env) guardedOrSkip(key string) {
	e.t.Helper()
	v := value("guarded")
	r := e.acquireFenced(dlock.Request{Key: key, Value: v, TTL: holdTTL, Guard: foreverGuard})
	if r.OK {
		e.release(key, v)
		e.t.Skipf("%T granted AcquireFenced with a Guard of %v: it does not enforce the restart guard (acceptable only for a store that cannot lose its data)", e.node, foreverGuard)
	}
	if !r.Guarded {
		e.t.Fatalf("AcquireFenced of a free key with a Guard of %v = %+v, want Guarded", foreverGuard, r)
	}
}

func testGuardRefuses(t *testing.T, e *env) {
	e.fencer()
	k, v1, v2 := e.key("k"), value("v1"), value("v2")
	c := e.grantFenced(k, v1, holdTTL)
	if !e.release(k, v1) {
		t.Fatalf("Release by the holder = false, want true")
	}
	e.guardedOrSkip(k)
	// From here on the node has a marker younger than the guard.

	e.wantReply("AcquireFenced with the guard in force",
		e.acquireFenced(dlock.Request{Key: k, Value: v2, TTL: holdTTL, Guard: foreverGuard, Fencing: true}),
		dlock.Reply{Guarded: true, Counter: c})
	e.wantReply("ExtendFenced re-creating a key with the guard in force",
		e.extendFenced(dlock.Request{Key: k, Value: v2, TTL: holdTTL, Guard: foreverGuard, Token: c + 10}),
		dlock.Reply{Guarded: true, Counter: c})
	e.wantFree(k)

	// A request without a guard is not refused.
	if c2 := e.grantFenced(k, v1, holdTTL); c2 != c+1 {
		t.Errorf("AcquireFenced without a guard after guarded refusals: Counter = %d, want %d (a refusal changes nothing)", c2, c+1)
	}
	// The holder still extends, fences and releases with the guard on.
	e.wantReply("ExtendFenced by the holder with the guard in force",
		e.extendFenced(dlock.Request{Key: k, Value: v1, TTL: holdTTL, Guard: foreverGuard, Token: c + 1}),
		dlock.Reply{OK: true, Counter: c + 1})
	e.wantReply("Fence by the holder with the guard in force",
		e.fence(dlock.Request{Key: k, Value: v1, Guard: foreverGuard, Token: c + 2}),
		dlock.Reply{OK: true, Counter: c + 2})
	// Held and guarded: refused for either reason, so Guarded may be
	// either.
	if r := e.acquireFenced(dlock.Request{Key: k, Value: v2, TTL: holdTTL, Guard: foreverGuard, Fencing: true}); r.OK || r.Counter != c+2 {
		t.Errorf("AcquireFenced of a held key with the guard in force = %+v, want refused with Counter %d", r, c+2)
	}
	e.wantHeldBy(k, v1)
	if !e.release(k, v1) {
		t.Errorf("Release by the holder with the guard in force = false, want true")
	}
}

func testGuardPasses(t *testing.T, e *env) {
	e.fencer()
	k, v := e.key("k"), value("v")
	e.guardedOrSkip(k)
	// The node has a marker now, written at the latest by that call: a
	// guard shorter than the time since then has passed.
	guard := 100 * time.Millisecond
	time.Sleep(3*guard + e.gran)
	r := e.acquireFenced(dlock.Request{Key: k, Value: v, TTL: holdTTL, Guard: guard, Fencing: true})
	if !r.OK || r.Guarded || r.Counter == 0 {
		t.Fatalf("AcquireFenced with a Guard of %v, %v after the marker was written = %+v, want OK with a counter", guard, 3*guard+e.gran, r)
	}
	e.cleanupRelease(k, v)
}

// testQueue checks the waiter rule of dlock.Request and dlock.Queue.
func testQueue(t *testing.T, e *env) {
	if _, ok := e.node.(dlock.Queue); !ok {
		t.Skipf("%T does not implement dlock.Queue", e.node)
	}
	q := e.node.(dlock.Queue)
	e.fencer() // skips unless a Fencer
	k, holder := e.key("k"), value("holder")
	const slack = 50 * time.Millisecond
	ask := func(waiter string, waited time.Duration) dlock.Request {
		return dlock.Request{Key: k, Value: value(waiter), TTL: holdTTL,
			Waiter: waiter + "-" + random(), Waited: waited, WaitTTL: time.Minute, WaitSlack: slack}
	}
	e.mustAcquire(k, holder, holdTTL)
	a := ask("a", time.Second) // has waited a second: refused while held, remembered
	a2 := ask("a2", time.Second)
	for _, w := range []dlock.Request{a, a2} {
		if r := e.acquireFenced(w); r.OK {
			t.Fatalf("AcquireFenced(%s) of a waiter while the key is held = %+v, want refused", show(k), r)
		}
	}
	if !e.release(k, holder) {
		t.Fatalf("Release(%s) by its holder = false", show(k))
	}
	b := ask("b", 0) // a newcomer: a has waited longer by more than the slack
	if r := e.acquireFenced(b); r.OK {
		e.cleanupRelease(k, b.Value)
		t.Fatalf("AcquireFenced(%s) of a newcomer while another waiter has waited a second longer = %+v, want refused", show(k), r)
	}
	if err := q.Leave(e.ctx, dlock.Request{Key: k, Waiter: a.Waiter}); err != nil {
		t.Fatalf("Leave(%s, %s): %v", show(k), a.Waiter, err)
	}
	if r := e.acquireFenced(b); r.OK { // a2 still waits
		e.cleanupRelease(k, b.Value)
		t.Fatalf("AcquireFenced(%s) of a newcomer after one of two longer waiters left = %+v, want refused: Leave forgot the other too", show(k), r)
	}
	if err := q.Leave(e.ctx, dlock.Request{Key: k, Waiter: a2.Waiter}); err != nil {
		t.Fatalf("Leave(%s, %s): %v", show(k), a2.Waiter, err)
	}
	if err := q.Leave(e.ctx, dlock.Request{Key: k, Waiter: "nobody-" + random()}); err != nil {
		t.Errorf("Leave(%s) of a waiter the node does not know: %v, want nil", show(k), err)
	}
	b.Waited = 10 * time.Millisecond
	r := e.acquireFenced(b) // the waiter ahead left
	if !r.OK {
		t.Fatalf("AcquireFenced(%s) once the waiter ahead left = %+v, want OK", show(k), r)
	}
	e.cleanupRelease(k, b.Value)

	// A waiter granted the key is forgotten: once b releases, a newcomer
	// is not kept from the key by b.
	c := ask("c", 0)
	c.Waited = 0
	if !e.release(k, b.Value) {
		t.Fatalf("Release(%s) by b = false", show(k))
	}
	if r := e.acquireFenced(c); !r.OK {
		t.Fatalf("AcquireFenced(%s) of a newcomer after the only waiter was granted and released = %+v, want OK", show(k), r)
	}
	e.cleanupRelease(k, c.Value)

	// Waiters within the slack of each other: the first to ask is granted.
	if !e.release(k, c.Value) {
		t.Fatalf("Release(%s) by c = false", show(k))
	}
	e.mustAcquire(k, holder, holdTTL)
	d1, d2 := ask("d1", time.Second), ask("d2", time.Second+slack/5)
	for _, d := range []dlock.Request{d1, d2} {
		if r := e.acquireFenced(d); r.OK {
			t.Fatalf("AcquireFenced(%s) of a waiter while the key is held = %+v, want refused", show(k), r)
		}
	}
	if !e.release(k, holder) {
		t.Fatalf("Release(%s) by its holder = false", show(k))
	}
	if r := e.acquireFenced(d1); !r.OK {
		t.Fatalf("AcquireFenced(%s) of a waiter within the slack of the longest = %+v, want OK", show(k), r)
	}
	e.cleanupRelease(k, d1.Value)
}
