package postgres

import (
	"testing"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/dlocktest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestConformance runs dlock's conformance suite for a Node against a real
// server, once with each way of sending statements that a transaction-mode
// pooler accepts. The subtests share one table (they use keys of their
// own). The guard subtests skip: a PostgreSQL node grants under any guard,
// since it does not lose committed data.
func TestConformance(t *testing.T) {
	urls := serverURLs(t, 1)
	pool := newPool(t, urls[0], func(c *pgxpool.Config) { c.MaxConns = 16 })
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			n := newTestNode(t, pool, WithQueryExecMode(mode))
			dlocktest.TestNode(t, func(*testing.T) dlock.Node { return n })
		})
	}
}
