// Package sim is dlock's deterministic simulation. It drives the real
// dlock.Redlock, through its public API only, against simulated nodes,
// network and clocks, injects faults, and checks mutual exclusion and
// liveness from what the clients did to a shared resource.
//
// # The world
//
// Each run is one testing/synctest bubble, so time is fake: it advances only
// when every goroutine of the run is blocked, and a 40-second run takes a
// fraction of a wall-clock second. A run has N nodes (default 5), each a key
// store whose expiry is judged by the node's own clock (true time × (1 +
// rate) + offset, plus any jumps), which can crash (losing its memory unless
// persistent) and restart; and M clients (default 5), each with its own
// skewed clock.Clock and its own *dlock.Redlock built with dlock.New,
// dlock.WithClock, dlock.WithRand (a seeded stream) and dlock.WithNodeTimeout.
// A client's Redlock sees one dlock.Node per node: a stub that carries each
// call over a simulated link (latency with an optional heavy tail, drops,
// partitions; in-order delivery per direction, like one TCP connection) to
// the shared node. A lost message makes the call fail when the library's
// node timeout ends its context.
//
// Clients loop: think, LockContext, then a few operations on the resource,
// each after checking ValidUntil on the client's clock (a pause can fall
// between check and operation), then Release. The resource records every
// operation at its true instant.
//
// # Determinism
//
// A run is a pure function of its Scenario and int64 seed. Every random
// choice is hashOf(seed, what it is about): a message's latency and loss
// from (client, node, operation, value, instant of the call), never from a
// shared generator whose order would depend on the Go scheduler. Instants
// are split into slots (nanoseconds modulo 1024) so that different actors
// never wake at the same instant: requests of client c with operation o
// reach nodes only in c's request slot, replies reach c only in the (c,
// node, o) reply slot, clients act and faults strike in their own slots.
// The trace is sorted by true time, then text. The same seed therefore gives
// the same trace, byte for byte, in any process and with any GOMAXPROCS.
//
// # The checker
//
// A hold is a client's successful acquisition, from the instant Lock
// returned until the client began to release or its validity (ValidUntil on
// its own clock, mapped to true time) ended. A violation is a resource
// operation by one client inside another client's hold, in true time.
// Liveness: after the last fault heals, every client must acquire within the
// scenario's Liveness bound. Classes() lists the scenario classes and what
// each must show: safe classes no violation and no liveness failure, unsafe
// classes (outside Redlock's assumptions) at least one violation, which
// proves the checker can see one.
//
// Run one seed with Run (from a test); RunMany runs many in parallel
// subtests; the dlocksim command (make sim) prints the table, and with
// -class, -seed and -trace replays one run.
package sim
