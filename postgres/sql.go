package postgres

import "strings"

// statements holds the node's SQL with the table's quoted name filled in.
// Parameters: $1 key (bytea), $2 value (bytea), $3 TTL in microseconds
// (bigint) or, for fence, the token; $4 the counter's step (acquire) or the
// token (extend).
//
// Every statement that decides reads clock_timestamp() once, in the CTE
// "now" (a CTE with a volatile function is evaluated once, never inlined).
// The statements that return (ok, counter) return one row when the key has
// a row: ok and the counter after a write, or false and the counter as the
// statement's snapshot saw it. A row inserted by a concurrent transaction
// after that snapshot may be missed, and then no row returns: the refusal's
// counter is reported as 0.
type statements struct {
	table                                    string // quoted
	create, check                            string
	acquire, extend, release, fence, inspect string
}

const (
	createSQL = `CREATE TABLE IF NOT EXISTS {t} (
	key        bytea PRIMARY KEY,
	value      bytea,
	expires_at timestamptz,
	counter    bigint NOT NULL DEFAULT 0 CHECK (counter >= 0)
)`

	checkSQL = `SELECT key, value, expires_at, counter FROM {t} LIMIT 0`

	// acquireSQL takes the key when its row is missing, released or
	// expired; $4 (0 or 1) is added to the counter on a grant.
	acquireSQL = `WITH now AS (SELECT clock_timestamp() AS t),
g AS (
	INSERT INTO {t} AS l (key, value, expires_at, counter)
	SELECT $1::bytea, $2::bytea, now.t + $3::bigint * interval '1 microsecond', $4::bigint FROM now
	ON CONFLICT (key) DO UPDATE
	SET value = excluded.value, expires_at = excluded.expires_at, counter = l.counter + excluded.counter
	WHERE l.expires_at IS NULL OR l.expires_at <= (SELECT t FROM now)
	RETURNING l.counter
)
SELECT true, counter FROM g
UNION ALL
SELECT false, counter FROM {t} WHERE key = $1::bytea AND NOT EXISTS (SELECT FROM g)`

	// extendSQL resets the expiry where the key holds $2 and is alive
	// (counter unchanged); where the key is missing, released or expired
	// it sets it, unless $4 (the token, 0 for none) is below the counter,
	// and raises the counter to $4.
	extendSQL = `WITH now AS (SELECT clock_timestamp() AS t),
g AS (
	INSERT INTO {t} AS l (key, value, expires_at, counter)
	SELECT $1::bytea, $2::bytea, now.t + $3::bigint * interval '1 microsecond', $4::bigint FROM now
	ON CONFLICT (key) DO UPDATE
	SET value = excluded.value, expires_at = excluded.expires_at,
		counter = CASE WHEN l.expires_at > (SELECT t FROM now) THEN l.counter
			ELSE GREATEST(l.counter, excluded.counter) END
	WHERE CASE WHEN l.expires_at > (SELECT t FROM now) THEN l.value = excluded.value
		ELSE excluded.counter = 0 OR l.counter <= excluded.counter END
	RETURNING l.counter
)
SELECT true, counter FROM g
UNION ALL
SELECT false, counter FROM {t} WHERE key = $1::bytea AND NOT EXISTS (SELECT FROM g)`

	// releaseSQL frees the key where it holds $2 and is alive; the row
	// and its counter stay.
	releaseSQL = `UPDATE {t} SET value = NULL, expires_at = NULL
WHERE key = $1::bytea AND value = $2::bytea AND expires_at > clock_timestamp()`

	// fenceSQL raises the counter to $3 where the key holds $2 and is
	// alive.
	fenceSQL = `WITH now AS (SELECT clock_timestamp() AS t),
g AS (
	UPDATE {t} SET counter = GREATEST(counter, $3::bigint)
	WHERE key = $1::bytea AND value = $2::bytea AND expires_at > (SELECT t FROM now)
	RETURNING counter
)
SELECT true, counter FROM g
UNION ALL
SELECT false, counter FROM {t} WHERE key = $1::bytea AND NOT EXISTS (SELECT FROM g)`

	// inspectSQL reads the key's row: alive, value, microseconds left
	// (rounded up), counter.
	inspectSQL = `WITH now AS (SELECT clock_timestamp() AS t)
SELECT COALESCE(l.expires_at > now.t, false), l.value,
	COALESCE(ceil(extract(epoch FROM l.expires_at - now.t) * 1000000), 0)::bigint, l.counter
FROM {t} AS l, now WHERE l.key = $1::bytea`
)

func newStatements(table string) statements {
	f := func(s string) string { return strings.ReplaceAll(s, "{t}", table) }
	return statements{
		table:   table,
		create:  f(createSQL),
		check:   f(checkSQL),
		acquire: f(acquireSQL),
		extend:  f(extendSQL),
		release: f(releaseSQL),
		fence:   f(fenceSQL),
		inspect: f(inspectSQL),
	}
}
