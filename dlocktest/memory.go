package dlocktest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/charconstpointer/dlock"
)

// MemoryNode is a dlock.Node that keeps its keys in memory, for tests. It
// also implements dlock.Fencer (fencing counters and the restart guard) and
// dlock.Inspector, and keeps the waiters of dlock.Request (dlock.Queue).
// Create one with NewMemoryNode; it is safe for concurrent use.
//
// Expiry is judged by the node's clock, lazily when a key is looked at, as
// Redis does: the node starts no goroutines and sets no timers, so it works
// inside a testing/synctest bubble given clock.New() (or nil), and with a
// clock.Mock outside one. A key set with TTL d at instant t is held while
// the clock reads before t+d; TTLs are kept to the nanosecond.
//
// The helpers Wipe, SetFault, Provision, Keys and Get act on the node
// directly, for setting up faults and making assertions; they ignore the
// fault set by SetFault.
type MemoryNode struct {
	clock clock.Clock

	mu       sync.Mutex
	keys     map[string]entry
	counters map[string]uint64 // fencing counters: no TTL, kept on release
	marker   *marker           // the restart marker; nil when the node has none
	fault    error             // returned by every call while non-nil
	waiters  Waiters           // Lock calls waiting for keys
}

// entry is one key's value and the instant, by the node's clock, at which it
// expires.
type entry struct {
	value string
	exp   time.Time
}

// marker is the restart marker of dlock.Fencer: when the node came back
// without its data, and the floor that counters created since start at.
type marker struct {
	cameBack time.Time
	floor    uint64
}

var (
	_ dlock.Node      = (*MemoryNode)(nil)
	_ dlock.Fencer    = (*MemoryNode)(nil)
	_ dlock.Inspector = (*MemoryNode)(nil)
	_ dlock.Queue     = (*MemoryNode)(nil)
)

// NewMemoryNode returns an empty in-memory node whose expiry and restart
// guard are judged by c; nil means clock.New(), the real clock (which is
// fake inside a testing/synctest bubble). The node has no restart marker,
// like a new store: a request with a Guard is refused until the guard has
// passed, unless Provision is called first.
func NewMemoryNode(c clock.Clock) *MemoryNode {
	if c == nil {
		c = clock.New()
	}
	return &MemoryNode{
		clock:    c,
		keys:     make(map[string]entry),
		counters: make(map[string]uint64),
	}
}

// Acquire implements dlock.Node: it sets key to value for ttl only if key is
// not set. It is AcquireFenced without fencing and without a guard: it never
// changes a counter and ignores the restart marker.
//
// It returns an error, and changes nothing, when ctx is done (wrapping
// ctx.Err()), when a fault is set (SetFault), or when ttl is not positive.
func (n *MemoryNode) Acquire(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	r, err := n.AcquireFenced(ctx, dlock.Request{Key: key, Value: value, TTL: ttl})
	return r.OK, err
}

// Extend implements dlock.Node: where key holds value it resets its time to
// live to ttl from now (shorter or longer); where key is not set it sets it,
// as Acquire would; where key holds another value it returns false. It is
// ExtendFenced without a token and without a guard.
//
// Errors are those of Acquire.
func (n *MemoryNode) Extend(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	r, err := n.ExtendFenced(ctx, dlock.Request{Key: key, Value: value, TTL: ttl})
	return r.OK, err
}

// Release implements dlock.Node: it deletes key only if it holds value. The
// key's fencing counter is kept.
//
// It returns an error, and changes nothing, when ctx is done or a fault is
// set.
func (n *MemoryNode) Release(ctx context.Context, key, value string) (bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now, err := n.enter(ctx)
	if err != nil {
		return false, err
	}
	if cur, held := n.live(now, key); !held || cur != value {
		return false, nil
	}
	delete(n.keys, key)
	return true, nil
}

// AcquireFenced implements dlock.Fencer: it sets req.Key to req.Value for
// req.TTL only if the key is not set and no guard is in force (see
// dlock.Fencer). With req.Fencing a grant advances the key's counter by one,
// from the marker's floor (or 0) when the key has none. A request with a
// Guard on a node without a marker writes the marker and is refused
// (Reply.Guarded). The reply's Counter is the key's counter after the call,
// 0 when it has none.
//
// Errors are those of Acquire, and one when the counter is at its maximum.
func (n *MemoryNode) AcquireFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	if err := checkTTL(req.TTL); err != nil {
		return dlock.Reply{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	now, err := n.enter(ctx)
	if err != nil {
		return dlock.Reply{}, err
	}
	_, held := n.live(now, req.Key)
	if n.waiters.Wait(now, req, held) {
		return dlock.Reply{Counter: n.counters[req.Key]}, nil
	}
	if n.guarded(now, req.Guard) {
		return dlock.Reply{Guarded: true, Counter: n.counters[req.Key]}, nil
	}
	if held {
		return dlock.Reply{Counter: n.counters[req.Key]}, nil
	}
	if req.Fencing {
		c := n.start(req.Key)
		if c == math.MaxUint64 {
			return dlock.Reply{Counter: c}, fmt.Errorf("dlocktest: fencing counter of key %q is at its maximum", req.Key)
		}
		n.counters[req.Key] = c + 1
	}
	n.keys[req.Key] = entry{value: req.Value, exp: now.Add(req.TTL)}
	return dlock.Reply{OK: true, Counter: n.counters[req.Key]}, nil
}

// ExtendFenced implements dlock.Fencer: where req.Key holds req.Value it
// resets the time to live to req.TTL from now, also while a guard is in
// force; where the key holds another value it refuses; where the key is not
// set it sets it, unless a guard is in force (Reply.Guarded) or req.Token is
// not 0 and the key's counter (the marker's floor when the key has none) is
// above it. A re-creation with a Token raises the counter to the Token.
//
// Errors are those of Acquire.
func (n *MemoryNode) ExtendFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	if err := checkTTL(req.TTL); err != nil {
		return dlock.Reply{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	now, err := n.enter(ctx)
	if err != nil {
		return dlock.Reply{}, err
	}
	guarded := n.guarded(now, req.Guard)
	cur, held := n.live(now, req.Key)
	switch {
	case held && cur == req.Value:
		n.keys[req.Key] = entry{value: req.Value, exp: now.Add(req.TTL)}
		return dlock.Reply{OK: true, Counter: n.counters[req.Key]}, nil
	case held:
		return dlock.Reply{Counter: n.counters[req.Key]}, nil
	case guarded:
		return dlock.Reply{Guarded: true, Counter: n.counters[req.Key]}, nil
	}
	c := n.start(req.Key)
	if req.Token > 0 && c > req.Token {
		return dlock.Reply{Counter: n.counters[req.Key]}, nil
	}
	if req.Token > 0 {
		n.counters[req.Key] = req.Token
	}
	n.keys[req.Key] = entry{value: req.Value, exp: now.Add(req.TTL)}
	return dlock.Reply{OK: true, Counter: n.counters[req.Key]}, nil
}

// Fence implements dlock.Fencer: while req.Key holds req.Value it raises the
// key's counter to req.Token (from the marker's floor or 0 when the key has
// none); it never lowers it. OK reports that the key holds the value and
// its counter equals the Token afterwards. A request with a Guard on a node
// without a marker writes the marker; Fence is not refused by the guard.
//
// It returns an error, and changes nothing, when ctx is done or a fault is
// set.
func (n *MemoryNode) Fence(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now, err := n.enter(ctx)
	if err != nil {
		return dlock.Reply{}, err
	}
	n.guarded(now, req.Guard)
	if cur, held := n.live(now, req.Key); !held || cur != req.Value {
		return dlock.Reply{Counter: n.counters[req.Key]}, nil
	}
	c := max(n.start(req.Key), req.Token)
	n.counters[req.Key] = c
	return dlock.Reply{OK: c == req.Token, Counter: c}, nil
}

// Leave implements dlock.Queue: it forgets req.Waiter as a waiter for
// req.Key.
//
// It returns an error, and changes nothing, when ctx is done or a fault is
// set.
func (n *MemoryNode) Leave(ctx context.Context, req dlock.Request) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.enter(ctx); err != nil {
		return err
	}
	n.waiters.Leave(req.Key, req.Waiter)
	return nil
}

// Inspect implements dlock.Inspector: it reports what the node holds for
// key, by the node's clock, and changes nothing.
//
// It returns an error when ctx is done or a fault is set.
func (n *MemoryNode) Inspect(ctx context.Context, key string) (dlock.KeyState, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now, err := n.enter(ctx)
	if err != nil {
		return dlock.KeyState{}, err
	}
	var s dlock.KeyState
	if e, ok := n.keys[key]; ok && now.Before(e.exp) {
		s.Held, s.Value, s.TTL = true, e.value, e.exp.Sub(now)
	}
	s.Counter, s.HasCounter = n.counters[key]
	return s, nil
}

// Wipe makes the node lose everything it holds: keys, fencing counters and
// the restart marker, as a store that restarts without persistence (or is
// flushed) does. The next request with a Guard writes a new marker and is
// refused until the guard has passed. A crash and restart is SetFault(err),
// then Wipe and SetFault(nil).
func (n *MemoryNode) Wipe() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.keys)
	clear(n.counters)
	n.waiters.Clear()
	n.marker = nil
}

// SetFault makes every later call of the Node, Fencer and Inspector methods
// return err, changing nothing, as a node that is down or unreachable does;
// SetFault(nil) brings the node back with its data. The helpers (Wipe,
// Provision, Keys, Get) are not affected.
func (n *MemoryNode) SetFault(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fault = err
}

// Provision writes the restart marker as an operator does on a freshly
// provisioned node to skip the restart guard's wait: the node counts as
// having come back at the Unix epoch, so any guard shorter than that has
// passed, and counters created from now on start at the node clock's
// reading in microseconds (never lower than an earlier marker's floor).
// Use it in tests of a Redlock with WithRestartGuard whose nodes are new.
func (n *MemoryNode) Provision() {
	n.mu.Lock()
	defer n.mu.Unlock()
	floor := micros(n.clock.Now())
	if n.marker != nil {
		floor = max(floor, n.marker.floor)
	}
	n.marker = &marker{cameBack: time.Unix(0, 0), floor: floor}
}

// Keys returns the keys the node holds now (set and unexpired), sorted.
func (n *MemoryNode) Keys() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.clock.Now()
	keys := make([]string, 0, len(n.keys))
	for k := range n.keys {
		if _, held := n.live(now, k); held {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// Get returns the value key holds now, and whether it is set and unexpired.
// Inspect also reports the time to live and the fencing counter.
func (n *MemoryNode) Get(key string) (value string, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.live(n.clock.Now(), key)
}

// enter checks ctx and the fault for a call, and reads the node's clock.
// n.mu is held.
func (n *MemoryNode) enter(ctx context.Context) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, fmt.Errorf("dlocktest: memory node: %w", err)
	}
	if n.fault != nil {
		return time.Time{}, n.fault
	}
	return n.clock.Now(), nil
}

// live returns the value of key if it is set and unexpired at now, and
// forgets it when it has expired. n.mu is held.
func (n *MemoryNode) live(now time.Time, key string) (string, bool) {
	e, ok := n.keys[key]
	if !ok {
		return "", false
	}
	if !now.Before(e.exp) {
		delete(n.keys, key)
		return "", false
	}
	return e.value, true
}

// guarded reports whether the restart guard refuses grants at now: guard is
// on and the node came back less than guard ago. A node without a marker
// writes one, coming back now, and is guarded. n.mu is held.
func (n *MemoryNode) guarded(now time.Time, guard time.Duration) bool {
	if guard <= 0 {
		return false
	}
	if n.marker == nil {
		n.marker = &marker{cameBack: now, floor: micros(now)}
		return true
	}
	return now.Sub(n.marker.cameBack) < guard
}

// start returns the counter of key, or where a new counter starts: the
// marker's floor, or 0 without a marker. n.mu is held.
func (n *MemoryNode) start(key string) uint64 {
	if c, ok := n.counters[key]; ok {
		return c
	}
	if n.marker != nil {
		return n.marker.floor
	}
	return 0
}

// micros returns t in microseconds since the Unix epoch, 0 before it.
func micros(t time.Time) uint64 {
	return uint64(max(t.UnixMicro(), 0))
}

// checkTTL returns an error for a TTL that is not positive.
func checkTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("dlocktest: memory node: ttl %v: must be > 0", ttl)
	}
	return nil
}
