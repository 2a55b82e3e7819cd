package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// addrs returns the node addresses from DLOCK_REDIS_ADDRS, skipping the
// benchmark when fewer than need are configured.
func addrs(b *testing.B, need int) []string {
	b.Helper()
	var out []string
	for a := range strings.SplitSeq(os.Getenv("DLOCK_REDIS_ADDRS"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	if len(out) < need {
		b.Skipf("need %d redis nodes in DLOCK_REDIS_ADDRS, have %d (bench/run.sh starts 7)", need, len(out))
	}
	return out[:need]
}

// newClients returns one go-redis client per address, with go-redis's
// defaults (ContextTimeoutEnabled false, PoolSize 10*GOMAXPROCS), checked with
// PING and closed when the benchmark ends.
func newClients(b *testing.B, as []string) []*redis.Client {
	b.Helper()
	cs := make([]*redis.Client, len(as))
	for i, a := range as {
		c := redis.NewClient(&redis.Options{Addr: a, DisableIdentity: true})
		if err := c.Ping(b.Context()).Err(); err != nil {
			b.Fatalf("node %d (%s): %v", i, a, err)
		}
		cs[i] = c
		b.Cleanup(func() { c.Close() })
	}
	return cs
}

var runSeq atomic.Int64

// runID is unique per benchmark call (and per process), so that keys of one
// call are never confused with those of another, even across -count runs.
var runID = func() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// keyPrefix returns a fresh key prefix for one benchmark call.
func keyPrefix(scenario, lib string) string {
	return fmt.Sprintf("dlb:%s:%s:%s-%d:", scenario, lib, runID, runSeq.Add(1))
}

// keygen makes fresh keys: prefix + a counter. Each key costs one allocation
// (the string), the same for every library.
type keygen struct {
	buf []byte
	n   int
	pre int
}

func newKeygen(prefix string) *keygen {
	buf := make([]byte, 0, len(prefix)+20)
	buf = append(buf, prefix...)
	return &keygen{buf: buf, pre: len(prefix)}
}

func (k *keygen) next() string {
	k.n++
	k.buf = strconv.AppendInt(k.buf[:k.pre], int64(k.n), 10)
	return string(k.buf)
}

// countKeys counts the keys that start with prefix on one node.
func countKeys(ctx context.Context, c *redis.Client, prefix string) (int, error) {
	var n int
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return n, err
		}
		n += len(keys)
		if cursor = next; cursor == 0 {
			return n, nil
		}
	}
}

// cpuTime returns the user+system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// envInt reads a positive integer from the environment, or returns def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
