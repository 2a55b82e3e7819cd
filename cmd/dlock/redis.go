//go:build unix

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/charconstpointer/dlock"
	"github.com/redis/go-redis/v9"
)

func init() {
	backends["redis"] = backend{open: openRedis}
	backends["rediss"] = backend{open: openRedis}
}

// openRedis opens a redis:// or rediss:// URL with go-redis's URL parsing:
// user and password, DB number, TLS for rediss, and go-redis's query
// options (dial_timeout, read_timeout, ...). The client cuts calls short at
// their context's deadline (ContextTimeoutEnabled), so that a hung node
// costs a lock no more than the node timeout.
func openRedis(_ context.Context, raw string, _ *url.URL) (dlock.Node, string, func() error, error) {
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return nil, "", nil, err
	}
	opts.ContextTimeoutEnabled = true
	c := redis.NewClient(opts)
	// One Redis server is one node, whatever the DB number.
	return dlock.RedisNode(c), "redis " + opts.Network + " " + opts.Addr, c.Close, nil
}

// redisLogger sends go-redis's own log lines to slog at debug level.
type redisLogger struct{ log *slog.Logger }

// Printf implements go-redis's internal.Logging.
func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}

// setRedisLogger routes go-redis's log lines to log.
func setRedisLogger(log *slog.Logger) { redis.SetLogger(redisLogger{log}) }
