package dlock

import (
	"context"
	"fmt"
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

// round is one operation fanned out to every node.
type round struct {
	// after holds, per node, a channel closed when that node's previous
	// call in this lock's history has returned (nil: nothing to wait for).
	// A call never starts before it, so a release cannot overtake the
	// acquire it undoes, however slow the node.
	after []chan struct{}
	// callCtx is the parent of every node call; each call gets its own
	// timeout from the moment it starts.
	callCtx context.Context
	// timeout bounds each node call, and the wait for its reply.
	timeout time.Duration
	op      nodeOp
}

// start launches rd.op on every node, one goroutine per node, and returns
// per node a channel closed when that node's call has returned, and the
// channel on which every call's reply arrives (buffered, so a reply nobody
// reads never blocks).
func (r *Redlock) start(rd round) ([]chan struct{}, chan reply) {
	done := make([]chan struct{}, len(r.nodes))
	replies := make(chan reply, len(r.nodes))
	for i, node := range r.nodes {
		done[i] = make(chan struct{})
		var prev chan struct{}
		if rd.after != nil {
			prev = rd.after[i]
		}
		go func() {
			defer close(done[i])
			if prev != nil {
				select {
				case <-prev:
				case <-rd.callCtx.Done():
					replies <- reply{node: i, err: rd.callCtx.Err()}
					return
				}
			}
			cctx, cancel := r.clock.WithTimeout(rd.callCtx, rd.timeout)
			ok, err := callNode(cctx, node, rd.op)
			cancel()
			replies <- reply{node: i, ok: ok, err: err}
		}()
	}
	return done, replies
}

// fanout runs rd on every node in parallel and returns as soon as the
// outcome is decided; or once rd.timeout has passed on the Redlock's clock,
// counting the nodes that have not answered as failed; or when ctx ends,
// with tally.ctxErr set. It never waits on a hung call: calls still running
// go on in the background. It returns the per-node done channels of start.
//
// The goroutines are plain ones rather than an errgroup: a round must not
// Wait for every node, and the done channels already say when each ended.
func (r *Redlock) fanout(ctx context.Context, rd round) (tally, []chan struct{}) {
	t := tally{n: len(r.nodes), quorum: r.quorum}
	done, replies := r.start(rd)
	timer := r.clock.Timer(rd.timeout)
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
					t.add(reply{node: i, err: fmt.Errorf("no reply within %v: %w", rd.timeout, context.DeadlineExceeded)})
				}
			}
		case <-ctx.Done():
			t.ctxErr = ctx.Err()
			return t, done
		}
	}
	return t, done
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
