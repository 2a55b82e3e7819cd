package dlock

import (
	"context"
	"time"
)

// Node is one independent store that holds a lock's key, the seam between
// the Redlock algorithm and a backend. RedisNode adapts a go-redis client;
// the postgres and etcd modules, dlocktest and the simulation provide others.
//
// Implementations must be safe for concurrent use and should return
// promptly once ctx is done. ok=false means the key is held by another value
// (or, for Extend and Release, is no longer held by this value); it is not
// an error. An error means the outcome on the node is unknown.
//
// A Node may also implement the optional capabilities Fencer (fencing
// tokens, the restart guard and the waiters' queue), Queue (waiters leave
// that queue), Notifier (releases are announced to waiters), Inspector
// (what a key holds, for tools) and TTLGranularity (how the store rounds a
// TTL), as io.WriterTo is to io.Writer.
type Node interface {
	// Acquire sets key to value with the given time to live, only if key is
	// not set.
	Acquire(ctx context.Context, key, value string, ttl time.Duration) (ok bool, err error)
	// Extend makes key hold value for ttl from now: where key holds value,
	// it resets its time to live; where key is not set (the node lost it,
	// or never granted it), it sets it, as Acquire would; where key holds
	// another value it changes nothing and returns false. ok reports
	// whether key holds value after the call.
	Extend(ctx context.Context, key, value string, ttl time.Duration) (ok bool, err error)
	// Release deletes key, only if it holds value.
	Release(ctx context.Context, key, value string) (ok bool, err error)
}

// Request is one call of the lock protocol to a Fencer.
type Request struct {
	// Key is the key on the node, with the Redlock's prefix.
	Key string
	// Value identifies the holder; a Redlock stores a value that no earlier
	// attempt stored.
	Value string
	// TTL is the key's time to live (AcquireFenced, ExtendFenced). A node
	// rounds it up to its granularity, never down.
	TTL time.Duration
	// Guard is the restart guard (WithRestartGuard), 0 when off. When it is
	// on, a node that lost its data (restarted empty, flushed, failed over
	// to an empty replica, or new) grants nothing until Guard has passed on
	// its own clock since it first saw itself without its marker.
	Guard time.Duration
	// Fencing asks AcquireFenced to advance the key's fencing counter on a
	// grant and to return it.
	Fencing bool
	// Token is the lock's fencing token: for ExtendFenced, 0 when the lock
	// is not fenced; for Fence, the value to raise the counter to.
	Token uint64

	// Waiter, for AcquireFenced, names a Lock call that has been waiting
	// for the key (the same name on every attempt of the call), "" for
	// none. Waited is how long it has waited, by its own clock. A node that
	// keeps waiters remembers each for WaitTTL after its last attempt, and
	// grants a free key to a waiter only when no other waiter it remembers
	// has waited longer by more than WaitSlack: the longest waiter goes
	// first, and a holder that locks again queues behind. A node may ignore
	// these fields (no fairness, no harm).
	Waiter    string
	Waited    time.Duration
	WaitTTL   time.Duration
	WaitSlack time.Duration
}

// Reply is what a Fencer answered.
type Reply struct {
	// OK reports success: AcquireFenced set the key; ExtendFenced left the
	// key holding Value; Fence left the key holding Value with its counter
	// equal to Token.
	OK bool
	// Guarded reports a refusal by the restart guard: the node lost its
	// data less than Guard ago, and wrote nothing. OK is false.
	Guarded bool
	// Counter is the key's fencing counter after the call, or 0 when the
	// key has none.
	Counter uint64
}

// Fencer is the optional capability of a Node that keeps a fencing counter
// per key and enforces the restart guard in the store itself. WithFencing
// and WithRestartGuard need every node of the Redlock to implement it.
//
// The counter of a key has no time to live: it survives the key's expiry
// and release, and never decreases. The node advances it only while the
// caller's value holds the key (AcquireFenced's grant, ExtendFenced's
// re-creation, Fence), so that between a holder's grant and its Fence no
// one else changes it. A node that can lose its data keeps a marker
// without a time to live; when the marker is missing, the node treats
// itself as having lost its data: with a Guard it writes a new marker,
// recording when it came back and a counter floor (its clock in
// microseconds), and refuses to grant (Guarded) until Guard has passed;
// every counter it creates afterwards starts at the floor, so that no token
// goes backwards as long as the nodes' clocks agree to within Guard.
// Without a Guard it writes no marker, and a missing counter starts at 0.
type Fencer interface {
	Node
	// AcquireFenced sets Key to Value for TTL only if Key is not set and no
	// Guard is in force. With Fencing, a grant sets the counter to one
	// more than before (starting from the floor or 0 when missing) and
	// Reply.Counter returns it; a refusal returns the counter unchanged.
	AcquireFenced(ctx context.Context, req Request) (Reply, error)
	// ExtendFenced makes Key hold Value for TTL from now: where Key holds
	// Value it resets the time to live (also while a Guard is in force);
	// where Key is not set it sets it, unless a Guard is in force
	// (Guarded) or, with a Token, the counter is already above Token (a
	// later holder was here: refused); a re-creation with a Token raises
	// the counter to at least Token. Where Key holds another value it
	// refuses.
	ExtendFenced(ctx context.Context, req Request) (Reply, error)
	// Fence raises Key's counter to Token, only while Key holds Value. OK
	// when Key holds Value and the counter equals Token afterwards.
	Fence(ctx context.Context, req Request) (Reply, error)
}

// KeyState is what one node holds for a key, as Inspector reports it.
type KeyState struct {
	// Held reports whether the key is set and unexpired.
	Held bool
	// Value is the value the key holds, when Held.
	Value string
	// TTL is the time the key has left by the store's clock, when Held.
	TTL time.Duration
	// Counter is the key's fencing counter, when HasCounter.
	Counter    uint64
	HasCounter bool
}

// Inspector is the optional capability of a Node that reports what it holds
// for a key, for tools such as `dlock status`. It changes nothing.
type Inspector interface {
	Inspect(ctx context.Context, key string) (KeyState, error)
}

// TTLGranularity is the optional capability of a Node whose store keeps
// time to live in coarser units than a nanosecond: a key may live up to one
// granule longer than asked (a node always rounds up), never shorter.
type TTLGranularity interface {
	TTLGranularity() time.Duration
}

// Notifier is the optional capability of a Node that announces releases,
// so that a Lock waiting for a key retries as soon as it is released
// instead of at its next poll. Announcements may be lost (a reconnect, a
// key that expired rather than being released): waiters keep polling at
// RetryInterval all the same.
type Notifier interface {
	// ReleaseNotify is Release that, when it deletes the key, announces
	// the release to every watcher of the node. The Redlock uses it to
	// release a held lock; undoing a failed attempt uses Release, which
	// announces nothing (no waiter should wake for a lock nobody held).
	ReleaseNotify(ctx context.Context, key, value string) (ok bool, err error)
	// WatchReleases calls released with the key of every announced
	// release on the node, by any client, until ctx ends or the watch
	// breaks; it then returns ctx's error or the cause. released must not
	// block; WatchReleases calls it from one goroutine.
	WatchReleases(ctx context.Context, released func(key string)) error
}

// Queue is the optional capability of a Fencer that keeps the waiters named
// by Request.Waiter. A Lock call that got its key, or gave up, leaves the
// queue of every node that may still remember it and did not forget it by
// granting it the key: a waiter that no longer waits would otherwise keep
// others from the key until its WaitTTL ran out.
type Queue interface {
	// Leave forgets req.Waiter as a waiter for req.Key (the other fields
	// are unused). Forgetting a waiter the node does not remember is not
	// an error.
	Leave(ctx context.Context, req Request) error
}
