package dlock_test

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/dlocktest"
	"github.com/charconstpointer/dlock/internal/redistest"
)

// RedisNode passes the conformance suite every Node must pass, on a real
// redis-server (expiry in real time, which miniredis does not keep).
func TestRedisNode_conformance(t *testing.T) {
	addrs := redistest.Addrs(t)
	c := redis.NewClient(&redis.Options{Addr: addrs[0], ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	dlocktest.TestNode(t, func(t *testing.T) dlock.Node { return dlock.RedisNode(c) })
}

// The in-memory node of dlocktest passes it too (its own package runs it
// as well); run here beside RedisNode so that a change to the contract is
// seen against both.
func TestMemoryNode_conformance(t *testing.T) {
	n := dlocktest.NewMemoryNode(nil)
	dlocktest.TestNode(t, func(t *testing.T) dlock.Node { return n })
}
