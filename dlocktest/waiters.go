package dlocktest

import (
	"time"

	"github.com/charconstpointer/dlock"
)

// Waiters keeps the Lock calls that wait for keys on one node, and applies
// the rule of dlock.Request's waiter fields, for Node implementations (the
// memory node and the simulation use it). It is not safe for concurrent
// use: the node guards it with its own lock. The zero value is empty.
type Waiters struct {
	m map[string]map[string]waiter // by key, by Request.Waiter
}

// waiter is a Lock call waiting for a key: how long it had waited at its
// last attempt, when that was, and when to forget it, by the node's clock.
type waiter struct {
	waited  time.Duration
	at, exp time.Time
}

// Wait applies the waiter rule to an acquire of req.Key at the node's time
// now, with held telling whether the key is held: it forgets waiters whose
// time is up, and reports whether req must wait (the key is held, or
// another waiter has waited longer than req by more than req.WaitSlack),
// remembering req as a waiter for req.WaitTTL then. A waiter that may go
// ahead is forgotten. A request without a Waiter never waits here.
func (w *Waiters) Wait(now time.Time, req dlock.Request, held bool) bool {
	if req.Waiter == "" {
		return false
	}
	ws := w.m[req.Key]
	ahead := false
	for id, o := range ws {
		switch {
		case !now.Before(o.exp):
			delete(ws, id)
		case id != req.Waiter && o.waited+now.Sub(o.at) > req.Waited+req.WaitSlack:
			ahead = true
		}
	}
	if !held && !ahead {
		delete(ws, req.Waiter)
		return false
	}
	if ws == nil {
		if w.m == nil {
			w.m = map[string]map[string]waiter{}
		}
		ws = map[string]waiter{}
		w.m[req.Key] = ws
	}
	ws[req.Waiter] = waiter{waited: req.Waited, at: now, exp: now.Add(req.WaitTTL)}
	return true
}

// Leave forgets waiter as a waiter for key (dlock.Queue).
func (w *Waiters) Leave(key, waiter string) {
	ws := w.m[key]
	delete(ws, waiter)
	if len(ws) == 0 {
		delete(w.m, key)
	}
}

// Clear forgets every waiter, as a node that lost its memory does.
func (w *Waiters) Clear() { clear(w.m) }
