package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/charconstpointer/dlock/internal/leaktest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Tests that need PostgreSQL read the servers' URLs from DLOCK_POSTGRES_URLS
// (comma-separated, e.g. postgres://postgres@127.0.0.1:5432/postgres). When
// it is empty they skip, or fail when DLOCK_REQUIRE_POSTGRES=1 (make test
// sets both).

// TestMain fails the package when a test leaves a goroutine running. A
// Redlock's calls may finish in the background after Lock or Release
// returned, and a node's worker goroutine exits 50ms after its last call, so
// leaks are looked for until none remain or 15 seconds have passed.
func TestMain(m *testing.M) { leaktest.VerifyTestMain(m, 15*time.Second) }

// serverURLs returns the configured servers' URLs; it skips the test when
// fewer than n are configured, or fails it when DLOCK_REQUIRE_POSTGRES=1.
func serverURLs(t testing.TB, n int) []string {
	t.Helper()
	var urls []string
	for u := range strings.SplitSeq(os.Getenv("DLOCK_POSTGRES_URLS"), ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) < n {
		msg := fmt.Sprintf("DLOCK_POSTGRES_URLS names %d PostgreSQL servers; this test needs %d", len(urls), n)
		if os.Getenv("DLOCK_REQUIRE_POSTGRES") == "1" {
			t.Fatal(msg + " (DLOCK_REQUIRE_POSTGRES=1)")
		}
		t.Skip(msg)
	}
	return urls
}

// newPool returns a pool to url, closed at the end of the test.
func newPool(t testing.TB, url string, configure ...func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("pgxpool.ParseConfig(%q): %v", url, err)
	}
	for _, f := range configure {
		f(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgxpool.NewWithConfig(%q): %v", url, err)
	}
	t.Cleanup(pool.Close)
	if err := pool.Ping(ctx); err != nil {
		t.Fatalf("ping %s: %v", url, err)
	}
	return pool
}

// tableName returns a fresh table name, so that tests (and test binaries
// running at once) never share a table.
func tableName(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "dlock_test_" + hex.EncodeToString(b)
}

// newTestNode returns a Node over pool in a fresh table, dropped at the end
// of the test.
func newTestNode(t testing.TB, pool *pgxpool.Pool, opts ...Option) *Node {
	t.Helper()
	table := tableName(t)
	n, err := NewNode(t.Context(), pool, append([]Option{WithTable(table)}, opts...)...)
	if err != nil {
		t.Fatalf("NewNode: %v", err)
	}
	dropAtCleanup(t, pool, table)
	return n
}

func dropAtCleanup(t testing.TB, pool *pgxpool.Pool, table string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := pool.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize()); err != nil {
			t.Logf("drop table %s: %v", table, err)
		}
	})
}
