package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charconstpointer/dlock"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestMicros(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want int64
	}{
		{-time.Second, 1},
		{0, 1},
		{1, 1},
		{time.Microsecond, 1},
		{time.Microsecond + 1, 2},
		{1500 * time.Nanosecond, 2},
		{time.Second, 1_000_000},
		{math.MaxInt64, math.MaxInt64/1000 + 1},
	} {
		if got := micros(tt.d); got != tt.want {
			t.Errorf("micros(%d) = %d, want %d", tt.d, got, tt.want)
		}
	}
}

func TestNewNode_invalid_config(t *testing.T) {
	// The pool never connects: every case fails before a statement is sent.
	pool, err := pgxpool.New(t.Context(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, tt := range []struct {
		name string
		pool *pgxpool.Pool
		opts []Option
	}{
		{"nil pool", nil, nil},
		{"empty table", pool, []Option{WithTable("")}},
		{"empty schema", pool, []Option{WithTable(".t")}},
		{"empty name", pool, []Option{WithTable("s.")}},
		{"three parts", pool, []Option{WithTable("a.b.c")}},
		{"NUL", pool, []Option{WithTable("a\x00b")}},
		{"unknown exec mode", pool, []Option{WithQueryExecMode(pgx.QueryExecMode(99))}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n, err := NewNode(t.Context(), tt.pool, tt.opts...)
			if !errors.Is(err, dlock.ErrInvalidConfig) {
				t.Errorf("NewNode = %v, %v; want an error wrapping dlock.ErrInvalidConfig", n, err)
			}
		})
	}
}

func TestQuoteTable(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"dlock_leases", `"dlock_leases"`},
		{"Locks", `"Locks"`},
		{"app.locks", `"app"."locks"`},
		{`we"ird`, `"we""ird"`},
	} {
		got, err := quoteTable(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("quoteTable(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestDoc_DDL checks that the DDL in the package documentation is the one
// NewNode runs.
func TestDoc_DDL(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for line := range strings.SplitSeq(strings.ReplaceAll(createSQL, "{t}", DefaultTable), "\n") {
		b.WriteString("//\t" + line + "\n")
	}
	want := strings.Replace(b.String(), "//\t)\n", "//\t);\n", 1)
	if !strings.Contains(string(doc), want) {
		t.Errorf("doc.go does not show the DDL NewNode runs; want it to contain:\n%s", want)
	}
}

func TestNode_semantics(t *testing.T) {
	urls := serverURLs(t, 1)
	pool := newPool(t, urls[0])
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			n := newTestNode(t, pool, WithQueryExecMode(mode))
			testSemantics(t, n)
		})
	}
}

func testSemantics(t *testing.T, n *Node) {
	ctx := t.Context()
	const ttl = time.Minute
	check := func(what string, got bool, err error, want bool) {
		t.Helper()
		if err != nil || got != want {
			t.Fatalf("%s = %v, %v; want %v, nil", what, got, err, want)
		}
	}
	checkReply := func(what string, got dlock.Reply, err error, want dlock.Reply) {
		t.Helper()
		if err != nil || got != want {
			t.Fatalf("%s = %+v, %v; want %+v, nil", what, got, err, want)
		}
	}

	ok, err := n.Acquire(ctx, "k", "a", ttl)
	check("Acquire(k, a)", ok, err, true)
	ok, err = n.Acquire(ctx, "k", "b", ttl)
	check("Acquire(k, b) while a holds", ok, err, false)
	ok, err = n.Acquire(ctx, "k", "a", ttl)
	check("Acquire(k, a) again while a holds", ok, err, false)
	ok, err = n.Extend(ctx, "k", "b", ttl)
	check("Extend(k, b) while a holds", ok, err, false)
	ok, err = n.Release(ctx, "k", "b")
	check("Release(k, b) while a holds", ok, err, false)
	ok, err = n.Extend(ctx, "k", "a", 2*ttl)
	check("Extend(k, a)", ok, err, true)
	s, err := n.Inspect(ctx, "k")
	if err != nil || !s.Held || s.Value != "a" || s.TTL <= ttl || s.TTL > 2*ttl || !s.HasCounter || s.Counter != 0 {
		t.Fatalf("Inspect(k) = %+v, %v; want held by a, TTL in (1m, 2m], counter 0", s, err)
	}
	ok, err = n.Release(ctx, "k", "a")
	check("Release(k, a)", ok, err, true)
	ok, err = n.Release(ctx, "k", "a")
	check("Release(k, a) again", ok, err, false)
	s, err = n.Inspect(ctx, "k")
	if err != nil || s.Held || s.Value != "" || s.TTL != 0 || !s.HasCounter {
		t.Fatalf("Inspect(k) after release = %+v, %v; want free, with a counter", s, err)
	}
	ok, err = n.Extend(ctx, "k", "b", ttl)
	check("Extend(k, b) of a free key (re-creates)", ok, err, true)
	ok, err = n.Acquire(ctx, "k", "a", ttl)
	check("Acquire(k, a) while b holds", ok, err, false)
	s, err = n.Inspect(ctx, "never")
	if err != nil || s != (dlock.KeyState{}) {
		t.Fatalf("Inspect(never) = %+v, %v; want the zero KeyState", s, err)
	}

	// Fencing: a counter per key that only grows.
	req := dlock.Request{Key: "f", Value: "a", TTL: ttl, Fencing: true}
	r, err := n.AcquireFenced(ctx, req)
	checkReply("AcquireFenced(f, a)", r, err, dlock.Reply{OK: true, Counter: 1})
	r, err = n.AcquireFenced(ctx, dlock.Request{Key: "f", Value: "b", TTL: ttl, Fencing: true})
	checkReply("AcquireFenced(f, b) while a holds", r, err, dlock.Reply{Counter: 1})
	r, err = n.Fence(ctx, dlock.Request{Key: "f", Value: "a", Token: 7})
	checkReply("Fence(f, a, 7)", r, err, dlock.Reply{OK: true, Counter: 7})
	r, err = n.Fence(ctx, dlock.Request{Key: "f", Value: "a", Token: 5})
	checkReply("Fence(f, a, 5) below the counter", r, err, dlock.Reply{Counter: 7})
	r, err = n.Fence(ctx, dlock.Request{Key: "f", Value: "b", Token: 9})
	checkReply("Fence(f, b, 9) by a non-holder", r, err, dlock.Reply{Counter: 7})
	r, err = n.ExtendFenced(ctx, dlock.Request{Key: "f", Value: "a", TTL: ttl, Token: 9})
	checkReply("ExtendFenced(f, a, token 9) while a holds", r, err, dlock.Reply{OK: true, Counter: 7})
	ok, err = n.Release(ctx, "f", "a")
	check("Release(f, a)", ok, err, true)
	r, err = n.AcquireFenced(ctx, dlock.Request{Key: "f", Value: "c", TTL: ttl, Fencing: true})
	checkReply("AcquireFenced(f, c) after release", r, err, dlock.Reply{OK: true, Counter: 8})
	ok, err = n.Release(ctx, "f", "c")
	check("Release(f, c)", ok, err, true)
	r, err = n.AcquireFenced(ctx, dlock.Request{Key: "f", Value: "u", TTL: ttl})
	checkReply("AcquireFenced(f, u) without fencing", r, err, dlock.Reply{OK: true, Counter: 8})
	ok, err = n.Release(ctx, "f", "u")
	check("Release(f, u)", ok, err, true)
	r, err = n.ExtendFenced(ctx, dlock.Request{Key: "f", Value: "d", TTL: ttl, Token: 5})
	checkReply("ExtendFenced(f, d, token 5) of a free key, counter 8", r, err, dlock.Reply{Counter: 8})
	r, err = n.ExtendFenced(ctx, dlock.Request{Key: "f", Value: "d", TTL: ttl, Token: 12})
	checkReply("ExtendFenced(f, d, token 12) of a free key", r, err, dlock.Reply{OK: true, Counter: 12})
	ok, err = n.Release(ctx, "f", "d")
	check("Release(f, d)", ok, err, true)
	r, err = n.ExtendFenced(ctx, dlock.Request{Key: "f", Value: "e", TTL: ttl})
	checkReply("ExtendFenced(f, e) without a token", r, err, dlock.Reply{OK: true, Counter: 12})
	r, err = n.ExtendFenced(ctx, dlock.Request{Key: "g", Value: "e", TTL: ttl, Token: 4})
	checkReply("ExtendFenced(g, e, token 4) of a new key", r, err, dlock.Reply{OK: true, Counter: 4})
	r, err = n.Fence(ctx, dlock.Request{Key: "none", Value: "e", Token: 4})
	checkReply("Fence(none)", r, err, dlock.Reply{})

	// The restart guard never refuses: the data survives restarts.
	r, err = n.AcquireFenced(ctx, dlock.Request{Key: "h", Value: "a", TTL: ttl, Guard: time.Hour, Fencing: true})
	checkReply("AcquireFenced(h, a) with a guard", r, err, dlock.Reply{OK: true, Counter: 1})

	if _, err := n.Fence(ctx, dlock.Request{Key: "f", Value: "e", Token: math.MaxInt64 + 1}); err == nil {
		t.Errorf("Fence with a token above 2^63-1: no error")
	}
	if _, err := n.ExtendFenced(ctx, dlock.Request{Key: "f", Value: "e", TTL: ttl, Token: math.MaxUint64}); err == nil {
		t.Errorf("ExtendFenced with a token above 2^63-1: no error")
	}
}

// TestNode_expiry checks that a lease lasts its TTL by the server's clock
// and no longer: acquirable by another value once it has passed, counter
// kept.
func TestNode_expiry(t *testing.T) {
	urls := serverURLs(t, 1)
	n := newTestNode(t, newPool(t, urls[0]))
	ctx := t.Context()
	const ttl = 300 * time.Millisecond
	start := time.Now()
	r, err := n.AcquireFenced(ctx, dlock.Request{Key: "k", Value: "a", TTL: ttl, Fencing: true})
	if err != nil || !r.OK {
		t.Fatalf("AcquireFenced(k, a) = %+v, %v", r, err)
	}
	ok, err := n.Acquire(ctx, "k", "b", ttl)
	if elapsed := time.Since(start); elapsed < ttl && (err != nil || ok) {
		t.Fatalf("Acquire(k, b) %v after a's grant = %v, %v; want false, nil", elapsed, ok, err)
	}
	time.Sleep(ttl - time.Since(start) + 20*time.Millisecond)
	ok, err = n.Extend(ctx, "k", "b", ttl)
	if err != nil || !ok {
		t.Fatalf("Extend(k, b) after a's TTL = %v, %v; want true (re-created)", ok, err)
	}
	s, err := n.Inspect(ctx, "k")
	if err != nil || !s.Held || s.Value != "b" || s.Counter != 1 {
		t.Fatalf("Inspect(k) = %+v, %v; want held by b, counter 1", s, err)
	}
	if ok, err := n.Release(ctx, "k", "a"); err != nil || ok {
		t.Fatalf("Release(k, a) after expiry = %v, %v; want false, nil", ok, err)
	}
	if ok, err := n.Extend(ctx, "k", "a", ttl); err != nil || ok {
		t.Fatalf("Extend(k, a) while b holds = %v, %v; want false, nil", ok, err)
	}
}

// TestNode_odd_keys stores keys and values PostgreSQL's text type could
// not: invalid UTF-8, NUL bytes; and long ones.
func TestNode_odd_keys(t *testing.T) {
	urls := serverURLs(t, 1)
	pool := newPool(t, urls[0])
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			n := newTestNode(t, pool, WithQueryExecMode(mode))
			ctx := t.Context()
			for _, key := range []string{
				"", " ", "ключ 🔒", "{slot}:x", "\x00nul\x00", "\xff\xfe not utf-8",
				"'; DROP TABLE x; --", `\x41`, strings.Repeat("k", 1024),
			} {
				for _, value := range []string{"v", "\x00\xff", "'\"\\"} {
					ok, err := n.Acquire(ctx, key, value, time.Minute)
					if err != nil || !ok {
						t.Fatalf("Acquire(%q, %q) = %v, %v; want true", key, value, ok, err)
					}
					s, err := n.Inspect(ctx, key)
					if err != nil || s.Value != value {
						t.Fatalf("Inspect(%q) = %+v, %v; want value %q", key, s, err, value)
					}
					if ok, err := n.Release(ctx, key, value+"x"); err != nil || ok {
						t.Fatalf("Release(%q, other) = %v, %v; want false", key, ok, err)
					}
					if ok, err := n.Release(ctx, key, value); err != nil || !ok {
						t.Fatalf("Release(%q, %q) = %v, %v; want true", key, value, ok, err)
					}
				}
			}
		})
	}
}

// TestNode_no_prepared_statements checks that the node leaves no named
// prepared statement on its connection even when the pool's own mode would
// prepare them, so that a transaction-mode pooler may move it between
// server connections.
func TestNode_no_prepared_statements(t *testing.T) {
	urls := serverURLs(t, 1)
	pool := newPool(t, urls[0], func(c *pgxpool.Config) {
		c.MaxConns = 1
		c.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
	})
	n := newTestNode(t, pool)
	ctx := t.Context()
	for range 3 {
		if _, err := n.AcquireFenced(ctx, dlock.Request{Key: "k", Value: "a", TTL: time.Minute, Fencing: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := n.ExtendFenced(ctx, dlock.Request{Key: "k", Value: "a", TTL: time.Minute, Token: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Fence(ctx, dlock.Request{Key: "k", Value: "a", Token: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Inspect(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Release(ctx, "k", "a"); err != nil {
			t.Fatal(err)
		}
	}
	var count int
	// Simple protocol: this query itself must not prepare a statement.
	err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements", pgx.QueryExecModeSimpleProtocol).Scan(&count)
	if err != nil || count != 0 {
		t.Errorf("prepared statements on the node's connection: %d, %v; want 0", count, err)
	}
}

// TestNode_concurrent_acquire races many acquires of one free key, and of
// one expired key: exactly one wins each time.
func TestNode_concurrent_acquire(t *testing.T) {
	urls := serverURLs(t, 1)
	n := newTestNode(t, newPool(t, urls[0], func(c *pgxpool.Config) { c.MaxConns = 16 }))
	ctx := t.Context()
	for round := range 20 {
		key := fmt.Sprintf("k%d", round)
		if round%2 == 1 { // odd rounds: a key whose lease has expired
			if ok, err := n.Acquire(ctx, key, "old", time.Millisecond); err != nil || !ok {
				t.Fatalf("Acquire(%s, old) = %v, %v", key, ok, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		const workers = 16
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			wins  []int
			errs  []error
			start = make(chan struct{})
		)
		for w := range workers {
			wg.Go(func() {
				<-start
				ok, err := n.Acquire(ctx, key, fmt.Sprintf("v%d", w), time.Minute)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					wins = append(wins, w)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 || len(wins) != 1 {
			t.Fatalf("round %d: winners %v, errors %v; want exactly one winner", round, wins, errs)
		}
	}
}

// TestNode_context returns promptly with the context's error when a
// statement is stuck behind another transaction's row lock.
func TestNode_context(t *testing.T) {
	urls := serverURLs(t, 1)
	pool := newPool(t, urls[0])
	n := newTestNode(t, pool)
	ctx := t.Context()
	if ok, err := n.Acquire(ctx, "k", "a", time.Minute); err != nil || !ok {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck
	if _, err := tx.Exec(ctx, "SELECT 1 FROM "+n.sql.table+" WHERE key = $1 FOR UPDATE", []byte("k")); err != nil {
		t.Fatal(err)
	}
	for _, op := range []struct {
		name string
		call func(context.Context) error
	}{
		{"Acquire", func(ctx context.Context) error { _, err := n.Acquire(ctx, "k", "b", time.Minute); return err }},
		{"Extend", func(ctx context.Context) error { _, err := n.Extend(ctx, "k", "a", time.Minute); return err }},
		{"Release", func(ctx context.Context) error { _, err := n.Release(ctx, "k", "a"); return err }},
		{"Fence", func(ctx context.Context) error {
			_, err := n.Fence(ctx, dlock.Request{Key: "k", Value: "a", Token: 3})
			return err
		}},
	} {
		t.Run(op.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := op.call(ctx)
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("%s returned after %v; want promptly after the deadline", op.name, elapsed)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s = %v; want an error wrapping context.DeadlineExceeded", op.name, err)
			}
		})
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := n.Acquire(canceled, "k2", "a", time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("Acquire with a canceled context = %v; want an error wrapping context.Canceled", err)
	}
}

// TestNewNode_table checks table creation: concurrent NewNode calls on one
// new table, WithoutCreateTable on a missing table (an error) and on a
// table made from the documented DDL, and a schema-qualified name.
func TestNewNode_table(t *testing.T) {
	urls := serverURLs(t, 1)
	pool := newPool(t, urls[0], func(c *pgxpool.Config) { c.MaxConns = 8 })
	ctx := t.Context()

	t.Run("concurrent", func(t *testing.T) {
		table := tableName(t)
		dropAtCleanup(t, pool, table)
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() { _, errs[i] = NewNode(ctx, pool, WithTable(table)) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("concurrent NewNode: %v", err)
		}
	})

	t.Run("without create", func(t *testing.T) {
		table := tableName(t)
		dropAtCleanup(t, pool, table)
		if _, err := NewNode(ctx, pool, WithTable(table), WithoutCreateTable()); err == nil {
			t.Fatalf("NewNode(WithoutCreateTable) of a missing table: no error")
		}
		ddl := strings.ReplaceAll(createSQL, "{t}", pgx.Identifier{table}.Sanitize())
		if _, err := pool.Exec(ctx, ddl); err != nil {
			t.Fatal(err)
		}
		n, err := NewNode(ctx, pool, WithTable(table), WithoutCreateTable())
		if err != nil {
			t.Fatalf("NewNode(WithoutCreateTable) of a table made from the DDL: %v", err)
		}
		if ok, err := n.Acquire(ctx, "k", "v", time.Minute); err != nil || !ok {
			t.Fatalf("Acquire = %v, %v", ok, err)
		}
	})

	t.Run("wrong columns", func(t *testing.T) {
		table := tableName(t)
		dropAtCleanup(t, pool, table)
		if _, err := pool.Exec(ctx, "CREATE TABLE "+pgx.Identifier{table}.Sanitize()+" (key text PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		if _, err := NewNode(ctx, pool, WithTable(table)); err == nil {
			t.Fatalf("NewNode over a table without the expected columns: no error")
		}
	})

	t.Run("schema", func(t *testing.T) {
		schema := tableName(t)
		if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, err := pool.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			if err != nil {
				t.Logf("drop schema: %v", err)
			}
		})
		n, err := NewNode(ctx, pool, WithTable(schema+".Leases"))
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := n.Acquire(ctx, "k", "v", time.Minute); err != nil || !ok {
			t.Fatalf("Acquire = %v, %v", ok, err)
		}
		var count int
		err = pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "Leases"}.Sanitize()).Scan(&count)
		if err != nil || count != 1 {
			t.Fatalf("rows in %s.Leases: %d, %v; want 1", schema, count, err)
		}
	})
}
