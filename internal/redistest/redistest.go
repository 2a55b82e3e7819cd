// Package redistest connects integration tests to the real Redis nodes that
// `make test` starts (scripts/redis-nodes.sh) and lists in DLOCK_REDIS_ADDRS.
//
// Without nodes such tests are skipped, except under DLOCK_REQUIRE_REDIS=1
// (set by `make test`), where a missing node list is a failure. For local
// runs, `make redis-up` starts nodes and prints the export line to use.
package redistest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Environment variables read by Addrs.
const (
	EnvAddrs   = "DLOCK_REDIS_ADDRS"   // comma-separated host:port list
	EnvRequire = "DLOCK_REQUIRE_REDIS" // "1": no nodes is a failure, not a skip
)

// Addrs returns the node addresses in DLOCK_REDIS_ADDRS. When there are none
// it skips the test, or fails it if DLOCK_REQUIRE_REDIS=1.
func Addrs(t testing.TB) []string {
	t.Helper()
	var addrs []string
	for a := range strings.SplitSeq(os.Getenv(EnvAddrs), ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("redistest: %s is empty but %s=1: make test must provide redis nodes (scripts/redis-nodes.sh)", EnvAddrs, EnvRequire)
		}
		t.Skipf("redistest: %s not set; run `make test`, or `make redis-up` and export what it prints", EnvAddrs)
	}
	return addrs
}

// Clients returns one client per address, in order. Each node is emptied
// with FLUSHALL before Clients returns, and every client is closed in
// t.Cleanup. It fails the test when a node cannot be flushed.
//
// FLUSHALL empties the whole node, including keys of any other test using it
// at the time: go test runs packages in parallel against the same nodes, so
// use Clients only where nothing else can be running (no t.Parallel, and no
// other package using the nodes). Tests sharing the nodes should use Addrs
// with keys of their own instead, and never flush.
func Clients(t testing.TB, addrs []string) []*redis.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	clients := make([]*redis.Client, len(addrs))
	for i, addr := range addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { _ = c.Close() })
		clients[i] = c
		if err := c.FlushAll(ctx).Err(); err != nil {
			t.Fatalf("redistest: FLUSHALL on node %d (%s): %v", i, addr, err)
		}
	}
	return clients
}
