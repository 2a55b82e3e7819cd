package dlock

import "time"

// lane is one node's call history for one lock: its calls run one after
// another, so that a release never starts before the acquire or extend it
// follows has ended, however slow the node. A lane holds at most two calls
// that have not ended: a call that would queue behind a call that is itself
// still waiting is not sent (see round.must), so a hung node cannot pile up
// calls.
type lane struct {
	last *call // the last call queued here (nil: none)
	prev *call // the call before it
	// value is the value of the last acquire, extend or fence sent on this
	// lane: a release of any other value has nothing to delete on the node,
	// which no call with that value ever reached.
	value string
	// queued reports that an acquire naming the lock's waiter
	// (Request.Waiter) was sent on this lane since the node last forgot
	// the waiter (by granting it the key, or by Leave).
	queued bool
	acq    *call // the last acquire naming the waiter sent on this lane
	// lastErr is the last error the lock's owner saw from this node, to
	// report when a call cannot be sent.
	lastErr error
}

// call is one node call on a lane. Its fields are written before done is
// closed and read only after.
type call struct {
	done    chan struct{} // closed when the call has returned
	op      opKind
	sentAt  time.Time
	lastErr error // the lane's last error when the call was queued, to name a cause
	failed  bool  // the call returned an error
	wrote   bool  // the call may have changed the node: a success, or an unknown outcome
	granted bool  // an acquire that the node granted (which forgot the waiter it named)
	unknown bool  // this call, or one before it on the lane, has an unknown outcome
}

// lanes are the lanes of one lock, one per node, owned by one goroutine at
// a time (the Lock call, then the Lock handle under its op semaphore).
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
