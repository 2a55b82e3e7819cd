package sim

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/dlocktest"
)

// op is one kind of node operation.
type op uint8

const (
	opAcquire op = iota
	opExtend
	opRelease
	opAcquireFenced
	opExtendFenced
	opFence
	opLeave
	numOps
)

func (o op) String() string {
	switch o {
	case opAcquire:
		return "acquire"
	case opExtend:
		return "extend"
	case opRelease:
		return "release"
	case opAcquireFenced:
		return "acquire-fenced"
	case opExtendFenced:
		return "extend-fenced"
	case opLeave:
		return "leave"
	default:
		return "fence"
	}
}

// errRefused is what a call to a crashed node returns.
var errRefused = errors.New("sim: connection refused (node down)")

// errNoReply is what a call whose message was lost returns, after twice the
// node timeout, when the caller's context has not ended first.
var errNoReply = errors.New("sim: no reply")

// entry is one key on a node; exp is judged by the node's own clock.
type entry struct {
	value string
	exp   time.Time
}

// marker is a node's restart marker (dlock.Fencer): when, by the node's
// clock, it first saw itself without its data, and the floor that counters
// created since start at (that instant in microseconds).
type marker struct {
	since time.Time
	floor uint64
}

// node is the shared state of one simulated store. Its clock is a skew of
// true time whose offset grows with each jump; expiry is lazy, as in Redis.
// It implements the contract of dlock.Fencer as dlocktest.MemoryNode does:
// a fencing counter per key without a time to live, and the restart marker.
// A crash without persistence loses keys, counters and marker alike.
type node struct {
	id      int
	persist bool

	mu       sync.Mutex
	clock    skew
	up       bool
	crashes  int // how many times it crashed: its connections from before a crash are reset
	store    map[string]entry
	counters map[string]uint64 // fencing counters: no TTL, kept across expiry and release
	marker   *marker           // nil while the node has none
	waiters  dlocktest.Waiters // Lock calls waiting for keys
}

// now is the node clock's reading at true instant t; n.mu is held.
func (n *node) now(t time.Time) time.Time { return n.clock.local(t) }

// live returns the value of key if it is set and unexpired at t; n.mu is held.
func (n *node) live(t time.Time, key string) (string, bool) {
	e, ok := n.store[key]
	if !ok {
		return "", false
	}
	if !n.now(t).Before(e.exp) {
		delete(n.store, key)
		return "", false
	}
	return e.value, true
}

// guarded reports whether the restart guard refuses grants at t: guard is
// on and the node came back less than guard ago by its clock. A node
// without a marker writes one, coming back now with its clock's reading in
// microseconds as the floor, and is guarded; wrote says so. n.mu is held.
func (n *node) guarded(t time.Time, guard time.Duration) (refuse, wrote bool) {
	if guard <= 0 {
		return false, false
	}
	now := n.now(t)
	if n.marker == nil {
		n.marker = &marker{since: now, floor: uint64(max(now.UnixMicro(), 0))}
		return true, true
	}
	return now.Sub(n.marker.since) < guard, false
}

// start returns the counter of key, or where a new one starts: the marker's
// floor, or 0 without a marker. n.mu is held.
func (n *node) start(key string) uint64 {
	if c, ok := n.counters[key]; ok {
		return c
	}
	if n.marker != nil {
		return n.marker.floor
	}
	return 0
}

// apply runs one operation at true instant t and describes it for the
// trace. For the plain operations (Acquire, Extend, Release) only
// Reply.OK is meaningful.
func (n *node) apply(t time.Time, o op, req dlock.Request) (rep dlock.Reply, what string, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.up {
		return rep, "down", errRefused
	}
	key, value := req.Key, req.Value
	switch o {
	case opAcquire, opExtend, opRelease:
		cur, held := n.live(t, key)
		switch o {
		case opAcquire:
			if held {
				return rep, "refused, held by " + short(cur), nil
			}
			n.store[key] = entry{value: value, exp: n.now(t).Add(req.TTL)}
		case opExtend: // ExtendFenced without a token or a guard
			if held && cur != value {
				return rep, "refused, held by " + short(cur), nil
			}
			n.store[key] = entry{value: value, exp: n.now(t).Add(req.TTL)}
			if !held {
				rep.OK = true
				return rep, "ok, re-created", nil
			}
		default:
			if !held {
				return rep, "not held", nil
			}
			if cur != value {
				return rep, "held by " + short(cur), nil
			}
			delete(n.store, key)
		}
		rep.OK = true
		return rep, "ok", nil
	}

	if o == opLeave {
		n.waiters.Leave(key, req.Waiter)
		return rep, "left the queue", nil
	}

	// The Fencer operations.
	guarded, wrote := n.guarded(t, req.Guard)
	note := ""
	if wrote {
		note = fmt.Sprintf(", marker written (floor %d)", n.marker.floor)
	}
	cur, held := n.live(t, key)
	rep.Counter = n.counters[key]
	switch o {
	case opAcquireFenced:
		if n.waiters.Wait(n.now(t), req, held) && !held {
			return rep, fmt.Sprintf("refused: another waiter waited longer, counter %d", rep.Counter), nil
		}
		switch {
		case guarded:
			rep.Guarded = true
			return rep, n.guardNote(t, req.Guard) + note, nil
		case held:
			return rep, fmt.Sprintf("refused, held by %s, counter %d", short(cur), rep.Counter), nil
		}
		if req.Fencing {
			c := n.start(key)
			if c == math.MaxUint64 {
				return rep, "counter at its maximum", fmt.Errorf("sim: n%d: fencing counter of %q at its maximum", n.id, key)
			}
			n.counters[key] = c + 1
		}
		n.store[key] = entry{value: value, exp: n.now(t).Add(req.TTL)}
		rep.OK, rep.Counter = true, n.counters[key]
		return rep, fmt.Sprintf("ok, counter %d%s", rep.Counter, note), nil
	case opExtendFenced:
		switch {
		case held && cur == value:
			n.store[key] = entry{value: value, exp: n.now(t).Add(req.TTL)}
			rep.OK = true
			return rep, fmt.Sprintf("ok, counter %d%s", rep.Counter, note), nil
		case held:
			return rep, fmt.Sprintf("refused, held by %s, counter %d", short(cur), rep.Counter), nil
		case guarded:
			rep.Guarded = true
			return rep, n.guardNote(t, req.Guard) + note, nil
		}
		c := n.start(key)
		if req.Token > 0 && c > req.Token {
			return rep, fmt.Sprintf("refused re-creation: counter %d above token %d", c, req.Token), nil
		}
		if req.Token > 0 {
			n.counters[key] = req.Token
		}
		n.store[key] = entry{value: value, exp: n.now(t).Add(req.TTL)}
		rep.OK, rep.Counter = true, n.counters[key]
		return rep, fmt.Sprintf("ok, re-created, counter %d%s", rep.Counter, note), nil
	default: // opFence
		if !held || cur != value {
			return rep, fmt.Sprintf("not held, counter %d%s", rep.Counter, note), nil
		}
		c := max(n.start(key), req.Token)
		n.counters[key] = c
		rep.OK, rep.Counter = c == req.Token, c
		if !rep.OK {
			return rep, fmt.Sprintf("counter %d above token %d%s", c, req.Token, note), nil
		}
		return rep, fmt.Sprintf("ok, counter %d%s", c, note), nil
	}
}

// guardNote describes a refusal by the restart guard; n.mu is held.
func (n *node) guardNote(t time.Time, guard time.Duration) string {
	return fmt.Sprintf("guarded: came back %v ago, guard %v", n.now(t).Sub(n.marker.since), guard)
}

// holding reports whether any key is live on the node at t.
func (n *node) holding(t time.Time) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.up {
		return "", false
	}
	for k := range n.store { // at most one key: the simulated resource
		if v, ok := n.live(t, k); ok {
			return v, true
		}
	}
	return "", false
}

// crash takes the node down; it forgets everything (keys, counters and
// restart marker) unless persistent.
func (n *node) crash() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.up = false
	n.crashes++
	if n.persist {
		return fmt.Sprintf("crash n%d (persistent, keeps %d key(s))", n.id, len(n.store))
	}
	lost := len(n.store)
	n.store = map[string]entry{}
	n.counters = map[string]uint64{}
	n.waiters.Clear()
	n.marker = nil
	return fmt.Sprintf("crash n%d (memory lost, %d key(s))", n.id, lost)
}

// epoch is the number of crashes so far: a connection opened in one epoch
// is reset in the next.
func (n *node) epoch() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.crashes
}

// restart brings the node back up.
func (n *node) restart() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.up = true
}

// jump moves the node's clock forward by d.
func (n *node) jump(d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.clock.offset += d
}

// short abbreviates a lock value for the trace.
func short(v string) string {
	if len(v) > 8 {
		return v[:8]
	}
	return v
}

// inspect reports what the node holds for key at true instant t, as
// dlock.Inspector does, and changes nothing but forgetting an expired key.
func (n *node) inspect(t time.Time, key string) (dlock.KeyState, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.up {
		return dlock.KeyState{}, errRefused
	}
	var s dlock.KeyState
	if v, ok := n.live(t, key); ok {
		s.Held, s.Value, s.TTL = true, v, n.store[key].exp.Sub(n.now(t))
	}
	s.Counter, s.HasCounter = n.counters[key]
	return s, nil
}
