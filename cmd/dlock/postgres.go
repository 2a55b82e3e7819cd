//go:build unix

package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/postgres"
	"github.com/jackc/pgx/v5/pgxpool"
)

func init() {
	pg := backend{open: openPostgres, multiHost: true}
	backends["postgres"] = pg
	backends["postgresql"] = pg
}

// pgMaxConns is the pool size of a postgres node unless the URL sets
// pool_max_conns: dlock makes a few calls at a time per node.
const pgMaxConns = 4

// openPostgres opens a postgres:// or postgresql:// URL: a libpq URL as
// pgxpool.ParseConfig parses it (user, password, database, sslmode and the
// other libpq parameters, several hosts for libpq's failover), one PostgreSQL
// primary per URL. The pool connects on the node's first call, which also
// creates the lease table when missing (postgres.NewNode).
func openPostgres(_ context.Context, raw string, u *url.URL) (dlock.Node, string, func() error, error) {
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		return nil, "", nil, scrub(err, u)
	}
	if !u.Query().Has("pool_max_conns") {
		cfg.MaxConns = pgMaxConns
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, "", nil, scrub(err, u)
	}
	n := newLazyNode(time.Microsecond, func(ctx context.Context) (fullNode, error) {
		return postgres.NewNode(ctx, pool)
	})
	return n, pgIdentity(cfg), func() error { pool.Close(); return nil }, nil
}

// pgIdentity names the servers of cfg, whatever the database: two databases
// of one server are one store.
func pgIdentity(cfg *pgxpool.Config) string {
	cc := cfg.ConnConfig
	hosts := []string{net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port)))}
	for _, f := range cc.Fallbacks {
		hosts = append(hosts, net.JoinHostPort(f.Host, strconv.Itoa(int(f.Port))))
	}
	slices.Sort(hosts)
	return "postgres " + strings.Join(slices.Compact(hosts), ",")
}

// scrub returns err with every password of u replaced, for the libraries'
// error messages that might quote the URL.
func scrub(err error, u *url.URL) error {
	msg := err.Error()
	redacted := false
	for _, s := range secretsOf(u) {
		if strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
			redacted = true
		}
	}
	if !redacted {
		return err
	}
	return fmt.Errorf("%s", msg)
}
