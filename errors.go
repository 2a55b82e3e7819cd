package dlock

import (
	"errors"
	"fmt"
)

// ErrNotAcquired reports that a lock could not be acquired: the key is held
// by another value on too many nodes, too many nodes failed, or the validity
// left after a round was not positive. Lock and LockContext return it once
// their retries are exhausted, TryLock after its single attempt. The error
// says how many nodes granted, refused and failed; the failures are joined to
// it as *NodeError values.
var ErrNotAcquired = errors.New("dlock: lock not acquired")

// ErrLockLost reports that a lock is no longer known to be held: a refresh
// did not extend it on a majority of nodes, its validity ran out, a release
// did not find it on a majority, or it was already released.
var ErrLockLost = errors.New("dlock: lock lost")

// ErrRestartGuard reports a node's refusal by the restart guard
// (WithRestartGuard): the node lost its data recently and grants nothing
// until the guard has passed. It is found with errors.Is in the *NodeError
// of that node.
var ErrRestartGuard = errors.New("dlock: node refused: restart guard in force (the node lost its data recently)")

// ErrInvalidConfig reports a bad argument or option. The error names the
// field and the value; it is returned before any node is contacted.
var ErrInvalidConfig = errors.New("dlock: invalid config")

// NodeError is the failure of one node in a round. Errors returned by a
// Redlock join one *NodeError per failed node with errors.Join, so
// errors.As finds them and errors.Is sees through them to the cause.
type NodeError struct {
	Node int   // index of the node in the slice given to New
	Err  error // what the node call returned, or why it was given up
}

// Error implements error.
func (e *NodeError) Error() string {
	return fmt.Sprintf("dlock: node %d: %v", e.Node, e.Err)
}

// Unwrap returns the node's own error.
func (e *NodeError) Unwrap() error { return e.Err }

// invalid returns an error wrapping ErrInvalidConfig that names the field
// and value at fault.
func invalid(field string, value any, why string) error {
	return fmt.Errorf("%w: %s = %v: %s", ErrInvalidConfig, field, value, why)
}
