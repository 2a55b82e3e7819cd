package dlock

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
)

// reply is what one node's call returned.
type reply struct {
	node int
	ok   bool
	err  error
}

// tally counts the replies of one round and knows when its outcome is
// decided: a majority said ok, or so many refused or failed that a majority
// can no longer say ok.
type tally struct {
	n, quorum int
	ok        int     // nodes that said ok
	refused   int     // nodes that answered ok=false
	failed    int     // nodes that returned an error or did not answer in time
	errs      []error // one *NodeError per failed node
	ctxErr    error   // set when the caller's context ended before the decision
}

func (t *tally) add(r reply) {
	switch {
	case r.err != nil:
		t.failed++
		t.errs = append(t.errs, &NodeError{Node: r.node, Err: r.err})
	case r.ok:
		t.ok++
	default:
		t.refused++
	}
}

// won reports whether a majority said ok.
func (t *tally) won() bool { return t.ok >= t.quorum }

// decided reports whether the outcome can no longer change.
func (t *tally) decided() bool {
	return t.won() || t.refused+t.failed > t.n-t.quorum
}

// refusedByMajority reports whether so many nodes refused (no longer held
// the value, or held another) that a majority can never say ok.
func (t *tally) refusedByMajority() bool { return t.refused > t.n-t.quorum }

// join returns head joined with every node's *NodeError.
func (t *tally) join(head error) error {
	return errors.Join(append([]error{head}, t.errs...)...)
}

// pending is the number of nodes that have not answered.
func (t *tally) pending() int { return t.n - t.ok - t.refused - t.failed }

// String summarises the counts for error messages and logs.
func (t *tally) String() string {
	return fmt.Sprintf("%d ok, %d refused, %d failed, %d pending of %d nodes (quorum %d)",
		t.ok, t.refused, t.failed, t.pending(), t.n, t.quorum)
}

// lane is one node's call history for one lock: its calls run one after
// another, so that a release never reaches the node before the acquire or
// extend it follows, however slow the node. A lane holds at most two calls
// that have not ended: a call that would queue behind a call that is itself
// still waiting is skipped instead (see round.must), so a hung node cannot
// pile up calls.
type lane struct {
	last *call // the last call queued here (nil: none)
	prev *call // the call before it
}

// call is one node call on a lane.
type call struct {
	done   chan struct{} // closed when the call has returned
	failed bool          // the call returned an error; written before done closes
}

// lanes are the lanes of one lock, one per node, owned by one goroutine at
// a time (the Lock call, then the Lock handle under its opMu).
type lanes []lane

// ended reports whether c is nil or has returned.
func (c *call) ended() bool {
	if c == nil {
		return true
	}
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// opKind names the node operation of a round.
type opKind uint8

const (
	opAcquire opKind = iota
	opExtend
	opRelease
)

// round is one operation fanned out to the nodes of a lock.
type round struct {
	lanes lanes
	// must marks a release: it is queued on every lane it is sent to,
	// however long the queue. Other calls are skipped on a lane whose last
	// call is still waiting for the one before it, and count as failed.
	must bool
	// only, when not nil, limits the round to the nodes marked true.
	only []bool
	// callCtx is the parent of every node call.
	callCtx context.Context
	// decide bounds the wait for the replies, on the Redlock's clock.
	decide time.Duration
	// budget bounds the node calls, from the start of the round.
	budget time.Duration

	op         opKind
	key, value string
	ttl        time.Duration
}

var errBusy = errors.New("skipped: this lock's previous calls to the node have not ended")

// flight is what the calls of one round share. One allocation holds it and
// every call's lane entry, to keep the cost of a round low.
type flight struct {
	r        *Redlock
	rd       round
	ctx      context.Context // the calls' context: callCtx with the budget as deadline
	cancel   context.CancelFunc
	running  atomic.Int32 // calls not yet returned; the last cancels ctx
	replies  chan reply   // buffered: a reply nobody reads never blocks
	sent     []bool       // which nodes the call was sent to
	answered []bool       // which nodes' replies fanout has counted
	calls    []call
}

// start launches rd's operation on the nodes, one call per node handed to a
// worker, each after the last call on its lane, updating rd.lanes in place.
// The calls share one context whose deadline is rd.budget from now; it is
// cancelled once the last of them has returned.
func (r *Redlock) start(rd round) *flight {
	n := len(r.nodes)
	f := &flight{r: r, rd: rd, replies: make(chan reply, n)}
	flags := make([]bool, 2*n)
	f.sent, f.answered = flags[:n:n], flags[n:]
	count := 0
	for i := range n {
		switch {
		case rd.only != nil && !rd.only[i]:
			// not part of this round
		case !rd.must && !rd.lanes[i].prev.ended():
			f.replies <- reply{node: i, err: errBusy}
		default:
			f.sent[i] = true
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
		c.done = make(chan struct{})
		ln := &rd.lanes[i]
		prev := ln.last
		ln.prev, ln.last = ln.last, c
		f.r.dispatch(task{f: f, i: i, prev: prev})
	}
	return f
}

// task is one node call of a flight, for a worker.
type task struct {
	f    *flight
	i    int
	prev *call
}

// workerIdle is how long a worker goroutine waits for its next call before
// it exits.
const workerIdle = 50 * time.Millisecond

// dispatch hands t to an idle worker of its node, or starts a new one. A
// worker runs calls one after another and exits after workerIdle without
// one, so goroutines do not outlive a burst by more than that. Reusing them
// spares a fresh goroutine's stack growth inside the client on every call,
// about a fifth of the CPU of a Lock+Release on local Redis nodes.
func (r *Redlock) dispatch(t task) {
	select {
	case r.idle[t.i] <- t:
	default:
		go r.work(t)
	}
}

// work runs t, then further calls for the same node until none comes for
// workerIdle.
func (r *Redlock) work(t task) {
	var timer *clock.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		t.f.run(t.i, t.prev)
		if timer == nil {
			timer = r.clock.Timer(workerIdle)
		} else {
			timer.Reset(workerIdle)
		}
		select {
		case t = <-r.idle[t.i]:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
			return
		}
	}
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
func (f *flight) run(i int, prev *call) {
	c := &f.calls[i]
	defer func() {
		close(c.done)
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
				c.failed = true
				f.replies <- reply{node: i, err: ctx.Err()}
				<-prev.done
				return
			}
		}
	}
	node := f.r.nodes[i]
	ok, err := f.call(ctx, node)
	c.failed = err != nil
	f.replies <- reply{node: i, ok: ok, err: err}
	if f.rd.must && prev != nil && prev.failed && !ok && err == nil {
		// The call before this release failed, so its outcome is unknown:
		// it may still reach the node after this release, say on another
		// pooled connection once its own was cut at a deadline. Release
		// once more, a node timeout later.
		t := f.r.clock.Timer(f.rd.decide)
		select {
		case <-t.C:
			_, _ = f.call(ctx, node)
		case <-ctx.Done():
			t.Stop()
		}
	}
}

// call runs the round's operation on node, turning a panic in a Node
// implementation into an error so that one faulty backend cannot crash the
// caller's process.
func (f *flight) call(ctx context.Context, node Node) (ok bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			ok, err = false, fmt.Errorf("node panicked: %v", p)
		}
	}()
	rd := &f.rd
	switch rd.op {
	case opAcquire:
		return node.Acquire(ctx, rd.key, rd.value, rd.ttl)
	case opExtend:
		return node.Extend(ctx, rd.key, rd.value, rd.ttl)
	default:
		return node.Release(ctx, rd.key, rd.value)
	}
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
	t := tally{n: len(r.nodes), quorum: r.quorum}
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
	answered := f.answered
	for !t.decided() && t.pending() > 0 {
		select {
		case rep := <-f.replies:
			answered[rep.node] = true
			t.add(rep)
			continue
		case <-ctx.Done():
			t.ctxErr = ctx.Err()
			return t, f.sent
		case <-expired:
		case <-timeout:
		}
		// The deadline passed, or every call returned and cancelled the
		// context: count what has arrived, then the rest as timed out.
		if ctx.Err() != nil {
			t.ctxErr = ctx.Err()
			return t, f.sent
		}
		for drained := false; !drained; {
			select {
			case rep := <-f.replies:
				answered[rep.node] = true
				t.add(rep)
			default:
				drained = true
			}
		}
		for i, a := range answered {
			if !a {
				t.add(reply{node: i, err: fmt.Errorf("no reply within %v: %w", rd.decide, context.DeadlineExceeded)})
			}
		}
	}
	return t, f.sent
}
