package dlock

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
)

// Locker acquires locks: the interface of the original dlock API, which
// *Redlock implements.
type Locker interface {
	// Lock acquires the lock on key for value (generated when empty),
	// retrying as the options say.
	Lock(key, value string, opts ...LockOpt) (*Lock, error)
}

var _ Locker = (*Redlock)(nil)

// Redlock is a distributed lock over N independent nodes, held only while a
// majority of them agree, within the lock's TTL minus clock drift. It is
// safe for concurrent use. It needs no Close: the goroutines that make its
// node calls exit on their own 50ms after their last call.
type Redlock struct {
	nodes     []Node
	fencers   []Fencer   // nodes[i] as a Fencer, nil where it is not one
	notifiers []Notifier // nodes[i] as a Notifier, nil where it is not one
	queues    []Queue    // nodes[i] as a Queue, nil where it is not one
	// allFencers: every node implements Fencer, so waiters can queue.
	allFencers bool
	wake       *wakeHub // the Lock calls waiting for keys

	builtInBubble bool // New ran in a testing/synctest bubble
	quorum        int
	clock         clock.Clock
	log           *slog.Logger
	prefix        string
	defaults      LockConfig
	nodeTimeout   time.Duration // 0: derived from each lock's TTL
	guard         time.Duration // restart guard; 0: off

	idle []chan task // per node: where idle workers wait for a call

	// inflight counts, per node, the calls sent and not yet returned, over
	// every lock of the Redlock; maxInFlight bounds the acquires among them.
	inflight    []atomic.Int32
	maxInFlight []int32

	randMu sync.Mutex
	rand   io.Reader
}

// New returns a Redlock over nodes, which must be independent masters (not
// replicas of each other). The quorum is len(nodes)/2 + 1.
//
// New contacts no node. It returns an error wrapping ErrInvalidConfig,
// naming the field and the value, when nodes is empty, holds a nil Node or
// the same store twice (the same client, or two clients of one address and
// database), an option is invalid, or WithRestartGuard is given over a node
// that does not implement Fencer.
func New(nodes []Node, opts ...Option) (*Redlock, error) {
	if len(nodes) == 0 {
		return nil, invalid("nodes", "[]", "need at least one node")
	}
	for i, n := range nodes {
		if isNil(n) {
			return nil, invalid("nodes["+strconv.Itoa(i)+"]", "nil", "must not be nil")
		}
	}
	cfg := defaultConfig()
	for _, opt := range opts {
		if opt != nil {
			opt(&cfg)
		}
	}
	if err := errors.Join(cfg.errs...); err != nil {
		return nil, err
	}
	// An Option may be any func(*Config), so check the result too.
	switch {
	case isNil(cfg.Clock):
		return nil, invalid("Clock", "nil", "must not be nil")
	case cfg.Logger == nil:
		return nil, invalid("Logger", "nil", "must not be nil")
	case cfg.Logger.Handler() == nil:
		return nil, invalid("Logger", "&slog.Logger{}", "has no handler; use slog.New")
	case isNil(cfg.Rand):
		return nil, invalid("Rand", "nil", "must not be nil")
	case cfg.NodeTimeout < 0:
		return nil, invalid("NodeTimeout", cfg.NodeTimeout, "must be > 0 (0: derived from the TTL)")
	case cfg.RestartGuard < 0:
		return nil, invalid("RestartGuard", cfg.RestartGuard, "must be ≥ 0 (0 disables the guard)")
	case cfg.MaxInFlight < 0:
		return nil, invalid("MaxInFlight", cfg.MaxInFlight, "must be > 0 (0: the client's pool size)")
	}
	for i := range nodes {
		for j := range i {
			if sameNode(nodes[i], nodes[j]) {
				return nil, invalid("nodes["+strconv.Itoa(i)+"]", "nodes["+strconv.Itoa(j)+"]",
					"the same store twice would count twice towards the quorum")
			}
		}
	}
	fencers := make([]Fencer, len(nodes))
	for i, n := range nodes {
		fencers[i], _ = n.(Fencer)
		if cfg.RestartGuard > 0 && fencers[i] == nil {
			return nil, invalid("nodes["+strconv.Itoa(i)+"]", fmt.Sprintf("%T", n),
				"WithRestartGuard needs every node to implement dlock.Fencer")
		}
		if g, ok := n.(interface{ guardSupported() error }); ok && cfg.RestartGuard > 0 {
			if err := g.guardSupported(); err != nil {
				return nil, invalid("nodes["+strconv.Itoa(i)+"]", fmt.Sprintf("%T", n), err.Error())
			}
		}
	}
	if _, err := cfg.Defaults.resolve(); err != nil {
		return nil, fmt.Errorf("defaults: %w", err)
	}
	notifiers := make([]Notifier, len(nodes))
	queues := make([]Queue, len(nodes))
	anyNotifier := false
	for i, n := range nodes {
		notifiers[i], _ = n.(Notifier)
		anyNotifier = anyNotifier || notifiers[i] != nil
		queues[i], _ = n.(Queue)
	}
	allFencers := true
	for _, f := range fencers {
		allFencers = allFencers && f != nil
	}
	r := &Redlock{
		allFencers:  allFencers,
		nodes:       slices.Clone(nodes),
		fencers:     fencers,
		quorum:      len(nodes)/2 + 1,
		clock:       cfg.Clock,
		log:         cfg.Logger,
		prefix:      cfg.KeyPrefix,
		defaults:    cfg.Defaults,
		nodeTimeout: cfg.NodeTimeout,
		guard:       cfg.RestartGuard,
		idle:        newIdle(len(nodes)),
		inflight:    make([]atomic.Int32, len(nodes)),
		maxInFlight: maxInFlight(nodes, cfg.MaxInFlight),
		rand:        cfg.Rand,
		notifiers:   notifiers,
		queues:      queues,

		builtInBubble: inBubble(),
	}
	announcing := 0
	for _, n := range notifiers {
		if n != nil {
			announcing++
		}
	}
	r.wake = &wakeHub{r: r, watches: anyNotifier, enough: max(1, min(r.quorum, announcing))}
	return r, nil
}

// defaultMaxInFlight bounds the acquires in flight to a node that does not
// say how many connections its client has.
const defaultMaxInFlight = 64

// poolFactor is how many acquires may be in flight per pooled connection
// of the node's client: a few waiting for a connection cost little on a
// healthy node, and the bound still caps what a slow node can pile up.
const poolFactor = 4

// maxInFlight returns the bound on acquires in flight per node: max when
// given, else 4 times the node's pool size when it has one, else 64.
func maxInFlight(nodes []Node, max int) []int32 {
	out := make([]int32, len(nodes))
	for i, n := range nodes {
		switch p, ok := n.(interface{ poolSize() int }); {
		case max > 0:
			out[i] = int32(min(max, math.MaxInt32))
		case ok && p.poolSize() > 0:
			out[i] = int32(min(poolFactor*p.poolSize(), math.MaxInt32))
		default:
			out[i] = defaultMaxInFlight
		}
	}
	return out
}

func newIdle(n int) []chan task {
	idle := make([]chan task, n)
	for i := range idle {
		idle[i] = make(chan task)
	}
	return idle
}

// identified is implemented by nodes that can name the store behind them,
// so that New can tell two handles on one store apart from two stores.
type identified interface{ storeIdentity() string }

// sameNode reports whether a and b are the same store: the same comparable
// Node value, or nodes that name the same store.
func sameNode(a, b Node) bool {
	if ia, ok := a.(identified); ok {
		if ib, ok := b.(identified); ok && ia.storeIdentity() == ib.storeIdentity() {
			return true
		}
	}
	return equalValues(a, b)
}

// equalValues reports a == b, and false where == would panic (a comparable
// type holding a value that is not comparable).
func equalValues(a, b any) (eq bool) {
	defer func() {
		if recover() != nil {
			eq = false
		}
	}()
	return a == b
}

// isNil reports whether n is nil, including a nil pointer in an interface.
func isNil(n any) bool {
	if n == nil {
		return true
	}
	switch v := reflect.ValueOf(n); v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Func, reflect.Chan, reflect.Slice, reflect.Interface:
		return v.IsNil()
	}
	return false
}

// Quorum returns how many nodes must agree for a lock to be held:
// len(nodes)/2 + 1.
func (r *Redlock) Quorum() int { return r.quorum }

// Lock acquires the lock on key with context.Background(); see LockContext.
// With the default options it gives up after RetryLimit (32) retries, about
// 4 seconds; a job that must wait for the lock wants WithRetryLimit(-1) and
// a context.
func (r *Redlock) Lock(key, value string, opts ...LockOpt) (*Lock, error) {
	return r.LockContext(context.Background(), key, value, opts...)
}

// LockContext acquires the lock on key. The value identifies the holder: an
// empty value asks for a generated one (16 random bytes, hex-encoded); a
// given value must be unique to its holder. Every attempt stores a value
// that no earlier attempt stored, so that a late message of an earlier
// attempt can never touch a later one's key: the given value followed by
// "." and 16 hex digits, or a fresh generated value. Lock.Value returns
// what the successful attempt stored.
//
// An attempt fans out to every node in parallel and succeeds when a
// majority granted it with validity left; a failed attempt is undone on
// every node it may have written to, and retried after RetryInterval plus
// jitter, up to RetryLimit times (-1: until ctx ends). dlock is not
// reentrant: a second Lock of a held key fails, whatever its value, and
// leaves the holder intact.
//
// Errors: ErrInvalidConfig for a bad argument or option (no node is
// contacted); ErrNotAcquired, joined with each node's *NodeError, when the
// retries are exhausted, or at once when errors that cannot heal (a wrong
// password, a read-only replica) leave no majority; when ctx ends first, an
// error wrapping both ErrNotAcquired and ctx.Err(), joined with the node
// errors of the last attempt.
func (r *Redlock) LockContext(ctx context.Context, key, value string, opts ...LockOpt) (*Lock, error) {
	return r.lock(ctx, key, value, opts, true)
}

// TryLock makes one attempt to acquire the lock on key, with no retries,
// and otherwise behaves as LockContext.
func (r *Redlock) TryLock(ctx context.Context, key, value string, opts ...LockOpt) (*Lock, error) {
	return r.lock(ctx, key, value, opts, false)
}

// params are the resolved settings of one lock.
type params struct {
	LockConfig
	nodeTimeout time.Duration
	nodeKey     string // the key with the Redlock's prefix, as stored on the nodes
	ext         bool   // calls go through Fencer (fencing or the restart guard)
}

func (r *Redlock) lock(ctx context.Context, key, value string, opts []LockOpt, retry bool) (*Lock, error) {
	if ctx == nil {
		return nil, invalid("ctx", "nil", "must not be nil")
	}
	if key == "" {
		return nil, invalid("key", `""`, "must not be empty")
	}
	cfg, err := r.defaults.apply(opts).resolve()
	if err != nil {
		return nil, err
	}
	if cfg.Fencing {
		for i, f := range r.fencers {
			if f == nil {
				return nil, invalid("nodes["+strconv.Itoa(i)+"]", fmt.Sprintf("%T", r.nodes[i]),
					"WithFencing needs every node to implement dlock.Fencer")
			}
		}
	}
	p := params{LockConfig: cfg, nodeTimeout: r.nodeTimeout, nodeKey: r.prefix + key, ext: cfg.Fencing || r.guard > 0}
	if p.nodeTimeout == 0 {
		p.nodeTimeout = max(cfg.TTL/20, minNodeTimeout)
	}
	if err := ctx.Err(); err != nil {
		return nil, notAcquiredCtx(key, err)
	}

	// w is this call's place in the Redlock's queue for the key (wakeHub),
	// taken before the first attempt. The nodes are watched from the first
	// failed attempt on (or once two calls queue for the key), so an
	// uncontended Lock opens no subscription; a release between that
	// attempt and the start of the watch costs one poll interval.
	var w *waiter
	ln := make(lanes, len(r.nodes)) // this lock's call history per node
	var lastErrs []error            // the node errors of the last attempt that had any
	callStart := r.clock.Now()
	var wt waiting
	got := false
	defer func() {
		w.stop(got)
		if !got {
			r.leave(ctx, p, ln, wt) // a waiter that gave up
		}
	}()
	// Earlier Lock calls of this Redlock that wait for the key go first:
	// only the first of the queue tries the nodes. TryLock does not queue.
	if retry {
		w = r.wake.wait(p.nodeKey, callStart)
	} else if r.wake.queued(p.nodeKey) {
		return nil, fmt.Errorf("%w: %s: other Lock calls of this Redlock wait for the key", ErrNotAcquired, quoteKey(key))
	}
	for attempt := 1; ; attempt++ {
		if n := w.ahead(); n > 0 {
			// Not first: wait for the turn, which is not an attempt. The
			// wait is bounded by the time the retries could have taken.
			attempt--
			poll := addSat(cfg.RetryInterval, r.jitter(cfg.RetryJitter))
			if err := r.awaitTurn(ctx, key, w, n, turnDeadline(callStart, cfg, p.nodeTimeout), poll); err != nil {
				return nil, errors.Join(append([]error{err}, lastErrs...)...)
			}
			continue
		}
		res, err := r.try(ctx, key, value, p, ln, &wt, w.earliest(callStart), retry, cfg)
		if err != nil {
			return nil, err
		} else if res.lock != nil {
			got = true
			return res.lock, nil
		}
		if res.t.ctxErr != nil {
			// The context ended in the middle of a round: keep what the
			// round saw, and what the attempt before it saw.
			errs := append([]error{notAcquiredCtx(key, res.t.ctxErr)}, res.t.errs...)
			for _, e := range lastErrs {
				if ne, ok := e.(*NodeError); ok {
					errs = append(errs, &NodeError{Node: ne.Node, Err: fmt.Errorf("in the attempt before: %w", ne.Err)})
				}
			}
			return nil, errors.Join(errs...)
		}
		if len(res.t.errs) > 0 {
			lastErrs = res.t.errs
		}
		if res.t.hopeless() {
			return nil, fmt.Errorf("%w (not retried: the errors of a majority cannot heal by retrying)", res.err)
		}
		if !retry || (cfg.RetryLimit >= 0 && attempt > cfg.RetryLimit) {
			return nil, res.err
		}
		w.watch()
		wait := addSat(cfg.RetryInterval, r.jitter(cfg.RetryJitter))
		if !res.sentAny && lanesBusy(&res.t) {
			// Every node was still busy with this lock's own earlier calls:
			// give them a node timeout rather than spin.
			wait = max(wait, p.nodeTimeout)
		}
		if wait > 0 {
			timer := r.clock.Timer(wait)
			select {
			case <-timer.C:
			case <-w.wakeC():
				// Released on a node, or this call's turn came: retry now
				// rather than at the poll.
				timer.Stop()
			case <-ctx.Done():
				timer.Stop()
				return nil, errors.Join(notAcquiredCtx(key, ctx.Err()), res.err)
			}
		} else if ctx.Err() != nil {
			return nil, errors.Join(notAcquiredCtx(key, ctx.Err()), res.err)
		}
	}
}

// turnDeadline is when a Lock call that started at start and waits behind
// earlier calls of the Redlock gives up: after as long as its retries could
// have taken, every attempt a node timeout long. The zero time: never
// (RetryLimit -1).
func turnDeadline(start time.Time, cfg LockConfig, nodeTimeout time.Duration) time.Time {
	if cfg.RetryLimit < 0 {
		return time.Time{}
	}
	per := addSat(addSat(cfg.RetryInterval, cfg.RetryJitter), nodeTimeout)
	n := time.Duration(cfg.RetryLimit) + 1
	if per > math.MaxInt64/n {
		return time.Time{}
	}
	return start.Add(per * n)
}

// awaitTurn waits, for a Lock call on key with n earlier calls of the
// Redlock ahead of it in w's queue, until it is first, ctx ends, or the
// deadline (zero: none) passes. It looks again at every poll interval, and
// at once when woken; poll is the call's retry interval with jitter.
func (r *Redlock) awaitTurn(ctx context.Context, key string, w *waiter, n int, deadline time.Time, poll time.Duration) error {
	ahead := fmt.Sprintf("%d earlier Lock calls of this Redlock wait for the key", n)
	if n == 1 {
		ahead = "an earlier Lock call of this Redlock waits for the key"
	}
	wait := max(poll, time.Millisecond)
	if !deadline.IsZero() {
		left := deadline.Sub(r.clock.Now())
		if left <= 0 {
			return fmt.Errorf("%w: %s: %s, and this one has waited as long as its retries allow", ErrNotAcquired, quoteKey(key), ahead)
		}
		wait = min(wait, left)
	}
	timer := r.clock.Timer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-w.wakeC():
	case <-ctx.Done():
		return fmt.Errorf("%w (%s)", notAcquiredCtx(key, ctx.Err()), ahead)
	}
	return nil
}

// try makes one attempt of a Lock call that started at callStart, taking
// the call's name in the nodes' queue (wt) at the first, and undoes the
// attempt where it failed. The error is for failures that end the call at
// once (no random value could be drawn); the attempt's own failure is in
// the result.
func (r *Redlock) try(ctx context.Context, key, value string, p params, ln lanes, wt *waiting, callStart time.Time, retry bool, cfg LockConfig) (attemptResult, error) {
	stored, err := r.attemptValue(value)
	if err != nil {
		return attemptResult{}, err
	}
	if r.allFencers {
		// Queue on the nodes: a free key goes to the call that has waited
		// longest, so a holder that locks again, or a faster peer, cannot
		// take it from a waiter. TryLock does not wait, but does not jump
		// the queue either (it is not remembered).
		if wt.id == "" {
			// The call's name: the random end of its first attempt's
			// value (at least 16 hex digits), unique among the key's
			// waiters.
			wt.id = stored[len(stored)-16:]
			if retry {
				wt.ttl = 2*addSat(cfg.RetryInterval, cfg.RetryJitter) + 2*p.nodeTimeout
			}
		}
		wt.waited = max(0, r.clock.Since(callStart))
	}
	r.settle(ctx, ln, p.nodeTimeout)
	res := r.attempt(ctx, key, stored, p, ln, *wt)
	if res.lock != nil {
		return res, nil
	}
	// Undo the attempt where it may have written (each release call sees
	// its own node's outcome), each release after that node's own calls,
	// so that a late grant is undone too. The releases run in the
	// background; the next attempt queues after them.
	if res.sentAny {
		rd := r.releaseRound(ctx, p, stored, ln, res.sent)
		rd.undo = true
		r.start(rd)
	}
	if r.log.Enabled(ctx, slog.LevelDebug) {
		r.log.DebugContext(ctx, "dlock: acquire attempt failed", "key", logKey(key),
			"ok", res.t.ok, "refused", res.t.refused, "failed", res.t.failed, "pending", res.t.pending())
	}
	if res.t.guarded > 0 && r.log.Enabled(ctx, slog.LevelInfo) {
		r.log.InfoContext(ctx, "dlock: nodes refused by their restart guard", "key", logKey(key), "nodes", guardedNodes(&res.t))
	}
	return res, nil
}

// settle waits, at most d or until ctx ends, until every lane of the lock
// can take a call: an acquire queued behind two calls that have not ended
// (an earlier attempt's call, decided without it, and its undo) is not
// sent, and an attempt made at once, say when woken by a release, would
// fail on those nodes for no other reason.
func (r *Redlock) settle(ctx context.Context, ln lanes, d time.Duration) {
	for i := range ln {
		c := ln[i].prev
		if c.ended() {
			continue
		}
		// No longer than the call's own budget: a call that outlived it
		// ignores its deadline (a hung node behind a client that does not
		// cut calls short), and waiting for it before every attempt would
		// only slow the waiter down.
		left := c.sentAt.Add(d).Sub(r.clock.Now())
		if left <= 0 {
			continue
		}
		timer := r.clock.Timer(left)
		select {
		case <-c.done:
			timer.Stop()
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return
		}
	}
}

// leave makes the Lock call named wt leave the queue of every node that may
// still remember it (its lanes say so), each after the lock's earlier calls
// on that node, in the background: a waiter that got the key, or gave up,
// must not keep others from the key until the nodes forget it.
func (r *Redlock) leave(ctx context.Context, p params, ln lanes, wt waiting) {
	if wt.id == "" {
		return
	}
	var only []bool
	for i := range ln {
		if ln[i].queued && r.queues[i] != nil {
			if only == nil {
				only = make([]bool, len(ln))
			}
			only[i] = true
		}
	}
	if only == nil {
		return
	}
	r.start(round{
		lanes:   ln,
		must:    true,
		only:    only,
		callCtx: context.WithoutCancel(ctx),
		decide:  p.nodeTimeout,
		budget:  p.nodeTimeout,
		op:      opLeave,
		key:     p.nodeKey,
		wait:    wt,
	})
}

// lanesBusy reports whether some node was not sent the round's call
// because this lock's earlier calls to it had not ended.
func lanesBusy(t *tally) bool {
	for i, rep := range t.replies {
		if _, ok := rep.err.(*busyError); ok && t.seen[i] {
			return true
		}
	}
	return false
}

// guardedNodes lists the nodes that the restart guard made refuse.
func guardedNodes(t *tally) []int {
	var ns []int
	for i, rep := range t.replies {
		if t.seen[i] && rep.guarded {
			ns = append(ns, i)
		}
	}
	return ns
}

// notAcquiredCtx is the error of a Lock call on key cut short by its
// context ending with err: both errors.Is(ErrNotAcquired) and errors.Is(err)
// hold.
func notAcquiredCtx(key string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrNotAcquired, quoteKey(key), err)
}

// waitSlack is how much longer another Lock call must have waited for a
// node to serve it first: more than the spread of network latencies and of
// clock rates over a wait, so that nodes agree on who waited longest.
const waitSlack = 10 * time.Millisecond

// waiting identifies a Lock call that waits for its key, for the nodes'
// queue (Request.Waiter); the zero value is no waiter.
type waiting struct {
	id     string
	waited time.Duration
	ttl    time.Duration
}

// attemptResult is the outcome of one acquire attempt.
type attemptResult struct {
	lock    *Lock
	t       tally  // the acquire round's replies
	sent    []bool // the nodes the acquire was sent to: undone on failure where it may have written
	sentAny bool   // the acquire was sent to at least one node
	err     error
}

// attempt makes one acquire round, and with fencing takes the token. On
// failure it says which nodes to undo.
func (r *Redlock) attempt(ctx context.Context, key, value string, p params, ln lanes, wt waiting) attemptResult {
	start := r.clock.Now()
	var won *atomic.Bool
	if wt.id != "" && wt.ttl > 0 {
		won = new(atomic.Bool)
	}
	t, sent := r.fanout(ctx, round{
		won:     won,
		wait:    wt,
		lanes:   ln,
		callCtx: ctx,
		decide:  p.nodeTimeout,
		budget:  p.nodeTimeout,
		op:      opAcquire,
		key:     p.nodeKey,
		value:   value,
		ttl:     p.TTL,
		ext:     p.ext || wt.id != "",
		fencing: p.Fencing,
		guard:   r.guard,
	})
	res := attemptResult{t: t, sent: sent, sentAny: slices.Contains(sent, true)}
	fail := func(format string, args ...any) attemptResult {
		res.err = t.join(fmt.Errorf("%w: %s: "+format, append([]any{ErrNotAcquired, quoteKey(key)}, args...)...))
		return res
	}
	if t.ctxErr != nil {
		res.err = t.join(notAcquiredCtx(key, t.ctxErr))
		return res
	}
	if !t.won() {
		return fail("%s", &t)
	}
	var token uint64
	if p.Fencing {
		var err error
		if token, err = r.fence(ctx, key, value, p, ln, &t); err != nil {
			res.err = err
			return res
		}
	}
	elapsed := r.clock.Since(start)
	if elapsed < 0 {
		return fail("%s, but the clock stepped back by %v during the round: its validity cannot be measured", &t, -elapsed)
	}
	if left := validity(p.TTL, elapsed, p.DriftFactor); left <= 0 {
		return fail("%s, but no validity left (%v after drift)", &t, left)
	}
	if won != nil {
		won.Store(true)
		// A node forgets a waiter it grants the key. An acquire that has
		// not ended yet leaves by itself if it is not granted (won); the
		// ones that ended refused or failed are left here.
		for i := range ln {
			if c := ln[i].acq; ln[i].queued && (c == nil || !c.ended() || c.granted) {
				ln[i].queued = false
			}
		}
		r.leave(ctx, p, ln, wt)
	}
	return attemptResult{lock: newLock(r, key, value, token, p, validUntil(start, p.TTL, p.DriftFactor), ln)}
}

// releaseRound returns the round that deletes the lock's key, where it
// still holds value, on the nodes marked in only (all when nil), each after
// the lock's previous call there. The calls run even once ctx has ended, and
// each may take up to the TTL (at least the node timeout): past the TTL the
// key is gone anyway, and until then a release that gives up early, say while
// waiting for a pooled connection to a slow node, would leave the key behind.
func (r *Redlock) releaseRound(ctx context.Context, p params, value string, ln lanes, only []bool) round {
	return round{
		lanes:   ln,
		must:    true,
		only:    only,
		callCtx: context.WithoutCancel(ctx),
		decide:  p.nodeTimeout,
		budget:  max(p.TTL, p.nodeTimeout),
		op:      opRelease,
		key:     p.nodeKey,
		value:   value,
		ext:     p.ext,
	}
}

// addSat returns a+b for non-negative durations, saturating at the largest
// Duration instead of wrapping around.
func addSat(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// readRand fills b from the Redlock's source, which need not be safe for
// concurrent use.
func (r *Redlock) readRand(b []byte) error {
	r.randMu.Lock()
	defer r.randMu.Unlock()
	_, err := io.ReadFull(r.rand, b)
	return err
}

// attemptValue returns the value one attempt stores: for a given value, the
// value, ".", and 8 random bytes in hex; else 16 random bytes in hex.
func (r *Redlock) attemptValue(given string) (string, error) {
	var b [16]byte
	n := len(b)
	if given != "" {
		n = 8
	}
	if err := r.readRand(b[:n]); err != nil {
		return "", fmt.Errorf("dlock: generate lock value: %w", err)
	}
	if given == "" {
		return hex.EncodeToString(b[:]), nil
	}
	return given + "." + hex.EncodeToString(b[:n]), nil
}

// jitter returns a random duration in [0, bound), or 0 when bound ≤ 0 or
// the source fails.
func (r *Redlock) jitter(bound time.Duration) time.Duration {
	if bound <= 0 {
		return 0
	}
	var b [8]byte
	if err := r.readRand(b[:]); err != nil {
		return 0
	}
	return time.Duration(binary.LittleEndian.Uint64(b[:]) % uint64(bound))
}
