package dlock

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// opKind names the node operation of a round.
type opKind uint8

const (
	opAcquire opKind = iota
	opExtend
	opFence
	opRelease
	opLeave
)

func (o opKind) String() string {
	switch o {
	case opAcquire:
		return "acquire"
	case opExtend:
		return "extend"
	case opFence:
		return "fence"
	case opLeave:
		return "leave"
	default:
		return "release"
	}
}

// round is one operation fanned out to the nodes of a lock.
type round struct {
	lanes lanes
	// must marks a release: it is queued on every lane it is sent to,
	// however long the queue. Other calls are not sent on a lane whose last
	// call is still waiting for the one before it, and count as failed.
	must bool
	// undo marks the release of a failed attempt: each call is made only
	// when the call before it on the lane (the attempt's) may have written,
	// as that call's own outcome says once it has ended. Deciding there,
	// rather than from the replies counted when the round was decided,
	// keeps the decision independent of which replies had arrived by then.
	undo bool
	// only, when not nil, limits the round to the nodes marked true.
	only []bool
	// preset, with only, marks nodes outside the round that fanout counts
	// as having said ok (a fence round: nodes already at the token); the
	// other nodes outside the round count as failed.
	preset []bool
	// callCtx is the parent of every node call.
	callCtx context.Context
	// decide bounds the wait for the replies, on the Redlock's clock.
	decide time.Duration
	// budget bounds the node calls, from the start of the round.
	budget time.Duration

	op         opKind
	key, value string
	ttl        time.Duration
	// ext makes the calls through Fencer, with guard and token.
	ext bool
	// announce makes a release through Notifier.ReleaseNotify where the
	// node has it: the release of a held lock, which waiters want to hear.
	announce bool
	fencing  bool          // acquire: advance and return the counter
	guard    time.Duration // the restart guard, when ext
	token    uint64        // extend: the lock's token; fence: the token to set
	wait     waiting       // acquire, leave: the waiting Lock call, for the nodes' queue
	// won, for an acquire with a waiter, is set once the attempt got the
	// lock: a call that ends afterwards without a grant leaves the queue.
	won *atomic.Bool
}

// flight is what the calls of one round share. One allocation holds it and
// every call's lane entry, to keep the cost of a round low.
type flight struct {
	r       *Redlock
	rd      round
	ctx     context.Context // the calls' context: callCtx with the budget as deadline
	cancel  context.CancelFunc
	running atomic.Int32 // calls not yet returned; the last cancels ctx
	replies chan reply   // buffered: a reply nobody reads never blocks
	sent    []bool       // which nodes the call was sent to
	calls   []call
}

// start launches rd's operation on the nodes, one call per node handed to a
// worker, each after the last call on its lane, updating rd.lanes in place.
// The calls share one context whose deadline is rd.budget from now; it is
// cancelled once the last of them has returned.
func (r *Redlock) start(rd round) *flight {
	n := len(r.nodes)
	f := &flight{r: r, rd: rd, replies: make(chan reply, n)}
	f.sent = make([]bool, n)
	count := 0
	now := r.clock.Now()
	for i := range n {
		ln := &rd.lanes[i]
		switch {
		case rd.only != nil && !rd.only[i]:
			// not part of this round
		case !rd.must && !ln.prev.ended():
			b := &busyError{last: ln.lastErr, op: ln.prev.op}
			if !ln.prev.sentAt.IsZero() {
				b.for_ = now.Sub(ln.prev.sentAt)
			}
			f.replies <- reply{node: i, err: b}
		case rd.op == opAcquire && r.inflight[i].Load() >= r.maxInFlight[i]:
			f.replies <- reply{node: i, err: &boundError{bound: r.maxInFlight[i], last: ln.lastErr}}
		case rd.op == opRelease && ln.value != rd.value:
			// No call with this value was sent to the node (the acquire was
			// not sent, say at the in-flight bound): it does not hold the
			// key, and a node that does not answer gets no call to pile up.
			f.replies <- reply{node: i}
		default:
			f.sent[i] = true
			r.inflight[i].Add(1)
			count++
		}
	}
	if count == 0 {
		return f
	}
	f.ctx, f.cancel = r.clock.WithTimeout(rd.callCtx, rd.budget)
	f.running.Store(int32(count))
	f.calls = make([]call, n)
	for i := range n {
		if !f.sent[i] {
			continue
		}
		c := &f.calls[i]
		ln := &rd.lanes[i]
		c.done, c.op, c.sentAt, c.lastErr = make(chan struct{}), rd.op, now, ln.lastErr
		prev := ln.last
		ln.prev, ln.last = ln.last, c
		switch {
		case rd.op == opLeave:
			ln.queued = false
		case rd.op == opAcquire && rd.wait.id != "" && rd.wait.ttl > 0:
			ln.queued = true
			ln.value = rd.value
			ln.acq = c
		case rd.op != opRelease:
			ln.value = rd.value
		}
		f.r.dispatch(task{f: f, i: i, prev: prev})
	}
	return f
}

// run makes the call to node i, after prev (the lane's previous call).
//
// A call ends, and closes its done channel, only after prev has ended, so
// that "ended" covers every earlier call on the lane: a call that gives up
// waiting still waits for prev before it ends, or the next call on the lane
// could overtake prev. A release waits for prev however long it takes
// (prev is bounded by its own deadline, or by the client's timeouts), and
// gets a budget of its own if the round's ran out meanwhile, so that it is
// always sent.
//
// Where nothing follows on the node, the call ends before its reply is
// delivered, so that the next attempt, which may start as soon as the
// reply is counted, finds the lane free rather than busy.
func (f *flight) run(i int, prev *call) {
	c := &f.calls[i]
	ended := false
	end := func() {
		ended = true
		close(c.done)
	}
	defer func() {
		f.r.inflight[i].Add(-1)
		if !ended {
			close(c.done)
		}
		if f.running.Add(-1) == 0 {
			f.cancel()
		}
	}()
	ctx := f.ctx
	if prev != nil {
		if f.rd.must {
			<-prev.done
			if ctx.Err() != nil {
				var cancel context.CancelFunc
				ctx, cancel = f.r.clock.WithTimeout(f.rd.callCtx, f.rd.budget)
				defer cancel()
			}
		} else {
			select {
			case <-prev.done:
			case <-ctx.Done():
				// Never sent: the round's deadline passed (or the caller's
				// context ended) while the call before it still ran.
				var err error = &busyError{op: prev.op, for_: f.r.clock.Since(prev.sentAt), last: c.lastErr}
				if cerr := f.rd.callCtx.Err(); cerr != nil {
					err = cerr
				}
				c.failed = true
				f.replies <- reply{node: i, err: err}
				<-prev.done
				c.unknown = prev.unknown
				return
			}
		}
	}
	earlier := prev != nil && prev.unknown
	if f.rd.undo && prev != nil && !prev.wrote {
		// The attempt's call changed nothing on this node: nothing to undo.
		c.unknown = earlier
		end()
		f.replies <- reply{node: i}
		return
	}
	rep := f.call(ctx, i)
	if rep.err != nil {
		rep.err = f.cutShort(ctx, rep.err)
	}
	c.failed = rep.err != nil
	c.granted = rep.ok && f.rd.op == opAcquire
	c.wrote = rep.ok || f.rd.op == opFence || (rep.err != nil && !isNotSent(rep.err))
	c.unknown = earlier || (rep.err != nil && !isNotSent(rep.err))
	again := f.rd.must && earlier && f.rd.op == opRelease
	if !again {
		end()
	}
	f.replies <- rep
	if f.rd.won != nil && !c.granted && f.rd.won.Load() {
		// The attempt got the lock, but this node refused it or did not
		// answer in time, remembering the waiter: leave its queue. (The
		// replies counted before the attempt was decided are left by
		// the Lock call itself; leaving twice is harmless.)
		f.leave(i)
	}
	if again {
		// A call before this release had an unknown outcome: it may still
		// reach the node after this release, say on another pooled
		// connection once its own was cut at a deadline, and set the key
		// again. Release once more, a node timeout later.
		t := f.r.clock.Timer(f.rd.decide)
		select {
		case <-t.C:
			_ = f.call(ctx, i)
		case <-ctx.Done():
			t.Stop()
		}
	}
}

// leave makes the waiter of the round leave node i's queue, within a
// budget of its own.
func (f *flight) leave(i int) {
	q := f.r.queues[i]
	if q == nil {
		return
	}
	ctx, cancel := f.r.clock.WithTimeout(context.WithoutCancel(f.rd.callCtx), f.rd.budget)
	defer cancel()
	_ = q.Leave(ctx, Request{Key: f.rd.key, Waiter: f.rd.wait.id})
}

// cutShort turns the error of a call that ran into the round's own deadline
// into a node timeout, so that it is not mistaken for the caller's context
// ending; err is what the call returned (nil: it was never sent).
func (f *flight) cutShort(ctx context.Context, err error) error {
	if ctx.Err() == nil || f.rd.callCtx.Err() != nil {
		return err // not the round's own deadline
	}
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return err // the node's own answer, which came as the deadline passed
	}
	return &nodeTimeout{after: f.rd.budget}
}

// call runs the round's operation on node i, turning a panic in a Node
// implementation into an error so that one faulty backend cannot crash the
// caller's process.
func (f *flight) call(ctx context.Context, i int) (rep reply) {
	rep.node = i
	defer func() {
		if p := recover(); p != nil {
			rep = reply{node: i, err: fmt.Errorf("node panicked: %v", p)}
		}
	}()
	rd := &f.rd
	node := f.r.nodes[i]
	if rd.op == opLeave {
		rep.err = f.r.queues[i].Leave(ctx, Request{Key: rd.key, Waiter: rd.wait.id})
		rep.ok = rep.err == nil
		return rep
	}
	if rd.op == opRelease && rd.announce && f.r.notifiers[i] != nil {
		rep.ok, rep.err = f.r.notifiers[i].ReleaseNotify(ctx, rd.key, rd.value)
		if rep.err != nil {
			rep.ok = false
		}
		return rep
	}
	if rd.ext || rd.op == opFence {
		fn := f.r.fencers[i]
		req := Request{Key: rd.key, Value: rd.value, TTL: rd.ttl, Guard: rd.guard, Fencing: rd.fencing, Token: rd.token}
		if rd.op == opAcquire && rd.wait.id != "" {
			req.Waiter, req.Waited, req.WaitTTL, req.WaitSlack = rd.wait.id, rd.wait.waited, rd.wait.ttl, waitSlack
		}
		var res Reply
		var err error
		switch rd.op {
		case opAcquire:
			res, err = fn.AcquireFenced(ctx, req)
		case opExtend:
			res, err = fn.ExtendFenced(ctx, req)
		case opFence:
			res, err = fn.Fence(ctx, req)
		default:
			res.OK, err = fn.Release(ctx, rd.key, rd.value)
		}
		if err != nil {
			return reply{node: i, err: err}
		}
		return reply{node: i, ok: res.OK, guarded: res.Guarded && !res.OK, counter: res.Counter}
	}
	switch rd.op {
	case opAcquire:
		rep.ok, rep.err = node.Acquire(ctx, rd.key, rd.value, rd.ttl)
	case opExtend:
		rep.ok, rep.err = node.Extend(ctx, rd.key, rd.value, rd.ttl)
	default:
		rep.ok, rep.err = node.Release(ctx, rd.key, rd.value)
	}
	if rep.err != nil {
		rep.ok = false
	}
	return rep
}

// fanout runs rd on every node in parallel and returns as soon as the
// outcome is decided; or once rd.decide has passed on the Redlock's clock,
// counting the nodes that have not answered as failed; or when ctx ends,
// with tally.ctxErr set. It never waits on a hung call: calls still running
// go on in the background. It returns which nodes the call was sent to.
//
// The calls run on workers rather than an errgroup: a round must not Wait
// for every node, and the lanes already say when each call ended.
func (r *Redlock) fanout(ctx context.Context, rd round) (tally, []bool) {
	t := newTally(len(r.nodes), r.quorum)
	f := r.start(rd)
	// The calls' own deadline is the decision's when the two bounds agree,
	// which saves a timer; otherwise a timer of its own.
	var expired <-chan struct{}
	var timeout <-chan time.Time
	if f.ctx != nil && rd.decide == rd.budget {
		expired = f.ctx.Done()
	} else {
		timer := r.clock.Timer(rd.decide)
		defer timer.Stop()
		timeout = timer.C
	}
	for i := range r.nodes {
		if rd.only != nil && !rd.only[i] {
			if rd.preset != nil && rd.preset[i] {
				t.add(reply{node: i, ok: true})
			} else {
				t.seen[i] = true
				t.failed++
			}
		}
	}
	count := func(rep reply) {
		t.add(rep)
		if rep.err != nil && !isNotSent(rep.err) { // a real error of the node, not ours
			rd.lanes[rep.node].lastErr = rep.err
		}
	}
	for !t.decided() && t.pending() > 0 {
		select {
		case rep := <-f.replies:
			count(rep)
			continue
		case <-ctx.Done():
			t.ctxErr = ctx.Err()
			t.addUnanswered(f, errNoReplyBeforeCtx)
			return t, f.sent
		case <-expired:
		case <-timeout:
		}
		// The deadline passed, or every call returned and cancelled the
		// context: count what has arrived, then the rest as timed out.
		if ctx.Err() != nil {
			t.ctxErr = ctx.Err()
			t.addUnanswered(f, errNoReplyBeforeCtx)
			return t, f.sent
		}
		for drained := false; !drained; {
			select {
			case rep := <-f.replies:
				count(rep)
			default:
				drained = true
			}
		}
		for i := range t.seen {
			if !t.seen[i] {
				err := &nodeTimeout{after: rd.decide}
				t.add(reply{node: i, err: err})
				rd.lanes[i].lastErr = err
			}
		}
	}
	return t, f.sent
}

// errNoReplyBeforeCtx names a node whose reply had not come when the
// caller's context ended.
var errNoReplyBeforeCtx = errors.New("no reply yet when the caller's context ended")

// addUnanswered records, for an error report, the nodes of f that were
// sent a call and have not answered.
func (t *tally) addUnanswered(f *flight, err error) {
	for i, s := range f.sent {
		if s && !t.seen[i] {
			t.add(reply{node: i, err: err})
		}
	}
}
