// Package dlocktest helps test code that uses dlock, and code that
// implements a dlock.Node.
//
// NewMemoryNode returns an in-memory Node, with fencing counters and the
// restart guard, for users' own unit tests: a Redlock of three memory nodes
// behaves like one over three independent stores, with no server to run. It
// starts no goroutines and uses no timers, so it works inside a
// testing/synctest bubble, where the real clock is fake.
//
// TestNode is the conformance suite that every Node must pass: the Redis,
// PostgreSQL and etcd backends, the memory node, and any Node of your own.
package dlocktest
