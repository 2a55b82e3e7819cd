// Package dlock provides distributed locks that stay correct when machines,
// networks and clocks misbehave, within stated assumptions.
//
// Its algorithm is Redlock: a lock is held only while a majority of N
// independent nodes agree, within the lock's TTL minus an allowance for
// clock drift. A node is any store behind the Node interface: Redis
// (RedisNode), PostgreSQL and etcd (modules of their own), or the in-memory
// node of package dlocktest. A single strongly consistent store is a Redlock
// of one node; independent stores form a quorum.
//
// Acquire fans out to every node in parallel and decides as soon as the
// outcome is known; a failed attempt is undone on every node it may have
// written to, each release queued after that node's own calls, so no key is
// left behind by a slow node.
//
//	r, err := dlock.New(dlock.RedisNodes(c1, c2, c3, c4, c5))
//	l, err := r.Lock("resource", "", dlock.WithTTL(10*time.Second))
//	if err != nil { ... }
//	defer l.Release()
//	if l.Held() { ... use the resource ... }
//
// # Values
//
// Every attempt to acquire stores a value that no earlier attempt stored:
// the caller's value followed by "." and 16 random hex digits, or a fresh
// generated value. A release or refresh compares the value, so a message of
// an earlier attempt that reaches a node late (a lost reply, a request
// delivered on another pooled connection after the client gave up on it)
// can never delete or extend a later attempt's key, and a failed attempt
// with the same value as a held lock can never delete it. Lock.Value returns
// what is stored.
//
// # Safety assumptions
//
// A Redlock lock is safe, that is no two holders believe they hold it at the
// same time, only while all of the following hold:
//
//   - Clocks drift by less than DriftFactor (default 1%) of the TTL over a
//     TTL, on every node and every client. A node clock that jumps forward
//     (an operator setting the time, a VM resumed) expires keys early and
//     breaks the lock.
//   - A node that crashes either persists its keys (AOF with fsync=always)
//     or stays down for longer than the largest TTL before it rejoins. A node
//     that restarts empty at once can grant a second holder a majority.
//     WithRestartGuard makes the nodes enforce this themselves.
//   - The holder stops using the resource before Lock.ValidUntil and as soon
//     as Lock.Held reports false. Lost is closed by a timer, and a holder
//     resuming from a pause may see its own work ticker fire first: check
//     Held right before each use. A pause between that check and the use
//     (GC, swapping, a stopped VM) can outlast the validity; only a fencing
//     token checked by the resource closes that gap (WithFencing).
//   - The nodes are independent masters: replicas fail over asynchronously
//     and can lose a key.
//
// The simulation in sim/ shows each of these unsafe cases happening, the
// safe configurations holding, and fencing and the restart guard closing
// the unsafe cases.
//
// # Fencing tokens
//
// With WithFencing, Lock.Token returns a token such that of two fenced
// locks on one key, the one granted later has the larger token. A resource
// that remembers the largest token it accepted and refuses smaller ones is
// then safe against a holder that paused past its validity, and against a
// node whose clock jumped, even when two holders believed they held the
// lock at once: it accepts the writes of one holder, then of a later one,
// never the earlier one's again.
//
// Each node keeps, per key, a counter without a time to live, kept across
// expiry and release, that never decreases (Fencer). The protocol:
//
//  1. Acquire: a node that grants the key (its value unique to the attempt)
//     advances the counter by one and returns it.
//  2. The token T is the largest counter the granting nodes returned. Where
//     a majority of them returned T, the token is taken: no second round.
//  3. Otherwise a second round raises the counter to T on the other
//     granting nodes, only where the attempt's value still holds the key;
//     the token is taken once a majority holds T.
//
// Call R(L) the majority of nodes on which lock L's counter became T(L)
// while L's value held the key. On a node, the counter changes only by a
// grant (when the key is free), by a raise or re-creation from the holder
// of the key, so between L's grant on a node and L's raise there, nothing
// else moves it; and a later grant to another lock M on that node advances
// it past T(L). So on any node n in both R(L) and R(M), the lock whose key
// came first on n has the smaller token, and two locks never share one.
//
// Now let lock A be granted (Lock returned) before lock B's successful
// attempt started. R(A) and R(B) are majorities, so they share a node n.
// A's key held n before A was granted, hence before B's attempt started,
// hence before B's key could hold n: so T(A) < T(B). This needs no
// assumption about time at all: not bounded drift, not bounded pauses, not
// clocks that stay put. It needs only that counters never decrease, which
// holds while no node loses its data (or, with the restart guard, see
// below).
//
// When two attempts overlap (B started before A was granted, and both
// succeeded), their tokens follow the order of their grants too as long as
// no key vanishes early: B's keys outlive B's Lock call (its validity is
// checked on return), so A could not have taken a node of R(B) in between.
// A node clock that jumps forward during B's few milliseconds between its
// raise and its return can invert the order of such an overlapping pair;
// the resource still accepts one holder's writes at a time, and the later
// holder's writes are refused rather than the earlier one's accepted. No
// protocol whose rounds go to majorities can order that case: B's last
// round and A's whole run may share only the node whose clock jumped.
//
// # Restart guard
//
// WithRestartGuard(d) makes a node that lost its data grant nothing until
// d has passed by its own clock since it came back. The node enforces it:
// it keeps a marker without a time to live; a node without the marker
// (restarted empty, flushed, failed over to an empty replica, or new)
// writes it with the time it came back and refuses every grant, including
// a refresh that would put a key back, until d has passed. It still
// extends and releases what it holds. Refusals are reported as
// ErrRestartGuard in the node's *NodeError and logged at info level.
//
// A node that lost its data lost its counters too. Every counter it creates
// afterwards starts at a floor: its clock in microseconds when it came back.
// Tokens it held before grew by one per grant, far slower than one per
// microsecond, so as long as the nodes' clocks agree to within d, the floor
// is above every token granted before the loss, and no token goes
// backwards. On a fresh deployment every node starts without a marker and
// the first locks wait out d; nodes known to be freshly provisioned can skip
// the wait by writing a marker dated in the past before first use
// (dlocktest.MemoryNode's Provision; on Redis, HSET dlock:restart-guard
// since 0 floor 0). Choose d at least as long as the largest TTL of the
// locks on the nodes.
//
// # Fairness
//
// Every acquire names its Lock call and says how long the call has waited
// (by the caller's clock: only durations are compared, never readings of
// different clocks). A node that implements Fencer remembers the waiters of
// a key for a couple of retry intervals after each of their attempts, and
// grants a free key only to a waiter that no other has out-waited by more
// than 10ms. So the longest waiter goes first, on every node alike (their
// views differ only by network latency, well within the slack); a holder
// that releases and locks again queues behind the waiters, in the same
// process or another; and a waiter is served after at most the waiters that
// were already waiting when it came, each holding once. A Lock call that
// gets the key, or gives up, leaves the queue of every node that may still
// remember it (Queue); a node that does not implement Queue forgets it a
// couple of retry intervals later. TryLock does not queue but does not
// jump the queue either. Nodes that do not implement Fencer, or ignore the
// waiter fields, give no such order.
//
// Within one Redlock, Lock calls for the same key go in the order they
// came, whatever the nodes: only the first of them tries the nodes (and is
// woken by a release, once a quorum of nodes announced it), claiming the
// longest wait among the calls behind it; the others wait for their turn,
// giving up after as long as their own retries could have taken (RetryLimit
// +1 times RetryInterval, jitter and the node timeout), and a TryLock while
// others wait fails at once. So a process's own callers never split the
// nodes' votes among themselves.
//
// # Timeouts
//
// Each node call is bounded by the node timeout (WithNodeTimeout, default 5%
// of the TTL, at least 10ms), and a round decides on the Redlock's own clock,
// never waiting on a hung node. A node that does not answer in time is
// reported as ErrNodeTimeout; context.DeadlineExceeded is reserved for the
// caller's own context. go-redis honours a context deadline while reading a
// reply only when the client was built with ContextTimeoutEnabled: true;
// otherwise a call to a hung node goes on in the background until the
// client's ReadTimeout. A release is always sent, after the calls before it
// on its node have ended however long they take, and once more a node
// timeout later when any earlier call of the lock on that node had an
// unknown outcome, so that a grant that lands late is undone too.
//
// # Errors
//
// A node may classify its errors: one with a method Permanent() bool that
// returns true cannot heal by retrying (a wrong password, a read-only
// replica), and Lock fails at once when such errors leave no majority; one
// with NotSent() bool that returns true never reached the store, and needs
// no undoing. RedisNode classifies go-redis's errors so.
//
// # Goroutines
//
// Node calls run on worker goroutines, one per call in flight, which wait
// 50ms of real time for a next call before they exit (a reused goroutine
// spares the stack growth of a fresh one inside the client, about a fifth
// of the CPU of a Lock+Release). So no goroutine outlives its last call by
// more than that, or a Lock by more than its auto-refresh: a Lock with
// RefreshInterval set refreshes until it is released or lost. Inside a
// testing/synctest bubble each call gets a goroutine of its own that ends
// with it, so a Redlock built outside a bubble works inside one.
package dlock
