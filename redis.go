package dlock

import (
	"context"
	_ "embed"
	"math"
	"reflect"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed release.lua
	releaseLua    string
	releaseScript = redis.NewScript(releaseLua)

	//go:embed extend.lua
	extendLua    string
	extendScript = redis.NewScript(extendLua)
)

// RedisNode returns a Node backed by a go-redis client: a *redis.Client, a
// *redis.ClusterClient or a *redis.Ring. Each node of a Redlock must be an
// independent master; a cluster or ring counts as one node. It returns nil
// for a nil client, which New rejects.
//
// Acquire is SET key value NX PX ttl; Extend and Release are compare-value
// Lua scripts, run by SHA (EVALSHA) and sent whole only when the server
// answers NOSCRIPT. TTLs are rounded up to whole milliseconds.
//
// go-redis cuts a call short at its context's deadline only when the client
// was built with ContextTimeoutEnabled: true; otherwise a call to a hung
// node runs until the client's ReadTimeout/WriteTimeout, in the background:
// the Redlock decides on its own timer and does not wait for it.
func RedisNode(c redis.UniversalClient) Node {
	if c == nil {
		return nil
	}
	if v := reflect.ValueOf(c); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil
	}
	return &redisNode{c: c}
}

// RedisNodes returns one RedisNode per client, in order.
func RedisNodes(cs ...redis.UniversalClient) []Node {
	nodes := make([]Node, len(cs))
	for i, c := range cs {
		nodes[i] = RedisNode(c)
	}
	return nodes
}

type redisNode struct {
	c redis.UniversalClient
}

// Acquire implements Node.
func (n *redisNode) Acquire(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	return n.c.SetNX(ctx, key, value, roundUpMs(ttl)).Result()
}

// Extend implements Node.
func (n *redisNode) Extend(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	v, err := extendScript.Run(ctx, n.c, []string{key}, value, roundUpMs(ttl).Milliseconds()).Int64()
	return v == 1, err
}

// Release implements Node.
func (n *redisNode) Release(ctx context.Context, key, value string) (bool, error) {
	v, err := releaseScript.Run(ctx, n.c, []string{key}, value).Int64()
	return v == 1, err
}

// roundUpMs rounds d up to a whole number of milliseconds, at least one, so
// that a key never lives shorter on a node than the TTL the client assumes.
func roundUpMs(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return time.Millisecond
	}
	r := d % time.Millisecond
	if r == 0 || d > math.MaxInt64-time.Millisecond {
		return d - r
	}
	return d + time.Millisecond - r
}
