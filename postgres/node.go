package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/charconstpointer/dlock"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultTable is the lease table's name when WithTable is not given.
const DefaultTable = "dlock_leases"

// Node is a dlock.Node over one PostgreSQL server, through a pgx pool. It
// also implements dlock.Fencer, dlock.Inspector and dlock.TTLGranularity. It
// is safe for concurrent use. Create it with NewNode.
type Node struct {
	pool *pgxpool.Pool
	mode pgx.QueryExecMode
	sql  statements
}

// Option configures NewNode.
type Option func(*config)

type config struct {
	table    string
	noCreate bool
	mode     pgx.QueryExecMode
}

// WithTable sets the lease table's name: an identifier, optionally
// schema-qualified ("locks.leases"); each part is quoted as given, so it is
// case-sensitive. Default DefaultTable ("dlock_leases") in the first schema
// of the search_path. An empty name, an empty part or more than two parts
// make NewNode return an error wrapping dlock.ErrInvalidConfig.
func WithTable(name string) Option {
	return func(c *config) { c.table = name }
}

// WithoutCreateTable makes NewNode skip CREATE TABLE IF NOT EXISTS, for
// users who create the table themselves (the DDL is in the package
// documentation) or whose role may not create tables. NewNode still checks
// that the table exists and has the expected columns. Default: create.
func WithoutCreateTable() Option {
	return func(c *config) { c.noCreate = true }
}

// WithQueryExecMode sets how statements are sent, whatever the pool's own
// DefaultQueryExecMode. Default pgx.QueryExecModeExec (extended protocol,
// unnamed statement, one round trip); pgx.QueryExecModeSimpleProtocol suits
// proxies that do not speak the extended protocol. The modes that prepare
// named statements (QueryExecModeCacheStatement) or describe them first
// (QueryExecModeCacheDescribe, QueryExecModeDescribeExec) are accepted for
// direct connections, but a pooler in transaction mode breaks them. Any
// other value makes NewNode return an error wrapping dlock.ErrInvalidConfig.
func WithQueryExecMode(m pgx.QueryExecMode) Option {
	return func(c *config) { c.mode = m }
}

// NewNode returns a Node that keeps leases in a table of the pool's
// database. Unless WithoutCreateTable is given it creates the table when
// missing (serialized among concurrent callers by a transaction-scoped
// advisory lock). It then checks that the table has the expected columns.
//
// It returns an error wrapping dlock.ErrInvalidConfig for a nil pool or a
// bad option, and the database's error (wrapped) when creating or checking
// the table fails; ctx bounds both.
func NewNode(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*Node, error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: postgres.NewNode: pool = nil", dlock.ErrInvalidConfig)
	}
	c := config{table: DefaultTable, mode: pgx.QueryExecModeExec}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	table, err := quoteTable(c.table)
	if err != nil {
		return nil, err
	}
	switch c.mode {
	case pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol:
	default:
		return nil, fmt.Errorf("%w: postgres.WithQueryExecMode: mode = %v: unknown", dlock.ErrInvalidConfig, c.mode)
	}
	n := &Node{pool: pool, mode: c.mode, sql: newStatements(table)}
	if !c.noCreate {
		if err := n.createTable(ctx, c.table); err != nil {
			return nil, fmt.Errorf("postgres: creating table %s: %w", table, err)
		}
	}
	if _, err := pool.Exec(ctx, n.sql.check, n.mode); err != nil {
		return nil, fmt.Errorf("postgres: checking table %s: %w", table, err)
	}
	return n, nil
}

// createTable runs the DDL in a transaction that holds an advisory lock on
// the table's name: concurrent CREATE TABLE IF NOT EXISTS of one table may
// otherwise fail on the catalog's unique index.
func (n *Node) createTable(ctx context.Context, name string) error {
	return pgx.BeginFunc(ctx, n.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", n.mode, "dlock table "+name); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, n.sql.create, n.mode)
		return err
	})
}

// quoteTable validates a table name given to WithTable and returns it
// quoted for SQL.
func quoteTable(name string) (string, error) {
	parts := strings.Split(name, ".")
	bad := name == "" || len(parts) > 2
	for _, p := range parts {
		bad = bad || p == "" || strings.IndexByte(p, 0) >= 0
	}
	if bad {
		return "", fmt.Errorf("%w: postgres.WithTable: name = %q: want an identifier or schema.identifier", dlock.ErrInvalidConfig, name)
	}
	return pgx.Identifier(parts).Sanitize(), nil
}

// Acquire implements dlock.Node: it takes key when its row is missing,
// released or expired by the server's clock. It is AcquireFenced without
// fencing; the counter does not change.
func (n *Node) Acquire(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	r, err := n.AcquireFenced(ctx, dlock.Request{Key: key, Value: value, TTL: ttl})
	return r.OK, err
}

// Extend implements dlock.Node: it is ExtendFenced without a token.
func (n *Node) Extend(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	r, err := n.ExtendFenced(ctx, dlock.Request{Key: key, Value: value, TTL: ttl})
	return r.OK, err
}

// Release implements dlock.Node: where key holds value and has not expired,
// it clears the holder and the expiry and keeps the row with its counter.
// It returns false when key is free, expired or held by another value.
func (n *Node) Release(ctx context.Context, key, value string) (bool, error) {
	tag, err := n.pool.Exec(ctx, n.sql.release, n.mode, []byte(key), []byte(value))
	if err != nil {
		return false, fmt.Errorf("postgres: release: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// AcquireFenced implements dlock.Fencer. With req.Fencing a grant adds one
// to the key's counter (a new key's counter starts at 1). req.Guard is
// ignored: see the package documentation.
func (n *Node) AcquireFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	var step int64
	if req.Fencing {
		step = 1
	}
	return n.decide(ctx, "acquire", n.sql.acquire, []byte(req.Key), []byte(req.Value), micros(req.TTL), step)
}

// ExtendFenced implements dlock.Fencer. Where the key holds req.Value and
// has not expired, it resets the expiry and leaves the counter alone. Where
// the key is missing, released or expired, it sets it, unless req.Token is
// not 0 and the counter is above it; a re-creation raises the counter to at
// least req.Token. Where another value holds the key it refuses. req.Guard
// is ignored. It returns an error for a token above 2^63-1.
func (n *Node) ExtendFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	tok, err := token(req.Token)
	if err != nil {
		return dlock.Reply{}, err
	}
	return n.decide(ctx, "extend", n.sql.extend, []byte(req.Key), []byte(req.Value), micros(req.TTL), tok)
}

// Fence implements dlock.Fencer: while the key holds req.Value and has not
// expired, it raises the counter to req.Token. OK when the counter then
// equals req.Token. It returns an error for a token above 2^63-1.
func (n *Node) Fence(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	tok, err := token(req.Token)
	if err != nil {
		return dlock.Reply{}, err
	}
	r, err := n.decide(ctx, "fence", n.sql.fence, []byte(req.Key), []byte(req.Value), tok)
	r.OK = r.OK && r.Counter == req.Token
	return r, err
}

// decide runs one of the statements that return (ok, counter): one row, or
// none when the key has no row and the statement wrote nothing.
func (n *Node) decide(ctx context.Context, op, sql string, args ...any) (dlock.Reply, error) {
	var (
		ok      bool
		counter int64
	)
	err := n.pool.QueryRow(ctx, sql, append([]any{n.mode}, args...)...).Scan(&ok, &counter)
	if errors.Is(err, pgx.ErrNoRows) {
		return dlock.Reply{}, nil
	}
	if err != nil {
		return dlock.Reply{}, fmt.Errorf("postgres: %s: %w", op, err)
	}
	return dlock.Reply{OK: ok, Counter: uint64(counter)}, nil
}

// Inspect implements dlock.Inspector: what the key's row holds, judged by
// the server's clock. A key that was never set has no counter.
func (n *Node) Inspect(ctx context.Context, key string) (dlock.KeyState, error) {
	var (
		s       dlock.KeyState
		value   []byte
		ttl     int64
		counter int64
	)
	err := n.pool.QueryRow(ctx, n.sql.inspect, n.mode, []byte(key)).Scan(&s.Held, &value, &ttl, &counter)
	if errors.Is(err, pgx.ErrNoRows) {
		return dlock.KeyState{}, nil
	}
	if err != nil {
		return dlock.KeyState{}, fmt.Errorf("postgres: inspect: %w", err)
	}
	if s.Held {
		s.Value = string(value)
		s.TTL = time.Duration(ttl) * time.Microsecond
	}
	s.Counter, s.HasCounter = uint64(counter), true
	return s, nil
}

// TTLGranularity implements dlock.TTLGranularity: PostgreSQL keeps time in
// microseconds, and the node rounds every TTL up to a whole number of them.
func (n *Node) TTLGranularity() time.Duration { return time.Microsecond }

// micros rounds d up to whole microseconds, at least one, so that a lease
// never lives shorter on the server than the TTL the client assumes.
func micros(d time.Duration) int64 {
	if d <= 0 {
		return 1
	}
	us := int64(d / time.Microsecond)
	if d%time.Microsecond != 0 {
		us++
	}
	return us
}

// token converts a fencing token to the counter column's type.
func token(t uint64) (int64, error) {
	if t > math.MaxInt64 {
		return 0, fmt.Errorf("postgres: fencing token %d above the counter's maximum %d", t, int64(math.MaxInt64))
	}
	return int64(t), nil
}

var (
	_ dlock.Fencer         = (*Node)(nil)
	_ dlock.Inspector      = (*Node)(nil)
	_ dlock.TTLGranularity = (*Node)(nil)
)
