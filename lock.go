package dlock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
)

// lockState is where a Lock is in its life.
type lockState int

const (
	held     lockState = iota // acquired and within its validity
	lost                      // a majority no longer holds it, or its validity ran out
	released                  // Release was called
)

func (s lockState) String() string {
	switch s {
	case held:
		return "held"
	case lost:
		return "lost"
	default:
		return "released"
	}
}

// Lock is a held Redlock lock. It is safe for concurrent use. Its holder
// must stop working on the protected resource before ValidUntil, or as soon
// as Lost is closed, whichever comes first, and must call Release when done.
type Lock struct {
	r     *Redlock
	key   string
	value string
	token uint64 // the fencing token; 0 when not fenced
	p     params
	lost  chan struct{} // closed when the lock is no longer known to be held

	opSem chan struct{} // held (a value sent) by the one round on the nodes at a time; guards lanes
	lanes lanes         // this lock's call history per node

	mu          sync.Mutex // guards what follows
	state       lockState
	why         error // why the lock is no longer held; set when state leaves held
	validUntil  time.Time
	gen         uint64       // counts validity updates, so a stale expiry timer does nothing
	expiry      *clock.Timer // fires at validUntil
	stopRefresh context.CancelFunc
	refreshDone chan struct{} // closed when the auto-refresh goroutine has returned
}

func newLock(r *Redlock, key, value string, token uint64, p params, until time.Time, ln lanes) *Lock {
	l := &Lock{r: r, key: key, value: value, token: token, p: p, lost: make(chan struct{}), opSem: make(chan struct{}, 1), lanes: ln}
	l.mu.Lock()
	l.setValidUntilLocked(until)
	if p.RefreshInterval > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		l.stopRefresh = cancel
		l.refreshDone = make(chan struct{})
		go l.refreshLoop(ctx)
	}
	l.mu.Unlock()
	return l
}

// Key returns the key as given to Lock, without the Redlock's prefix.
func (l *Lock) Key() string { return l.key }

// Value returns exactly what is stored on the nodes, which identifies this
// holder: the value given to Lock followed by "." and 16 hex digits unique
// to the attempt that acquired the lock, or the generated value.
func (l *Lock) Value() string { return l.value }

// beginOp waits for the lock's turn to run a round on the nodes, or for ctx
// to end.
func (l *Lock) beginOp(ctx context.Context) error {
	select {
	case l.opSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// endOp ends the lock's turn.
func (l *Lock) endOp() { <-l.opSem }

// ValidUntil returns the instant, by the Redlock's clock, until which the
// lock is known to be held: the start of the last successful acquire or
// refresh round, plus the TTL, minus the drift allowance. A holder must stop
// before it.
func (l *Lock) ValidUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.validUntil
}

// Token returns the lock's fencing token, or 0 when the lock was taken
// without WithFencing. Of two fenced locks on one key, the one granted
// later has the larger token; a resource that remembers the largest token
// it has accepted and refuses smaller ones is safe against a holder that
// paused past its validity. The package documentation gives the argument
// and its assumptions.
func (l *Lock) Token() uint64 { return l.token }

// Held reports whether the lock is held now, by the Redlock's clock: not
// lost, not released, and before ValidUntil. It is the check to make right
// before each use of the protected resource: Lost is closed by a timer, and
// a holder that resumes after a pause may see its own work ticker fire
// before Lost. What remains, a pause between Held and the use, only a
// fencing token checked by the resource can close.
func (l *Lock) Held() bool {
	l.mu.Lock()
	ok, expired := l.checkLocked()
	l.mu.Unlock()
	if expired {
		l.logLost("validity ran out")
	}
	return ok
}

// Err returns nil while the lock is held, and once it is not (Lost is then
// closed), why: an error wrapping ErrLockLost, whose message says whether
// the lock was released, its validity ran out, or a refresh found it gone.
func (l *Lock) Err() error {
	l.mu.Lock()
	_, expired := l.checkLocked()
	why := l.why
	l.mu.Unlock()
	if expired {
		l.logLost("validity ran out")
	}
	return why
}

// checkLocked marks a held lock lost when its validity is over, so that
// Held, Err and Lost agree without waiting for the expiry timer, and
// reports whether the lock is still held, and whether this call found its
// validity over (the caller then logs the loss, outside l.mu); l.mu is held.
func (l *Lock) checkLocked() (ok, expired bool) {
	if l.state != held {
		return false, false
	}
	if l.r.clock.Now().Before(l.validUntil) {
		return true, false
	}
	l.loseLocked(fmt.Errorf("%w: %s: validity ran out", ErrLockLost, quoteKey(l.key)))
	return false, true
}

// Lost returns a channel that is closed when the lock is no longer known to
// be held: a refresh found that a majority no longer holds its value, the
// validity ran out before a refresh succeeded, or the lock was released.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Refresh extends the lock by its TTL on a majority of nodes, where they
// still hold its value, and recomputes the validity from the start of this
// round.
//
// Errors: an error wrapping ErrLockLost, joined with each node's *NodeError,
// when the lock is lost: a majority no longer holds its value, or its
// validity ran out before a majority extended it; Lost is then closed. When
// nodes failed or were too slow but no majority refused, an error joining
// their *NodeError values that does not wrap ErrLockLost: the lock still
// holds until ValidUntil, and Refresh may be called again. When ctx ends
// first, an error wrapping ctx.Err(), and the lock stays as it was.
func (l *Lock) Refresh(ctx context.Context) error {
	if ctx == nil {
		return invalid("ctx", "nil", "must not be nil")
	}
	if err := l.beginOp(ctx); err != nil {
		return fmt.Errorf("dlock: refresh %s: %w", quoteKey(l.key), err)
	}
	defer l.endOp()
	return l.refreshLocked(ctx)
}

// refreshLocked runs one refresh round; the lock's op turn is held.
func (l *Lock) refreshLocked(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dlock: refresh %s: %w", quoteKey(l.key), err)
	}
	r, p := l.r, l.p
	l.mu.Lock()
	_, expired := l.checkLocked() // the expiry timer may be late: the validity is over all the same
	st, why := l.state, l.why
	l.mu.Unlock()
	if expired {
		l.logLost("validity ran out")
	}
	if st != held {
		return why
	}
	start := r.clock.Now()
	t, _ := r.fanout(ctx, round{
		lanes:   l.lanes,
		callCtx: ctx,
		decide:  p.nodeTimeout,
		budget:  p.nodeTimeout,
		op:      opExtend,
		key:     p.nodeKey,
		value:   l.value,
		ttl:     p.TTL,
		ext:     p.ext,
		guard:   r.guard,
		token:   l.token,
	})
	if t.ctxErr != nil {
		return fmt.Errorf("dlock: refresh %s: %w", quoteKey(l.key), t.ctxErr)
	}
	elapsed := r.clock.Since(start)
	left := validity(p.TTL, elapsed, p.DriftFactor)

	l.mu.Lock()
	if l.state != held {
		why := l.why
		l.mu.Unlock()
		return why
	}
	if t.won() && left > 0 && elapsed >= 0 {
		l.setValidUntilLocked(validUntil(start, p.TTL, p.DriftFactor))
		l.mu.Unlock()
		return nil
	}
	var head error
	switch {
	case t.won() && elapsed < 0:
		// The clock stepped back: the round cannot be measured. Like a
		// round of failed nodes, it keeps the current validity.
		until := l.validUntil
		l.mu.Unlock()
		return t.join(fmt.Errorf("dlock: refresh %s: %s, but the clock stepped back by %v during the round; the lock holds until %s",
			quoteKey(l.key), &t, -elapsed, until.Format(time.RFC3339Nano)))
	case t.won():
		head = fmt.Errorf("%w: %s: refresh: %s, but no validity left (%v after drift)", ErrLockLost, quoteKey(l.key), &t, left)
	case t.refusedByMajority():
		head = fmt.Errorf("%w: %s: refresh: %s: a majority no longer holds the lock", ErrLockLost, quoteKey(l.key), &t)
	case !r.clock.Now().Before(l.validUntil):
		head = fmt.Errorf("%w: %s: refresh: %s, and the validity ran out", ErrLockLost, quoteKey(l.key), &t)
	default:
		// Nodes failed or were slow, but no majority refused: the lock
		// still holds until its current validity, and may be refreshed
		// again before then.
		until := l.validUntil
		l.mu.Unlock()
		return t.join(fmt.Errorf("dlock: refresh %s: %s; the lock holds until %s",
			quoteKey(l.key), &t, until.Format(time.RFC3339Nano)))
	}
	l.loseLocked(head)
	l.mu.Unlock()
	l.logLost("refresh failed")
	// The lock is gone: undo what it still holds, including keys this
	// round put back, so that they do not block others until their TTL.
	r.start(l.releaseRound(ctx))
	return t.join(head)
}

// minRefreshRetry is the least pause before auto-refresh retries a failed
// round.
const minRefreshRetry = 10 * time.Millisecond

// refreshLoop refreshes the lock every RefreshInterval until ctx ends (on
// Release or loss). A round that fails without losing the lock (nodes
// failed or were slow, but no majority refused) is retried after
// RetryInterval (at least 10ms) for as long as the validity lasts; when it
// runs out, the expiry timer marks the lock lost and ends the loop.
func (l *Lock) refreshLoop(ctx context.Context) {
	defer close(l.refreshDone)
	wait := l.p.RefreshInterval
	for {
		timer := l.r.clock.Timer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		if l.beginOp(ctx) != nil {
			return
		}
		err := l.refreshLocked(ctx)
		l.endOp()
		switch {
		case err == nil:
			wait = l.p.RefreshInterval
		case errors.Is(err, ErrLockLost) || ctx.Err() != nil:
			return
		default:
			wait = min(max(l.p.RetryInterval, minRefreshRetry), l.p.RefreshInterval)
			if l.r.log.Enabled(ctx, slog.LevelDebug) {
				l.r.log.DebugContext(ctx, "dlock: refresh failed, retrying", "key", logKey(l.key), "in", wait)
			}
		}
	}
}

// setValidUntilLocked records a new validity and arms the timer that marks
// the lock lost when it runs out; l.mu is held.
func (l *Lock) setValidUntilLocked(until time.Time) {
	l.validUntil = until
	l.gen++
	if l.expiry != nil {
		l.expiry.Stop()
	}
	gen := l.gen
	l.expiry = l.r.clock.AfterFunc(l.r.clock.Until(until), func() {
		l.mu.Lock()
		expired := l.gen == gen && l.state == held
		if expired {
			l.loseLocked(fmt.Errorf("%w: %s: validity ran out", ErrLockLost, quoteKey(l.key)))
		}
		l.mu.Unlock()
		if expired {
			l.logLost("validity ran out")
		}
	})
}

// loseLocked marks a held lock lost; l.mu is held. The caller logs the
// loss with logLost once it has released l.mu, so that a log handler can
// never deadlock against the lock.
func (l *Lock) loseLocked(why error) {
	l.state = lost
	l.why = why
	l.endLocked()
}

func (l *Lock) logLost(why string) {
	l.r.log.Warn("dlock: lock lost", "key", logKey(l.key), "reason", why)
}

// endLocked closes Lost, stops the expiry timer and the auto-refresh; l.mu
// is held.
func (l *Lock) endLocked() {
	select {
	case <-l.lost:
	default:
		close(l.lost)
	}
	if l.expiry != nil {
		l.expiry.Stop()
	}
	if l.stopRefresh != nil {
		l.stopRefresh()
	}
}

// releaseRound returns the round that releases the lock on every node,
// announced to waiters (it was held); the lock's op turn is held.
func (l *Lock) releaseRound(ctx context.Context) round {
	rd := l.r.releaseRound(ctx, l.p, l.value, l.lanes, nil)
	rd.announce = true
	return rd
}

// Release releases the lock with context.Background(); see ReleaseContext.
func (l *Lock) Release() error { return l.ReleaseContext(context.Background()) }

// ReleaseContext deletes the lock's key on every node where it still holds
// the lock's value (never another holder's key), stops the auto-refresh and
// closes Lost. It returns once a majority released the key or no longer
// can; the remaining nodes are released in the background, each after this
// lock's previous call on it.
//
// Errors: an error wrapping ErrLockLost when the lock was already released,
// lost, or past its validity, or when so many nodes no longer held its
// value that it was not held on a majority; an error joining each node's
// *NodeError when too many nodes failed to confirm the release (their keys
// expire at the TTL); when ctx ends first, an error wrapping ctx.Err() (the
// releases still go on in the background).
func (l *Lock) ReleaseContext(ctx context.Context) error {
	if ctx == nil {
		return invalid("ctx", "nil", "must not be nil")
	}
	r := l.r
	l.mu.Lock()
	prev := l.state
	if prev == released {
		l.mu.Unlock()
		return fmt.Errorf("%w: %s: already released", ErrLockLost, quoteKey(l.key))
	}
	stillValid := prev == held && r.clock.Now().Before(l.validUntil)
	l.state = released
	if l.why == nil {
		l.why = fmt.Errorf("%w: %s: released", ErrLockLost, quoteKey(l.key))
	}
	l.endLocked()
	refreshDone := l.refreshDone
	l.mu.Unlock()

	// Wait for the lock's turn: a refresh round in flight ends promptly,
	// cancelled by endLocked; a Refresh called by the holder runs to its
	// own end. When ctx ends first, the release is sent in the background
	// once the turn comes.
	if err := l.beginOp(ctx); err != nil {
		go func() {
			l.opSem <- struct{}{}
			r.start(l.releaseRound(ctx))
			l.endOp()
		}()
		return fmt.Errorf("dlock: release %s: %w (the release is sent in the background)", quoteKey(l.key), err)
	}
	defer l.endOp()
	if refreshDone != nil {
		<-refreshDone // cancelled, and not in a round: it returns at once
	}
	t, _ := r.fanout(ctx, l.releaseRound(ctx))
	switch {
	case t.ctxErr != nil:
		return fmt.Errorf("dlock: release %s: %w", quoteKey(l.key), t.ctxErr)
	case !stillValid:
		return t.join(fmt.Errorf("%w: %s: %s before release", ErrLockLost, quoteKey(l.key), lostOrExpired(prev)))
	case t.refusedByMajority():
		// Too many nodes no longer held the value: the lock was not held.
		return t.join(fmt.Errorf("%w: %s: release: %s", ErrLockLost, quoteKey(l.key), &t))
	case !t.won():
		return t.join(fmt.Errorf("dlock: release %s: %s; the key stays on the failed nodes until its TTL", quoteKey(l.key), &t))
	}
	return nil
}

func lostOrExpired(s lockState) string {
	if s == lost {
		return "lost"
	}
	return "validity ran out"
}
