package sim

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/charconstpointer/dlock"
)

// client runs one client until the end of the run: think, Lock, a few
// resource operations each after a validity check, Release.
func (w *world) client(ctx context.Context, c *simClient) {
	sc := &w.sc
	id := uint64(c.id)
	slot := slotClient(c.id)
	for k := uint64(0); ; k++ {
		wake := atSlot(time.Now().Add(between(w.h(tagThink, id, k), sc.ThinkMin, sc.ThinkMax)), slot)
		if !wake.Before(w.end) {
			return
		}
		sleepUntil(wake)
		w.logf("c%d lock", c.id)
		l, err := c.rl.LockContext(ctx, resourceKey, "")
		if err != nil {
			if ctx.Err() != nil {
				w.logf("c%d gives up: end of run", c.id)
				return
			}
			w.logf("c%d lock failed: %s", c.id, strings.SplitN(err.Error(), "\n", 2)[0])
			continue
		}
		acq := time.Now()
		validTrue := c.clock.s.trueAt(l.ValidUntil())
		// The successful attempt started TTL − drift before ValidUntil, on
		// the client's clock (the library's validity rule).
		attempt := c.clock.s.trueAt(l.ValidUntil().Add(-(sc.TTL - driftAllowance(sc.TTL))))
		hi := w.addHold(hold{client: c.id, n: int(k), value: l.Value(), token: l.Token(), attempt: attempt, acq: acq, end: validTrue})
		w.logf("c%d acquired v=%s, token %d, valid for %v, attempt started %v before", c.id, short(l.Value()), l.Token(), validTrue.Sub(acq), acq.Sub(attempt))

		nops := 1 + pick(w.h(tagOps, id, k), sc.OpsMax)
		toExpiry := unit(w.h(tagToExpiry, id, k)) < sc.HoldToExpiry
		for i := uint64(0); toExpiry || i < uint64(nops); i++ {
			sleepUntil(atSlot(time.Now().Add(between(w.h(tagGap, id, k, i), sc.OpGapMin, sc.OpGapMax)), slot))
			if !c.clock.Now().Before(l.ValidUntil()) || isClosed(l.Lost()) {
				w.logf("c%d validity over, stops", c.id)
				break
			}
			now := time.Now()
			if sc.PauseProb > 0 && now.Sub(w.start) < sc.FaultWindow && unit(w.h(tagPause, id, k, i)) < sc.PauseProb {
				resume := atSlot(now.Add(between(w.h(tagPauseLen, id, k, i), sc.PauseMin, sc.PauseMax)), slot)
				w.logf("c%d checked its validity, then pauses for %v", c.id, resume.Sub(now))
				w.fault(faultPause, resume)
				sleepUntil(resume)
			}
			w.operate(c.id, hi)
		}
		w.releaseStarts(hi, time.Now())
		w.logf("c%d release v=%s", c.id, short(l.Value()))
		switch err := l.Release(); {
		case err == nil:
			w.logf("c%d released", c.id)
		case errors.Is(err, dlock.ErrLockLost):
			w.logf("c%d release: lock lost", c.id)
		default:
			w.logf("c%d release failed", c.id)
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// addHold records a successful acquisition and returns its index.
func (w *world) addHold(h hold) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.holds = append(w.holds, h)
	return len(w.holds) - 1
}

// releaseStarts ends hold i at t, unless its validity ended before.
func (w *world) releaseStarts(i int, t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t.Before(w.holds[i].end) {
		w.holds[i].end = t
	}
}

// operate records one operation on the resource by client c under hold i,
// with the hold's token. The resource remembers the largest token it
// accepted; a fenced one refuses an operation with a smaller token, any
// other accepts everything.
func (w *world) operate(c, i int) {
	now := time.Now()
	w.mu.Lock()
	token, top := w.holds[i].token, w.top
	refused := w.sc.Fenced && token < top
	if !refused {
		w.top = max(top, token)
	}
	w.ops = append(w.ops, resourceOp{client: c, hold: i, token: token, at: now, refused: refused})
	n := len(w.ops)
	w.mu.Unlock()
	if refused {
		w.logf("c%d op #%d on the resource, token %d: refused, stale (it accepted token %d)", c, n, token, top)
		return
	}
	w.logf("c%d op #%d on the resource, token %d", c, n, token)
}

// driftAllowance is the library's clock drift allowance for a lock of ttl
// with dlock.DefaultDriftFactor: ttl × factor + 2ms.
func driftAllowance(ttl time.Duration) time.Duration {
	return time.Duration(float64(ttl)*dlock.DefaultDriftFactor) + 2*time.Millisecond
}
