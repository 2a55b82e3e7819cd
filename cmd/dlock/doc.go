// Dlock runs a command under a distributed lock: a flock(1) across machines,
// for cron jobs and deploy scripts that must not run twice at once.
//
// Usage:
//
//	dlock run [flags] KEY -- COMMAND [ARGS...]
//	dlock status [flags] KEY
//	dlock --version
//
// dlock run acquires the lock on KEY over the nodes given by --nodes or
// DLOCK_NODES (comma-separated URLs of independent stores; the lock is held
// while a majority of them agree), waiting as
// --wait says, then runs COMMAND with DLOCK_KEY, DLOCK_VALUE and, with
// --fencing, DLOCK_TOKEN in its environment. The lock is refreshed every
// third of --ttl while the command runs and released after it exits. When
// the lock is lost (a majority of nodes cannot be reached before the lock's
// validity runs out), the command's process group gets SIGTERM, then
// SIGKILL after --grace. SIGINT, SIGTERM and SIGHUP sent to dlock are
// forwarded to the command's process group; dlock releases the lock once
// the command has exited. On Linux, the command gets SIGKILL if dlock
// itself dies. The command is not in a terminal's foreground process group:
// dlock is for non-interactive commands (one that reads from the terminal
// stops).
//
// stdout belongs to the command; dlock writes its own messages to stderr,
// through log/slog, at --log-level (default warn: a run that goes well
// prints nothing, which suits cron).
//
// Node URLs, one per node (passwords are never printed):
//
//	redis://[user:password@]host:port[/db]     a Redis master; rediss:// for TLS
//	postgres://[user:password@]host:port/db?.. a PostgreSQL primary, as a libpq URL
//	                                            (sslmode and the other libpq parameters;
//	                                            also postgresql://); the lease table
//	                                            dlock_leases is created when missing
//	etcd://[user:password@]host:port[,host:port...]
//	                                            one etcd cluster (its client endpoints,
//	                                            plain HTTP); etcds:// for TLS with the
//	                                            system's roots; user:password is etcd auth
//
// In the comma-separated list, the hosts after an etcd:// or postgres:// URL
// belong to it: etcd://h1:2379,h2:2379,redis://h3:6379 is two nodes. A
// PostgreSQL or etcd node connects on its first use, so one that is down
// counts as a failed node.
//
// Exit codes of dlock run:
//
//	the command's own  the command ran to the end (128+N when killed by signal N)
//	64                 bad usage or invalid settings; nothing was run
//	75                 the lock was not acquired within --wait; the command was not started
//	76                 the lock was lost while the command ran; the command was stopped
//	126, 127           the command could not be started (127: not found)
//	128+N              dlock got signal N while waiting for the lock; nothing was run
//
// dlock status prints, per node, whether KEY is held, a short prefix of its
// value, its TTL left and its fencing counter, and exits 0 when a majority
// of nodes hold KEY with one value, 1 when not, 2 when not and a node
// failed (the answer is unknown), and 64 on bad usage.
package main
