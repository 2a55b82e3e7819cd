package dlock

import (
	"errors"
	"fmt"
)

// reply is what one node's call returned.
type reply struct {
	node    int
	ok      bool
	guarded bool   // refused by the node's restart guard
	counter uint64 // the key's fencing counter, where the node reported one
	err     error
}

// tally counts the replies of one round and knows when its outcome is
// decided: a majority said ok, or so many refused or failed that a majority
// can no longer say ok.
type tally struct {
	n, quorum int
	ok        int     // nodes that said ok
	refused   int     // nodes that answered ok=false (including guarded ones)
	guarded   int     // of those, nodes whose restart guard refused
	failed    int     // nodes that returned an error or did not answer in time
	permanent int     // of those, nodes whose error cannot heal by retrying
	errs      []error // one *NodeError per failed or guarded node
	ctxErr    error   // set when the caller's context ended before the decision
	replies   []reply // by node; valid where seen is set
	seen      []bool
}

func newTally(n, quorum int) tally {
	return tally{n: n, quorum: quorum, replies: make([]reply, n), seen: make([]bool, n)}
}

func (t *tally) add(r reply) {
	if t.seen[r.node] {
		return
	}
	t.seen[r.node] = true
	t.replies[r.node] = r
	switch {
	case r.err != nil:
		t.failed++
		if isPermanent(r.err) {
			t.permanent++
		}
		t.errs = append(t.errs, &NodeError{Node: r.node, Err: r.err})
	case r.ok:
		t.ok++
	default:
		t.refused++
		if r.guarded {
			t.guarded++
			t.errs = append(t.errs, &NodeError{Node: r.node, Err: ErrRestartGuard})
		}
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

// hopeless reports whether errors that cannot heal by retrying, together
// with refusals by nodes whose state a retry cannot change soon, leave no
// majority: then retrying is pointless.
func (t *tally) hopeless() bool { return t.permanent > t.n-t.quorum }

// join returns head joined with every node's *NodeError.
func (t *tally) join(head error) error {
	return errors.Join(append([]error{head}, t.errs...)...)
}

// pending is the number of nodes that have not answered.
func (t *tally) pending() int { return t.n - t.ok - t.refused - t.failed }

// String summarises the counts for error messages and logs.
func (t *tally) String() string {
	s := fmt.Sprintf("%d ok, %d refused, %d failed, %d pending of %d nodes (quorum %d)",
		t.ok, t.refused, t.failed, t.pending(), t.n, t.quorum)
	if t.guarded > 0 {
		s += fmt.Sprintf("; %d refused by the restart guard", t.guarded)
	}
	return s
}
