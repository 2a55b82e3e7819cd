// Package dlock provides distributed locks that stay correct when machines,
// networks and clocks misbehave, within stated assumptions.
//
// Its backend is Redlock: a lock is held only while a majority of N
// independent Redis masters agree, within the lock's TTL minus an allowance
// for clock drift. Acquire fans out to every node in parallel and decides as
// soon as the outcome is known; a failed attempt is undone on every node,
// each release queued after that node's own acquire, so no key is left
// behind by a slow node.
//
//	r, err := dlock.New(dlock.RedisNodes(c1, c2, c3, c4, c5))
//	l, err := r.Lock("resource", "", dlock.WithTTL(10*time.Second))
//	if err != nil { ... }
//	defer l.Release()
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
//   - The holder stops using the resource before Lock.ValidUntil and as soon
//     as Lock.Lost is closed. A process pause (GC, swapping, a stopped VM)
//     between checking the validity and touching the resource can outlast
//     it; without fencing tokens, which dlock does not offer yet, the
//     resource cannot refuse such a late write.
//   - The nodes are independent masters: replicas fail over asynchronously
//     and can lose a key.
//
// The simulation in sim/ shows each of these unsafe cases happening and the
// safe configurations holding.
//
// # Timeouts
//
// Each node call is bounded by the node timeout (WithNodeTimeout, default 5%
// of the TTL, at least 10ms), and a round decides on the Redlock's own clock,
// never waiting on a hung node. go-redis honours a context deadline while
// reading a reply only when the client was built with
// ContextTimeoutEnabled: true; otherwise a call to a hung node goes on in the
// background until the client's ReadTimeout. A release is always sent, after
// the calls before it on its node have ended however long they take, so that
// a release queued behind slow calls still undoes its key.
//
// # Goroutines
//
// Node calls run on worker goroutines, one per call in flight, which wait
// 50ms for a next call before they exit (a reused goroutine spares the stack
// growth of a fresh one inside the client, about a fifth of the CPU of a
// Lock+Release). So no goroutine outlives its last call by more than that,
// or a Lock by more than its auto-refresh: a Lock with RefreshInterval set
// refreshes until it is released or lost. Tests that run dlock inside a
// testing/synctest bubble should let 50ms of fake time pass before the
// bubble ends, as they would for any call still in flight.
package dlock
