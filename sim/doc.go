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
// dlock.WithClock, dlock.WithRand (a seeded stream), dlock.WithNodeTimeout
// and the class's dlock.WithRestartGuard (0: off). A client's Redlock sees
// one dlock.Fencer per node: a stub that carries each call over a
// simulated network (latency with an optional heavy tail, drops,
// partitions) to the shared node.
//
// A node implements the contract of dlock.Fencer as dlocktest.MemoryNode
// does (TestNodeConformance runs dlocktest's suite against it): a fencing
// counter per key without a time to live, kept across expiry and release;
// and the restart marker, written by the first request with a Guard that
// finds none, holding the node clock's reading then ("since") and that
// reading in microseconds ("floor"). While less than the Guard has passed
// since then by the node's clock, the node grants nothing and re-creates
// nothing (Reply.Guarded); counters created once a marker exists start at
// its floor. A crash without persistence loses keys, counters and marker
// alike. Nodes start without a marker, as a fresh deployment does: in a
// guarded class the first locks wait out the guard. Every kind of call
// (Acquire, Extend, Release, AcquireFenced, ExtendFenced, Fence) is an
// operation of its own, with its own request and reply slots, and the same
// latency, loss, pooling and retransmission.
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
// Clients loop: think, LockContext with dlock.WithFencing (in every class,
// so that token order is checked everywhere), then a few operations on the
// resource, each after checking ValidUntil on the client's clock (a pause
// can fall between check and operation), then Release. The resource
// records every operation, with its lock's token, at its true instant. It
// remembers the largest token it accepted; in a fenced class (Scenario.
// Fenced) it refuses an operation with a smaller token (the trace says
// "refused, stale"), in the others it accepts everything. The client goes
// on as if accepted, so a fenced class runs the same world as its twin,
// seed for seed.
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
// its own clock, mapped to true time) ended. A violation (an overlap in
// the table) is a resource operation by one client inside another client's
// hold, in true time. Liveness: after the last fault heals, every client
// must acquire within the scenario's Liveness bound.
//
// Tokens: for each grant the checker knows its token, the true instant Lock
// returned, and the true instant its successful attempt started
// (ValidUntil − (TTL − drift) on the client's clock, drift = TTL × 1% +
// 2ms, mapped to true time). A token violation is a grant with the token
// of an earlier grant, or a grant B whose attempt started after a grant A
// returned, with B's token below A's: the contract of dlock.WithFencing.
// Attempts that overlap are not ordered by it (a node clock that jumps can
// invert them; see the dlock package documentation): a grant that returned
// after another with a smaller token is counted as an inversion, for
// information. Stale counts the operations a fenced resource refused; and
// a fenced resource's accepted history must be serial (its tokens never
// decrease in true time; "NOT SERIAL" otherwise).
//
// Classes() lists the scenario classes and what each must show, as
// "<holds>, tokens <tokens>": holds safe (no overlap) or UNSAFE (at least
// one: the class runs outside Redlock's assumptions, and proves that the
// checker sees it); tokens safe (no token violation: no node loses its
// counters, or the restart guard is on), UNSAFE (at least one: nodes lose
// their counters without the guard, and the class proves the checker sees
// tokens go backwards) or any (outside the contract, reported only). A
// fenced class is judged by its tokens: overlapping holds are what it
// exists to survive, so it must show no token violation, a serial accepted
// history, refused stale operations wherever holds overlapped, and no
// liveness failure. A class safe for holds must show no liveness failure
// either.
//
//	class                   must show              what it shows
//	calm, latency,          safe, tokens safe
//	partition, drift
//	minority-crash,         safe, tokens any       nodes restart empty after ≥ TTL
//	restart-delayed                                without the guard
//	restart-nodelay         UNSAFE, tokens any     as before fencing
//	clock-jump, pause       UNSAFE, tokens safe    overlaps, tokens ordered
//	pause-fenced,           UNSAFE, tokens safe    the same worlds: the resource
//	clock-jump-fenced                              refuses the stale operations
//	restart-nodelay-fenced  UNSAFE, tokens UNSAFE  counters restart at 0: tokens
//	                                               go backwards, stale refused
//	restart-guarded         safe, tokens safe      restart-nodelay with
//	                                               WithRestartGuard(TTL+1s)
//
// # Running it
//
// Run one seed with Run (from a test); RunMany runs many in parallel
// subtests; the dlocksim command (make sim) prints the table, and with
// -class (a comma-separated list), -seed and -trace replays one run. The
// fenced and guarded classes over 2,000 fresh seeds each (about 10 minutes
// on 2 cores):
//
//	go run ./sim/cmd/dlocksim -class pause-fenced,clock-jump-fenced,restart-guarded -seeds 2000 -first-seed $(date +%s)
//
// Any seed that offends replays with -class NAME -seed N -trace.
package sim
