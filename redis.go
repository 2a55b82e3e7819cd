package dlock

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
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

	//go:embed fenced.lua
	fencedLua    string
	fencedScript = redis.NewScript(fencedLua)

	//go:embed release_notify.lua
	releaseNotifyLua    string
	releaseNotifyScript = redis.NewScript(releaseNotifyLua)
)

// releasedChannel is the Pub/Sub channel on which a node announces the
// release of a held lock, with the key as the message.
const releasedChannel = "dlock:released"

// markerKey is the restart guard's marker on a standalone Redis node: a
// hash without a time to live that records when the node was first seen
// without it, and the counter floor from then.
const markerKey = "dlock:restart-guard"

// RedisNode returns a Node backed by a go-redis client: a *redis.Client, a
// *redis.ClusterClient or a *redis.Ring. Each node of a Redlock must be an
// independent master; a cluster or ring counts as one node. It returns nil
// for a nil client, which New rejects.
//
// Acquire is SET key value NX PX ttl; Extend, Release and the Fencer calls
// are Lua scripts, run by SHA (EVALSHA) and sent whole only when the server
// answers NOSCRIPT. TTLs are rounded up to whole milliseconds.
//
// The node implements Fencer, Inspector and Notifier: releasing a held lock
// publishes its key on the channel "dlock:released", and waiting Lock calls
// of a Redlock share one subscription per node, so they retry as soon as
// the key is released. A key's fencing counter lives
// in a key of its own without a time to live, "dlock:fence:{KEY}" (or, when
// KEY has a hash tag, "dlock:{TAG}:fence:KEY"), in the same hash slot as the
// key, so that fencing works on a Redis Cluster. The restart guard keeps its
// marker in "dlock:restart-guard"; it needs a standalone server (a
// *redis.Client), and New rejects it over a cluster or ring, whose keys live
// on several servers that lose their data separately. Redis Lua numbers
// are doubles: fencing tokens stay exact below 2^53, which a counter
// reaches only in centuries.
//
// Errors that cannot heal by retrying (NOAUTH, WRONGPASS, NOPERM, READONLY:
// a replica listed as a master) are reported as permanent, and a Lock
// fails at once when they leave no majority; errors of a request that
// never left the client (no connection could be made) are known to have
// changed nothing, and need no undoing.
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
	_, standalone := c.(*redis.Client)
	return &redisNode{c: c, standalone: standalone}
}

// RedisNodes returns one RedisNode per client, in order. It takes any
// slice of go-redis clients: RedisNodes(clients...) with clients a
// []*redis.Client, or a []redis.UniversalClient to mix kinds.
func RedisNodes[C redis.UniversalClient](cs ...C) []Node {
	nodes := make([]Node, len(cs))
	for i, c := range cs {
		nodes[i] = RedisNode(c)
	}
	return nodes
}

type redisNode struct {
	c          redis.UniversalClient
	standalone bool // a *redis.Client: one server, which can keep the guard's marker
}

var (
	_ Fencer     = (*redisNode)(nil)
	_ Inspector  = (*redisNode)(nil)
	_ Notifier   = (*redisNode)(nil)
	_ identified = (*redisNode)(nil)
)

// ReleaseNotify implements Notifier: Release, then PUBLISH dlock:released
// KEY when the key was deleted.
func (n *redisNode) ReleaseNotify(ctx context.Context, key, value string) (bool, error) {
	v, err := releaseNotifyScript.Run(ctx, n.c, []string{key}, value, releasedChannel).Int64()
	return v == 1, classify(err)
}

// WatchReleases implements Notifier with one SUBSCRIBE dlock:released
// connection. On a Ring, whose channels and keys live on different shards,
// it announces nothing and waits for ctx: waiters poll.
func (n *redisNode) WatchReleases(ctx context.Context, released func(key string)) error {
	if _, ring := n.c.(*redis.Ring); ring {
		<-ctx.Done()
		return ctx.Err()
	}
	ps := n.c.Subscribe(ctx, releasedChannel)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		return classify(err)
	}
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok := <-ch:
			if !ok {
				return errors.New("dlock: subscription to dlock:released closed")
			}
			released(m.Payload)
		}
	}
}

// storeIdentity names the server(s) behind the client: two clients of the
// same address and database are the same store.
func (n *redisNode) storeIdentity() string {
	switch c := n.c.(type) {
	case *redis.Client:
		o := c.Options()
		return fmt.Sprintf("redis %s %s db %d", o.Network, o.Addr, o.DB)
	case *redis.ClusterClient:
		addrs := slices.Clone(c.Options().Addrs)
		slices.Sort(addrs)
		return "redis cluster " + strings.Join(addrs, ",")
	case *redis.Ring:
		var addrs []string
		for _, a := range c.Options().Addrs {
			addrs = append(addrs, a)
		}
		slices.Sort(addrs)
		return fmt.Sprintf("redis ring %s db %d", strings.Join(addrs, ","), c.Options().DB)
	}
	return fmt.Sprintf("redis %T %p", n.c, n.c)
}

// poolSize is the number of connections the client keeps per server: the
// default bound on calls in flight to the node.
func (n *redisNode) poolSize() int {
	switch c := n.c.(type) {
	case *redis.Client:
		return c.Options().PoolSize
	case *redis.ClusterClient:
		return c.Options().PoolSize
	case *redis.Ring:
		return c.Options().PoolSize
	}
	return 0
}

// guardSupported reports why the node cannot keep the restart guard.
func (n *redisNode) guardSupported() error {
	if n.standalone {
		return nil
	}
	return fmt.Errorf("the restart guard needs a standalone server (*redis.Client), not a %T", n.c)
}

// Acquire implements Node.
func (n *redisNode) Acquire(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	ok, err := n.c.SetNX(ctx, key, value, roundUpMs(ttl)).Result()
	return ok, classify(err)
}

// Extend implements Node.
func (n *redisNode) Extend(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	v, err := extendScript.Run(ctx, n.c, []string{key}, value, roundUpMs(ttl).Milliseconds()).Int64()
	return v == 1, classify(err)
}

// Release implements Node.
func (n *redisNode) Release(ctx context.Context, key, value string) (bool, error) {
	v, err := releaseScript.Run(ctx, n.c, []string{key}, value).Int64()
	return v == 1, classify(err)
}

// AcquireFenced implements Fencer.
func (n *redisNode) AcquireFenced(ctx context.Context, req Request) (Reply, error) {
	arg := "0"
	if req.Fencing {
		arg = "1"
	}
	return n.fenced(ctx, "acquire", req, arg)
}

// ExtendFenced implements Fencer.
func (n *redisNode) ExtendFenced(ctx context.Context, req Request) (Reply, error) {
	return n.fenced(ctx, "extend", req, strconv.FormatUint(req.Token, 10))
}

// Fence implements Fencer.
func (n *redisNode) Fence(ctx context.Context, req Request) (Reply, error) {
	return n.fenced(ctx, "fence", req, strconv.FormatUint(req.Token, 10))
}

func (n *redisNode) fenced(ctx context.Context, op string, req Request, arg string) (Reply, error) {
	if req.Guard > 0 {
		if err := n.guardSupported(); err != nil {
			return Reply{}, permanent{err}
		}
	}
	keys := []string{req.Key, counterKey(req.Key), waitersKey(req.Key)}
	if n.standalone {
		keys = append(keys, markerKey)
	}
	ttl := int64(0)
	if req.TTL > 0 {
		ttl = roundUpMs(req.TTL).Milliseconds()
	}
	res, err := fencedScript.Run(ctx, n.c, keys, op, req.Value, ttl, req.Guard.Microseconds(), arg,
		req.Waiter, req.Waited.Microseconds(), req.WaitTTL.Microseconds(), req.WaitSlack.Microseconds()).Int64Slice()
	if err != nil {
		return Reply{}, classify(err)
	}
	if len(res) != 3 || res[1] < 0 {
		return Reply{}, fmt.Errorf("dlock: unexpected reply from the fencing script: %v", res)
	}
	return Reply{OK: res[0] == 1, Counter: uint64(res[1]), Guarded: res[2] == 1}, nil
}

// Leave implements Queue: it forgets req.Waiter as a waiter for req.Key.
func (n *redisNode) Leave(ctx context.Context, req Request) error {
	if err := n.c.HDel(ctx, waitersKey(req.Key), req.Waiter).Err(); err != nil {
		return classify(err)
	}
	return nil
}

// Inspect implements Inspector.
func (n *redisNode) Inspect(ctx context.Context, key string) (KeyState, error) {
	var get, counter *redis.StringCmd
	var pttl *redis.DurationCmd
	// Not a transaction: on a cluster the two keys share a slot, but a
	// pipeline of reads is all that is needed for a report.
	_, err := n.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, key)
		pttl = p.PTTL(ctx, key)
		counter = p.Get(ctx, counterKey(key))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return KeyState{}, classify(err)
	}
	var st KeyState
	if v, err := get.Result(); err == nil {
		st.Held, st.Value = true, v
		if d, err := pttl.Result(); err == nil && d > 0 {
			st.TTL = d
		}
	}
	if c, err := counter.Uint64(); err == nil {
		st.Counter, st.HasCounter = c, true
	}
	return st, nil
}

// counterKey returns the name of key's fencing counter, in key's hash slot.
func counterKey(key string) string { return companionKey(key, "fence") }

// waitersKey returns the name of the hash of key's waiters, in key's hash
// slot. It has a time to live: it vanishes when nobody waits.
func waitersKey(key string) string { return companionKey(key, "wait") }

// companionKey returns the name of key's companion of the given kind, in
// key's hash slot.
func companionKey(key, kind string) string {
	if tag, ok := hashTag(key); ok {
		return "dlock:{" + tag + "}:" + kind + ":" + key
	}
	if !strings.ContainsAny(key, "{}") {
		return "dlock:" + kind + ":{" + key + "}"
	}
	// A key whose braces make no hash tag, such as "a}b" or "{}x": the
	// whole key decides its slot, and it cannot be wrapped in braces.
	return "dlock:{" + slotTag(slotOf(key)) + "}:" + kind + ":" + key
}

// hashTag returns the part of key that Redis Cluster hashes when key has a
// hash tag: the text between the first "{" and the first "}" after it,
// when not empty.
func hashTag(key string) (string, bool) {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return "", false
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return "", false
	}
	return key[i+1 : i+1+j], true
}

// slotOf returns key's Redis Cluster hash slot.
func slotOf(key string) uint16 {
	if tag, ok := hashTag(key); ok {
		key = tag
	}
	return crc16(key) % 16384
}

// crc16 is CRC-16/XMODEM, the checksum of Redis Cluster's key slots.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

var slotTags sync.Map // uint16 slot -> string

// slotTag returns a short string without braces whose slot is slot.
func slotTag(slot uint16) string {
	if t, ok := slotTags.Load(slot); ok {
		return t.(string)
	}
	for i := 0; ; i++ {
		t := strconv.Itoa(i)
		if crc16(t)%16384 == slot {
			slotTags.Store(slot, t)
			return t
		}
	}
}

// permanent marks a Redis error that cannot heal by retrying.
type permanent struct{ error }

func (permanent) Permanent() bool { return true }
func (e permanent) Unwrap() error { return e.error }

// notSent marks an error of a request that never left the client.
type notSent struct{ error }

func (notSent) NotSent() bool   { return true }
func (e notSent) Unwrap() error { return e.error }

// classify marks err as permanent or not sent, where the error says so.
func classify(err error) error {
	var op *net.OpError
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		return err
	case redis.IsAuthError(err), redis.IsPermissionError(err), redis.IsReadOnlyError(err),
		redis.HasErrorPrefix(err, "WRONGTYPE"):
		return permanent{err}
	case errors.As(err, &op) && op.Op == "dial",
		errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrClosed):
		return notSent{err}
	}
	return err
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
