package dlock

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// nodeOp is one operation on one node, such as Acquire or Release.
type nodeOp func(ctx context.Context, n Node) (ok bool, err error)

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
	op     nodeOp
}

var errBusy = errors.New("skipped: this lock's previous calls to the node have not ended")

// start launches rd.op on the nodes, one goroutine per node, each after
// the last call on its lane, and returns the channel on which their replies
// arrive (buffered, so a reply nobody reads never blocks) and which nodes
// the call was sent to. It updates rd.lanes in place. The calls share one
// context whose deadline is rd.budget from now; it is cancelled once the
// last of them has returned.
func (r *Redlock) start(rd round) (chan reply, []bool) {
	replies := make(chan reply, len(r.nodes))
	sent := make([]bool, len(r.nodes))
	var send []int
	for i := range r.nodes {
		if rd.only != nil && !rd.only[i] {
			continue
		}
		if !rd.must && !rd.lanes[i].prev.ended() {
			replies <- reply{node: i, err: errBusy}
			continue
		}
		sent[i] = true
		send = append(send, i)
	}
	if len(send) == 0 {
		return replies, sent
	}
	cctx, cancel := r.clock.WithTimeout(rd.callCtx, rd.budget)
	var running atomic.Int32
	running.Store(int32(len(send)))
	for _, i := range send {
		ln := &rd.lanes[i]
		prev, c := ln.last, &call{done: make(chan struct{})}
		ln.prev, ln.last = ln.last, c
		node := r.nodes[i]
		go func() {
			defer close(c.done)
			defer func() {
				if running.Add(-1) == 0 {
					cancel()
				}
			}()
			if prev != nil {
				select {
				case <-prev.done:
				case <-cctx.Done():
					c.failed = true
					replies <- reply{node: i, err: cctx.Err()}
					return
				}
			}
			ok, err := callNode(cctx, node, rd.op)
			c.failed = err != nil
			replies <- reply{node: i, ok: ok, err: err}
			if rd.must && prev != nil && prev.failed && !ok && err == nil {
				// The call before this release failed, so its outcome is
				// unknown: it may still reach the node after this release,
				// say on another pooled connection once its own was cut at a
				// deadline. Release once more, a node timeout later.
				r.releaseAgain(cctx, node, rd)
			}
		}()
	}
	return replies, sent
}

// releaseAgain repeats a release on node once rd.decide has passed, unless
// ctx ends first.
func (r *Redlock) releaseAgain(ctx context.Context, node Node, rd round) {
	t := r.clock.Timer(rd.decide)
	defer t.Stop()
	select {
	case <-t.C:
		_, _ = callNode(ctx, node, rd.op)
	case <-ctx.Done():
	}
}

// fanout runs rd on every node in parallel and returns as soon as the
// outcome is decided; or once rd.timeout has passed on the Redlock's clock,
// counting the nodes that have not answered as failed; or when ctx ends,
// with tally.ctxErr set. It never waits on a hung call: calls still running
// go on in the background. It returns which nodes the call was sent to.
//
// The goroutines are plain ones rather than an errgroup: a round must not
// Wait for every node, and the lanes already say when each call ended.
func (r *Redlock) fanout(ctx context.Context, rd round) (tally, []bool) {
	t := tally{n: len(r.nodes), quorum: r.quorum}
	replies, sent := r.start(rd)
	timer := r.clock.Timer(rd.decide)
	defer timer.Stop()
	answered := make([]bool, len(r.nodes))
	for !t.decided() && t.pending() > 0 {
		select {
		case rep := <-replies:
			answered[rep.node] = true
			t.add(rep)
		case <-timer.C:
			for i, a := range answered {
				if !a {
					t.add(reply{node: i, err: fmt.Errorf("no reply within %v: %w", rd.decide, context.DeadlineExceeded)})
				}
			}
		case <-ctx.Done():
			t.ctxErr = ctx.Err()
			return t, sent
		}
	}
	return t, sent
}

// callNode runs op on n, turning a panic in a Node implementation into an
// error so that one faulty backend cannot crash the caller's process.
func callNode(ctx context.Context, n Node, op nodeOp) (ok bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			ok, err = false, fmt.Errorf("node panicked: %v", p)
		}
	}()
	return op(ctx, n)
}
