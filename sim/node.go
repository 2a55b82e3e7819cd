package sim

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// op is one kind of node operation.
type op uint8

const (
	opAcquire op = iota
	opExtend
	opRelease
)

func (o op) String() string {
	switch o {
	case opAcquire:
		return "acquire"
	case opExtend:
		return "extend"
	default:
		return "release"
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

// node is the shared state of one simulated store. Its clock is a skew of
// true time whose offset grows with each jump; expiry is lazy, as in Redis.
type node struct {
	id      int
	persist bool

	mu      sync.Mutex
	clock   skew
	up      bool
	crashes int // how many times it crashed: its connections from before a crash are reset
	store   map[string]entry
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

// apply runs one operation at true instant t and describes it.
func (n *node) apply(t time.Time, o op, key, value string, ttl time.Duration) (ok bool, what string, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.up {
		return false, "down", errRefused
	}
	cur, held := n.live(t, key)
	switch o {
	case opAcquire:
		if held {
			return false, "refused, held by " + short(cur), nil
		}
		n.store[key] = entry{value: value, exp: n.now(t).Add(ttl)}
		return true, "ok", nil
	case opExtend:
		if !held || cur != value {
			return false, "not held", nil
		}
		n.store[key] = entry{value: value, exp: n.now(t).Add(ttl)}
		return true, "ok", nil
	default:
		if !held {
			return false, "not held", nil
		}
		if cur != value {
			return false, "held by " + short(cur), nil
		}
		delete(n.store, key)
		return true, "ok", nil
	}
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

// crash takes the node down; it forgets everything unless persistent.
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
