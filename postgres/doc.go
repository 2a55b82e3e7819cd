// Package postgres provides a dlock.Node over PostgreSQL, through a pgx v5
// pool (github.com/jackc/pgx/v5/pgxpool).
//
// One PostgreSQL primary is one node. A Redlock of one Postgres node
// (dlock.New([]dlock.Node{node})) is a lock as safe as the database: with
// synchronous replication, a failover loses no grant. Several independent
// PostgreSQL servers (each its own primary, not replicas of one another)
// form a Redlock quorum like independent Redis masters, and are safe under
// Redlock's assumptions (bounded clock drift between the client and each
// server).
//
// It needs PostgreSQL 11 or later (tests run on 15).
//
// # A lease table, not advisory locks
//
// Each key is a row of a lease table: the holder's value, the lease's
// expiry by the server's clock, and a fencing counter. PostgreSQL's advisory
// locks would be simpler but do not fit: a session-level advisory lock is
// tied to one connection, so a pooler in transaction mode (PgBouncer) hands
// the connection holding it to other clients and the lock is stranded or
// released by someone else; database/sql and pgxpool return such a
// connection to the pool still locked; and an advisory lock has no time to
// live, so a holder that is paused or cut off holds it until its session
// dies, which is exactly what a lease must bound.
//
// # Expiry by the server's clock
//
// A lease expires at clock_timestamp() + TTL, as read by the server when the
// statement runs, and is judged expired when expires_at <= clock_timestamp().
// now() would not do: it is frozen at the start of the transaction. Each
// statement reads clock_timestamp() once (a CTE), so one decision uses one
// instant. A statement that waited for a row lock judges with the instant it
// started: that only makes another holder's lease look alive longer, and a
// lease it grants still starts after the client sent the statement, so it
// never ends before the client's own start plus the TTL. TTLs are
// rounded up to whole microseconds (PostgreSQL's timestamp resolution); Node
// implements dlock.TTLGranularity accordingly.
//
// # Statements
//
// Every operation is one autocommit statement, at the default READ COMMITTED
// isolation: no transaction stays open between round trips and no row is
// locked for longer than one statement. Acquire is
//
//	INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE <the row is free or expired>
//
// so that of many concurrent acquires of one key exactly one takes it (the
// conflicting row is locked and its latest version re-checked). Extend and
// Release compare the value. Release keeps the row and clears its holder and
// expiry, so that the fencing counter survives it. Under REPEATABLE READ or
// SERIALIZABLE as the database's default isolation, a contended statement may
// fail with a serialization error, which the node returns as an error.
//
// # Connection poolers and prepared statements
//
// The node sends every statement with pgx.QueryExecModeExec by default,
// whatever the pool's DefaultQueryExecMode: the extended protocol with the
// unnamed statement, Parse, Bind, Execute and Sync sent together in one round
// trip and ending in one implicit transaction. No named (server-side)
// prepared statement is created, so a pooler in transaction mode (PgBouncer
// before 1.21, or any version without max_prepared_statements) may move the
// client to another server connection between any two statements. For a
// proxy that does not speak the extended protocol at all, use
// WithQueryExecMode(pgx.QueryExecModeSimpleProtocol) (client-side
// interpolation; needs standard_conforming_strings=on, PostgreSQL's default).
// Session state is never used: no SET, no session-level advisory lock, no
// temporary table (NewNode's advisory lock around CREATE TABLE is
// transaction-scoped and ends with its transaction).
//
// # Fencing, persistence and the restart guard
//
// Node implements dlock.Fencer. The counter is a bigint column of the key's
// row; it has no time to live and only grows: a fenced grant adds one, a
// re-creation by ExtendFenced or a Fence raises it to the token, and nothing
// lowers it. It never cycles: at 2^63-1 an increment fails with an error
// ("bigint out of range") instead of wrapping.
//
// The restart guard (Request.Guard) protects nodes that lose their data on
// a restart. A PostgreSQL node does not: a committed statement is in the
// write-ahead log before the client hears of it, and a crash or restart
// replays it. So the node keeps no marker, never refuses with
// Reply.Guarded, and ignores Request.Guard. This holds as long as commits are
// durable: keep fsync=on and synchronous_commit=on (the defaults; with
// synchronous_commit=off a crash may lose the last grants and counters), do
// not make the table UNLOGGED (its contents are emptied after a crash), and
// fail over only to a synchronous standby (an asynchronous one may lack the
// last grants). Deleting rows by hand, truncating or dropping the table,
// restoring an older backup, promoting a lagging replica, or pointing a
// node of a running quorum at a new, empty database is losing data, and the
// node does not detect it: in a Redlock of several nodes, keep such a node
// out of the quorum for longer than the largest TTL in use (the guard's
// rule, applied by hand). A Redlock of one Postgres node has nothing to
// lose this way: an empty table simply has no holder.
//
// # The table
//
// NewNode creates the table when it is missing (table name WithTable,
// default "dlock_leases"). To create it yourself, use WithoutCreateTable and
// this DDL (replace the name):
//
//	CREATE TABLE IF NOT EXISTS dlock_leases (
//		key        bytea PRIMARY KEY,
//		value      bytea,
//		expires_at timestamptz,
//		counter    bigint NOT NULL DEFAULT 0 CHECK (counter >= 0)
//	);
//
// Keys and values are stored as bytea, so any Go string works, including
// invalid UTF-8 and NUL bytes. A key must fit in a B-tree index entry (about
// 2,700 bytes); a longer one makes the statement fail with an error. The
// role needs SELECT, INSERT and UPDATE on the table (and CREATE on the
// schema unless WithoutCreateTable).
//
// Rows are never deleted: a row holds its key's fencing counter, and
// deleting it would let a token go backwards. A row is about 50 bytes plus
// the key and value. To prune keys you will never lock again, delete rows
// with expires_at IS NULL OR expires_at < clock_timestamp() - interval
// '1 day' only for keys not used with fencing.
package postgres
