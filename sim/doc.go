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
// call over a simulated network (latency with an optional heavy tail, drops,
// partitions) to the shared node.
//
// # Connections
//
// As go-redis does, each client keeps a pool of connections to each node. A
// call takes the lowest-numbered idle connection, or opens a new one (k0,
// k1, … in the trace), and carries one request and one reply on it; the
// connection goes back to the pool when the reply reaches the client. So
// the messages of one connection are in order, but calls on different
// connections are not: a later call can overtake an earlier one. A call
// whose context ends before its reply (the library's node timeout, or the
// caller's context) abandons its connection and returns ctx.Err(); its
// request still reaches the node at its scheduled time and is applied there
// (the trace marks it "late"), and its reply is discarded. A call whose
// request or reply is lost returns an error (errNoReply) after twice the
// node timeout, unless its context ends first, and its connection is closed.
// A lost request is not gone, though: TCP retransmits it after 200 ms, then
// after 400 ms more, and so on (six times at most, each copy again subject
// to drops and partitions), even from a closed socket, so it may reach the
// node long after the call failed (the trace marks it "retransmitted"),
// unless the node has crashed since (its restart resets the connection).
// This is how a release that failed can still delete, later, a key that a
// later attempt of the same lock was granted.
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
// (and those of its retransmissions) from (client, node, operation, value,
// instant of the call), never from a shared generator whose order would
// depend on the Go scheduler. Instants are split into slots (nanoseconds
// modulo 1024) so that different actors never wake at the same instant:
// requests of client c with operation o reach nodes only in c's request
// slot, replies reach c only in the (c, node, o) reply slot, clients act and
// faults strike in their own slots. Two messages of one pool never arrive at
// the same instant (the later-booked one moves on by 1024 ns), which
// connection a call takes depends only on which replies arrived before it,
// and a reply that arrives at the instant its call's context ends wins.
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
