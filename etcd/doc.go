// Package etcd provides a dlock.Node over an etcd cluster, through the
// official client (go.etcd.io/etcd/client/v3).
//
//	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://127.0.0.1:2379"}})
//	r, err := dlock.New([]dlock.Node{etcd.NewNode(cli)})
//	l, err := r.Lock("resource", "", dlock.WithTTL(10*time.Second))
//
// One etcd cluster is one node. A Redlock of one etcd node (quorum 1) is
// consensus-safe: every grant, extension and release is a transaction
// committed through raft, and no acknowledged write is lost, so none of
// Redlock's assumptions about independent nodes that restart applies. The
// holder still judges its validity by its own clock against the server's
// lease timer (DriftFactor), and must stop before it ends, or use fencing
// tokens. Several independent etcd clusters, or etcd next to Redis and
// PostgreSQL nodes, form a quorum under Redlock's usual assumptions.
//
// # Keys
//
// For a lock key K (already carrying the Redlock's WithKeyPrefix) and the
// Node's prefix P (WithPrefix, default "dlock/"), a Node writes two etcd keys
// in disjoint namespaces:
//
//	P + "lock/"  + K   the lock: value = the holder's value, attached to a lease
//	P + "fence/" + K   the fencing counter, no lease: a decimal base b; the
//	                   counter is b plus the key's version (etcd's count of
//	                   writes to it since it was created)
//
// The counter key exists only for keys locked with fencing (or re-created
// or fenced with a token), and the Node never deletes it: one small key per
// fenced lock key.
//
// # Operations
//
// Acquire grants a lease of the TTL rounded up to whole seconds, then runs
// one transaction: if the lock key's create revision is 0 (the key is not
// set), put it with the value on the lease. A refusal revokes the lease.
//
// Extend reads the lock key. Where it holds the value, the key's lease is
// kept alive (KeepAliveOnce: its full TTL again from now); when that lease's
// TTL is not the one asked for, the key is moved to a new lease in a
// transaction that compares the value and the old lease, and the old lease is
// revoked. A lease that has expired cannot be kept alive (etcd answers "lease
// not found" once it is revoked), so a successful keep-alive proves the key
// still holds the value: only that value's holder moves or deletes it. Where
// the key is not set (it expired, or was never granted here), Extend
// re-creates it as Acquire would, as dlock.Node requires. Where it holds
// another value, Extend changes nothing and reports false.
//
// Release deletes the lock key in a transaction that compares its value, so
// it never deletes another holder's key, then revokes the key's lease.
//
// # Time to live
//
// etcd leases are whole seconds, and the server raises a shorter lease to its
// minimum TTL (1.5 election timeouts rounded up to a second: 2s with etcd's
// defaults). A Node rounds every TTL up to whole seconds, never down
// (TTLGranularity returns one second); the server's minimum and its expiry
// timer (leases are revoked by a leader loop every 500ms, through raft) only
// make keys live longer. A lease is granted before the transaction that sets
// the key and kept alive after the extension began, so a key never expires
// before the TTL measured from the start of the caller's request. On a leader
// change, or a restart, etcd renews every lease to its full TTL: again
// longer, never shorter. Use TTLs of a few seconds or more: against a
// server with etcd's default election timeout, a 100ms TTL holds a key for
// 2s.
//
// # Fencing
//
// A Node keeps the fencing counter of dlock.Fencer per key:
//
//	counter(K) = b + version(P+"fence/"+K), 0 when the counter key is missing
//
// A fenced grant (AcquireFenced with Fencing) is one transaction: if the
// lock key's create revision is 0, put the lock key on its lease, read the
// counter key, and write the counter key once more keeping its value (put
// with ignore_value), or create it with b = 0. Its version grows by exactly
// one, so the counter is one more than before (1 for a new key), in the same
// request as the grant. Fence(T) and a re-creation by ExtendFenced with token
// T, when the counter c = b + v is below T, write b' = T - v - 1 in a
// transaction that compares the counter key's version with v (and, for
// Fence, the lock key's value): the version becomes v+1 and the counter T.
// A fenced grant needs no read before it; Fence reads, then writes.
//
// This satisfies dlock.Fencer:
//
//   - The counter never decreases, and survives release and expiry: the
//     counter key has no lease, Release deletes only the lock key, and every
//     write of the counter key either keeps b and adds one to the version,
//     or (compared against the version it read) sets the counter to a token
//     above it.
//   - The counter advances only while the caller's value holds the lock key:
//     each write of the counter key is in a transaction that sets the lock
//     key to the value (a grant, a re-creation) or compares the lock key with
//     the value (Fence).
//   - A fenced grant sets the counter to one more than before; a refusal
//     changes nothing; re-creation with a token above the counter refuses
//     (a later holder was here), and otherwise leaves the counter at least
//     the token.
//
// etcd also documents the create revision of a key as a fencing token, and
// for an etcd-only deployment it is one. The Node's counter follows the
// Fencer contract instead (one more per grant, and raised by Fence to a token
// from other stores), so that etcd composes with Redis and PostgreSQL nodes
// in one quorum and a Redlock's fast path sees agreeing counters.
//
// # Restart guard
//
// A Node never reports dlock.Reply.Guarded and ignores Request.Guard, and
// writes no marker. The restart guard protects against a store that comes
// back without data it acknowledged (Redis without fsync'd persistence). etcd
// does not: a write is acknowledged once it is committed to the write-ahead
// log, with fsync, on a majority of members; a restarted member replays its
// log; a member that lost its disk must be removed and added again, and
// catches up from the others. Keys, leases, counters and the revision
// therefore never go back, and an expiry is never brought forward (leases are
// renewed to their full TTL on a leader change). The exceptions are an
// operator's: a disaster recovery from a snapshot rolls keys and counters
// back to the snapshot, and deleting a Node's keys by hand (etcdctl del
// --prefix dlock/) loses the counters. Treat either as a store that lost its
// data: stop taking locks for longer than the largest TTL in use, and, with
// fencing, raise each counter key's base above every token handed out since
// (or move to a new prefix whose fenced resources start afresh).
//
// # Compatibility
//
// Tested with etcd server 3.4.23 (Debian's etcd-server) and client v3.5.
// The Node uses only etcd v3 API calls that every 3.x server has: KV range,
// put, delete and transactions (nested transactions, from 3.3), and lease
// grant, revoke, keep-alive and time-to-live.
package etcd
