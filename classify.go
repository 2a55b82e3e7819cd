package dlock

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrNodeTimeout reports a node that did not answer within the node timeout
// (WithNodeTimeout). It is found with errors.Is in that node's *NodeError;
// the outcome on the node is unknown. It is distinct from the caller's
// context: errors.Is(err, context.DeadlineExceeded) holds only when the
// caller's own context ran out.
var ErrNodeTimeout = errors.New("dlock: node did not answer within the node timeout")

// A Node may classify its errors by giving them one of these methods; the
// Redlock looks for them with errors.As.
type (
	// permanentError is an error that cannot heal by retrying: a wrong
	// password, a read-only replica listed as a master, a key of the wrong
	// type.
	permanentError interface{ Permanent() bool }
	// notSentError is an error of a request that never reached the store
	// (no connection could be made, the pool had none free), so the call
	// changed nothing there and needs no undoing.
	notSentError interface{ NotSent() bool }
)

// isPermanent reports whether err cannot heal by retrying.
func isPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p) && p.Permanent()
}

// isNotSent reports whether err says the request never reached the store.
func isNotSent(err error) bool {
	var n notSentError
	return errors.As(err, &n) && n.NotSent()
}

// nodeTimeout is the error of a call cut short by the node timeout; it
// keeps what the node call itself returned, as text, so that it does not
// satisfy errors.Is(err, context.DeadlineExceeded).
type nodeTimeout struct {
	after time.Duration
	cause error // what the call returned when cut short, or nil
}

func (e *nodeTimeout) Error() string {
	if e.cause == nil {
		return fmt.Sprintf("no reply within the node timeout (%v)", e.after)
	}
	return fmt.Sprintf("no reply within the node timeout (%v): %v", e.after, e.cause)
}

func (e *nodeTimeout) Is(target error) bool { return target == ErrNodeTimeout }

// busyError is the error of a call that was not sent because the lock's
// previous calls to the node had not ended; it names the node's last real
// error, so that the cause stays visible.
type busyError struct {
	last error // the last error a call of this lock to the node returned
	op   opKind
	for_ time.Duration
}

func (e *busyError) Error() string {
	s := "not sent: this lock's previous " + e.op.String() + " to the node has not ended"
	if e.for_ > 0 {
		s += " after " + e.for_.Round(time.Millisecond).String()
	}
	if e.last != nil {
		s += "; the node's last error: " + e.last.Error()
	}
	return s
}

func (e *busyError) NotSent() bool { return true }

func (e *busyError) Unwrap() error { return e.last }

// boundError is the error of a call that was not sent because as many
// calls as WithMaxInFlight allows were already in flight to the node.
type boundError struct {
	bound int32
	last  error
}

func (e *boundError) Error() string {
	s := "not sent: " + strconv.Itoa(int(e.bound)) + " calls already in flight to the node (WithMaxInFlight)"
	if e.last != nil {
		s += "; the node's last error: " + e.last.Error()
	}
	return s
}

func (e *boundError) NotSent() bool { return true }

func (e *boundError) Unwrap() error { return e.last }

// maxKeyInMessage is how many bytes of a key an error message quotes.
const maxKeyInMessage = 64

// quoteKey quotes key for an error message: all of it when short, else a
// readable prefix and the key's length.
func quoteKey(key string) string {
	if len(key) <= maxKeyInMessage {
		return strconv.Quote(key)
	}
	cut := maxKeyInMessage
	for cut > 0 && key[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return strconv.Quote(key[:cut]) + "… (" + strconv.Itoa(len(key)) + " bytes)"
}

// logKey is key as logged: all of it when short, else a prefix.
func logKey(key string) string {
	if len(key) <= maxKeyInMessage {
		return key
	}
	return quoteKey(key)
}
