package etcd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/charconstpointer/dlock"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultPrefix is the prefix of every etcd key a Node writes, unless
// WithPrefix says otherwise.
const DefaultPrefix = "dlock/"

// Granularity is the unit of an etcd lease's time to live: a lock's TTL is
// rounded up to whole seconds, never down.
const Granularity = time.Second

// maxRetries bounds how often one call starts over after a compare failed
// because the key or its counter changed between two requests.
const maxRetries = 16

// Option configures a Node.
type Option func(*config)

type config struct {
	prefix string
}

// WithPrefix sets the prefix of every etcd key the Node writes. Default
// DefaultPrefix ("dlock/"); any string, "" included. Nodes that share an etcd
// cluster and a lock key must use the same prefix, or they do not see each
// other's locks.
func WithPrefix(p string) Option { return func(c *config) { c.prefix = p } }

// Node is a dlock.Node over one etcd cluster. An etcd cluster replicates
// through raft and does not lose acknowledged writes, so a Redlock of one
// Node (quorum 1) needs none of Redlock's assumptions about independent
// nodes that crash and restart; the holder still relies on its clock
// running at the rate of the server's lease timer (the drift allowance) and
// on stopping before its validity ends (or on fencing tokens). Several
// clusters form a quorum like independent Redis masters.
//
// Node implements dlock.Node, dlock.Fencer, dlock.Inspector and
// dlock.TTLGranularity, and is safe for concurrent use. See the package
// documentation for the keys it writes, the transactions it runs and the
// fencing scheme.
type Node struct {
	c      *clientv3.Client
	prefix string
	// minTTL is the largest TTL, in seconds, that the server granted above
	// the one asked for: its minimum lease TTL, learnt from Grant replies.
	minTTL atomic.Int64
}

var (
	_ dlock.Node           = (*Node)(nil)
	_ dlock.Fencer         = (*Node)(nil)
	_ dlock.Inspector      = (*Node)(nil)
	_ dlock.TTLGranularity = (*Node)(nil)
)

// NewNode returns a Node that keeps its locks on the etcd cluster that c
// talks to. It returns nil for a nil client, which dlock.New rejects. The
// Node does not close c.
func NewNode(c *clientv3.Client, opts ...Option) *Node {
	if c == nil {
		return nil
	}
	cfg := config{prefix: DefaultPrefix}
	for _, opt := range opts {
		if opt != nil {
			opt(&cfg)
		}
	}
	return &Node{c: c, prefix: cfg.prefix}
}

// TTLGranularity implements dlock.TTLGranularity: one second. etcd leases
// are whole seconds and a Node rounds every TTL up, never down, so a key may
// live up to a second longer than asked, and it never lives shorter. The
// server also raises a lease below its minimum lease TTL (1.5 election
// timeouts rounded up to a second: 2s with etcd's default 1s election
// timeout, 1s with an election timeout of at most 666ms) to that minimum, so
// against a default server a TTL under 2s lives 2s, more than one granule
// longer; and it revokes expired leases from a timer (every 500ms) through
// raft, which adds up to about half a second.
func (n *Node) TTLGranularity() time.Duration { return Granularity }

// lockKey and counterKey are the two etcd keys of a lock key: the lock
// itself (value = holder, attached to a lease) and its fencing counter (no
// lease). Their namespaces are disjoint, whatever the key.
func (n *Node) lockKey(key string) string    { return n.prefix + "lock/" + key }
func (n *Node) counterKey(key string) string { return n.prefix + "fence/" + key }

// leaseSeconds rounds ttl up to whole seconds, at least one.
func leaseSeconds(ttl time.Duration) (int64, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("%w: TTL = %v: must be > 0", dlock.ErrInvalidConfig, ttl)
	}
	s := int64(ttl / time.Second)
	if ttl%time.Second != 0 {
		s++
	}
	return s, nil
}

// grant grants a lease of ttl rounded up to whole seconds.
func (n *Node) grant(ctx context.Context, ttl time.Duration) (clientv3.LeaseID, error) {
	secs, err := leaseSeconds(ttl)
	if err != nil {
		return 0, err
	}
	resp, err := n.c.Grant(ctx, secs)
	if err != nil {
		return 0, fmt.Errorf("dlock/etcd: grant lease: %w", err)
	}
	if resp.TTL < secs {
		// Never trust a lease shorter than asked for.
		n.revoke(ctx, resp.ID)
		return 0, fmt.Errorf("dlock/etcd: server granted a %ds lease for %ds", resp.TTL, secs)
	}
	if resp.TTL > secs {
		for {
			m := n.minTTL.Load()
			if resp.TTL <= m || n.minTTL.CompareAndSwap(m, resp.TTL) {
				break
			}
		}
	}
	return resp.ID, nil
}

// fits reports whether a lease granted for granted seconds is what a grant
// of want seconds would give now: the same, or the server's minimum.
func (n *Node) fits(granted, want int64) bool {
	return granted == want || (granted > want && granted <= n.minTTL.Load())
}

// revoke revokes a lease this Node granted and no longer needs. Errors are
// ignored: a lease that is not revoked expires by itself, and holds no key.
func (n *Node) revoke(ctx context.Context, id clientv3.LeaseID) {
	if id == clientv3.NoLease || ctx.Err() != nil {
		return
	}
	_, _ = n.c.Revoke(ctx, id)
}

// counter is what the counter key of a lock key holds: the counter is
// base + version, where base is the key's value and version the number of
// writes to the key since it was created (etcd counts them).
type counter struct {
	base    uint64
	version int64 // 0 when the key is missing
}

// value returns the fencing counter, 0 when the key is missing.
func (c counter) value() uint64 { return c.base + uint64(c.version) }

// baseFor returns the base that makes the counter equal t after one more
// write; t must be above c.value().
func (c counter) baseFor(t uint64) string { return strconv.FormatUint(t-uint64(c.version)-1, 10) }

// readCounter reads the counter key from a range response.
func readCounter(r *clientv3.GetResponse) (counter, error) {
	kv := first(r)
	if kv == nil {
		return counter{}, nil
	}
	b, err := strconv.ParseUint(string(kv.Value), 10, 64)
	if err != nil || kv.Version <= 0 || b > math.MaxInt64 {
		return counter{}, fmt.Errorf("dlock/etcd: malformed fencing counter %q (version %d) at %q", kv.Value, kv.Version, kv.Key)
	}
	return counter{base: b, version: kv.Version}, nil
}

// checkToken rejects tokens that a counter could not be raised to and
// still count on: like Redis and PostgreSQL counters, they stop at the
// largest int64.
func checkToken(t uint64) error {
	if t > math.MaxInt64 {
		return fmt.Errorf("dlock/etcd: fencing token %d above the largest int64", t)
	}
	return nil
}

func first(r *clientv3.GetResponse) *mvccpb.KeyValue {
	if r == nil || len(r.Kvs) == 0 {
		return nil
	}
	return r.Kvs[0]
}

// rangeAt returns the range response at index i of a transaction's
// responses, nil when there is none.
func rangeAt(resp *clientv3.TxnResponse, i int) *clientv3.GetResponse {
	if i >= len(resp.Responses) {
		return nil
	}
	r := resp.Responses[i].GetResponseRange()
	if r == nil {
		return nil
	}
	return (*clientv3.GetResponse)(r)
}

// read reads key's lock key and counter key in one transaction: kv is the
// lock key (nil when it is not set), cnt the counter. op names the calling
// operation in the error of a failed request.
func (n *Node) read(ctx context.Context, op, key string) (kv *mvccpb.KeyValue, cnt counter, err error) {
	resp, err := n.c.Txn(ctx).Then(clientv3.OpGet(n.lockKey(key)), clientv3.OpGet(n.counterKey(key))).Commit()
	if err != nil {
		return nil, counter{}, fmt.Errorf("dlock/etcd: %s: %w", op, err)
	}
	cnt, err = readCounter(rangeAt(resp, 1))
	if err != nil {
		return nil, counter{}, err
	}
	return first(rangeAt(resp, 0)), cnt, nil
}

// Acquire implements dlock.Node: it grants a lease of ttl rounded up to whole
// seconds and, in one transaction, puts key = value on it only if key's
// create revision is 0 (key not set). A refusal revokes the lease.
func (n *Node) Acquire(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	lease, err := n.grant(ctx, ttl)
	if err != nil {
		return false, err
	}
	k := n.lockKey(key)
	resp, err := n.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, value, clientv3.WithLease(lease))).
		Commit()
	if err != nil {
		n.revoke(ctx, lease)
		return false, fmt.Errorf("dlock/etcd: acquire: %w", err)
	}
	if !resp.Succeeded {
		n.revoke(ctx, lease)
	}
	return resp.Succeeded, nil
}

// AcquireFenced implements dlock.Fencer: Acquire, in one transaction that
// also reads the counter key and, with req.Fencing, writes it once more
// (keeping its value), so that the counter is one more than before. The
// counter key is created with base 0 (version 1: counter 1) when missing.
// req.Guard is ignored: etcd does not lose acknowledged writes, so
// Reply.Guarded is never set (see the package documentation).
func (n *Node) AcquireFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	lease, err := n.grant(ctx, req.TTL)
	if err != nil {
		return dlock.Reply{}, err
	}
	k, c := n.lockKey(req.Key), n.counterKey(req.Key)
	then := []clientv3.Op{clientv3.OpGet(c), clientv3.OpPut(k, req.Value, clientv3.WithLease(lease))}
	if req.Fencing {
		then = append(then, clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(c), ">", 0)},
			[]clientv3.Op{clientv3.OpPut(c, "", clientv3.WithIgnoreValue())},
			[]clientv3.Op{clientv3.OpPut(c, "0")},
		))
	}
	resp, err := n.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(then...).
		Else(clientv3.OpGet(c)).
		Commit()
	if err != nil {
		n.revoke(ctx, lease)
		return dlock.Reply{}, fmt.Errorf("dlock/etcd: acquire: %w", err)
	}
	if !resp.Succeeded {
		n.revoke(ctx, lease)
	}
	cnt, err := readCounter(rangeAt(resp, 0))
	if err != nil {
		if resp.Succeeded {
			n.undo(ctx, k, req.Value, lease)
		}
		return dlock.Reply{}, err
	}
	v := cnt.value()
	if resp.Succeeded && req.Fencing {
		v++ // one more write of the counter key
	}
	return dlock.Reply{OK: resp.Succeeded, Counter: v}, nil
}

// undo deletes a key this call set and could not finish granting.
func (n *Node) undo(ctx context.Context, k, value string, lease clientv3.LeaseID) {
	if ctx.Err() != nil {
		return
	}
	_, _ = n.c.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(k), "=", value),
			clientv3.Compare(clientv3.LeaseValue(k), "=", lease)).
		Then(clientv3.OpDelete(k)).
		Commit()
	n.revoke(ctx, lease)
}

// Extend implements dlock.Node: ExtendFenced without a token.
func (n *Node) Extend(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	r, err := n.ExtendFenced(ctx, dlock.Request{Key: key, Value: value, TTL: ttl})
	return r.OK, err
}

// ExtendFenced implements dlock.Fencer. It reads the key and its counter;
// where the key holds the value it keeps the key's lease alive
// (KeepAliveOnce), and when that lease's TTL is not the one asked for it
// moves the key to a new lease (a transaction that compares the value and
// the old lease) and revokes the old one. Where the key is not set it
// re-creates it as Acquire would, in a transaction that compares the key's
// create revision with 0 and, with a token, the counter key's version with
// what it read: refused when the counter is above req.Token; raised to
// req.Token when below. Where the key holds another value it refuses.
// req.Guard is ignored and Reply.Guarded never set. A token above the
// largest int64 is an error.
func (n *Node) ExtendFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	want, err := leaseSeconds(req.TTL)
	if err != nil {
		return dlock.Reply{}, err
	}
	if err := checkToken(req.Token); err != nil {
		return dlock.Reply{}, err
	}
	k := n.lockKey(req.Key)
	for range maxRetries {
		kv, cnt, err := n.read(ctx, "extend", req.Key)
		if err != nil {
			return dlock.Reply{}, err
		}
		switch {
		case kv != nil && string(kv.Value) != req.Value:
			return dlock.Reply{Counter: cnt.value()}, nil
		case kv != nil:
			ok, err := n.renew(ctx, k, req.Value, clientv3.LeaseID(kv.Lease), want)
			if err != nil {
				return dlock.Reply{}, err
			}
			if ok {
				return dlock.Reply{OK: true, Counter: cnt.value()}, nil
			}
		default:
			if req.Token != 0 && cnt.value() > req.Token {
				return dlock.Reply{Counter: cnt.value()}, nil
			}
			r, done, err := n.recreate(ctx, req, cnt)
			if err != nil || done {
				return r, err
			}
		}
		// The key changed between the read and the write: read again.
	}
	return dlock.Reply{}, errors.New("dlock/etcd: extend: key kept changing")
}

// renew makes key k, which held value on lease old when read, live for want
// seconds from now. ok=false means k changed since: read it again.
func (n *Node) renew(ctx context.Context, k, value string, old clientv3.LeaseID, want int64) (bool, error) {
	if old != clientv3.NoLease {
		ka, err := n.c.KeepAliveOnce(ctx, old)
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			return false, nil // expired: the key is gone or going
		case err != nil:
			return false, fmt.Errorf("dlock/etcd: extend: keep lease alive: %w", err)
		case n.fits(ka.TTL, want):
			// The lease was alive, so the key it held for value still is:
			// only this value's holder moves or deletes it.
			return true, nil
		}
	}
	// Another TTL (or no lease at all): move the key to a lease of its own.
	lease, err := n.grant(ctx, time.Duration(want)*time.Second)
	if err != nil {
		return false, err
	}
	resp, err := n.c.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(k), "=", value),
			clientv3.Compare(clientv3.LeaseValue(k), "=", old)).
		Then(clientv3.OpPut(k, value, clientv3.WithLease(lease))).
		Commit()
	if err != nil {
		n.revoke(ctx, lease)
		return false, fmt.Errorf("dlock/etcd: extend: move to a new lease: %w", err)
	}
	if !resp.Succeeded {
		n.revoke(ctx, lease)
		return false, nil
	}
	n.revoke(ctx, old)
	return true, nil
}

// recreate sets the missing key as Extend does, if neither the key nor (with
// a token) its counter changed since the counter was read as cnt. done=false
// means they did: read again.
func (n *Node) recreate(ctx context.Context, req dlock.Request, cnt counter) (r dlock.Reply, done bool, err error) {
	k, c := n.lockKey(req.Key), n.counterKey(req.Key)
	lease, err := n.grant(ctx, req.TTL)
	if err != nil {
		return dlock.Reply{}, true, err
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k), "=", 0)}
	then := []clientv3.Op{clientv3.OpPut(k, req.Value, clientv3.WithLease(lease))}
	after := cnt.value()
	if req.Token != 0 {
		cmps = append(cmps, clientv3.Compare(clientv3.Version(c), "=", cnt.version))
		if req.Token > after {
			then = append(then, clientv3.OpPut(c, cnt.baseFor(req.Token)))
			after = req.Token
		}
	}
	resp, err := n.c.Txn(ctx).If(cmps...).Then(then...).Commit()
	if err != nil {
		n.revoke(ctx, lease)
		return dlock.Reply{}, true, fmt.Errorf("dlock/etcd: extend: re-create: %w", err)
	}
	if !resp.Succeeded {
		n.revoke(ctx, lease)
		return dlock.Reply{}, false, nil
	}
	return dlock.Reply{OK: true, Counter: after}, true, nil
}

// Release implements dlock.Node: a transaction deletes key only if it holds
// value (never by the key's name alone), then the key's lease is revoked.
// The counter is kept.
func (n *Node) Release(ctx context.Context, key, value string) (bool, error) {
	k := n.lockKey(key)
	resp, err := n.c.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(k), "=", value)).
		Then(clientv3.OpDelete(k, clientv3.WithPrevKV())).
		Commit()
	if err != nil {
		return false, fmt.Errorf("dlock/etcd: release: %w", err)
	}
	if !resp.Succeeded {
		return false, nil
	}
	if d := resp.Responses[0].GetResponseDeleteRange(); d != nil && len(d.PrevKvs) == 1 {
		n.revoke(ctx, clientv3.LeaseID(d.PrevKvs[0].Lease))
	}
	return true, nil
}

// Fence implements dlock.Fencer: it reads the key and its counter and, when
// the key holds the value and the counter is below req.Token, writes the
// counter key once more with the base that makes the counter req.Token, in
// a transaction that compares the value and the counter key's version. OK
// when the key holds the value and the counter equals req.Token afterwards.
// A token above the largest int64 is an error.
func (n *Node) Fence(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	if err := checkToken(req.Token); err != nil {
		return dlock.Reply{}, err
	}
	k, c := n.lockKey(req.Key), n.counterKey(req.Key)
	for range maxRetries {
		kv, cnt, err := n.read(ctx, "fence", req.Key)
		if err != nil {
			return dlock.Reply{}, err
		}
		if kv == nil || string(kv.Value) != req.Value {
			return dlock.Reply{Counter: cnt.value()}, nil
		}
		if cnt.value() >= req.Token {
			return dlock.Reply{OK: cnt.value() == req.Token, Counter: cnt.value()}, nil
		}
		resp, err := n.c.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(k), "=", req.Value),
				clientv3.Compare(clientv3.Version(c), "=", cnt.version)).
			Then(clientv3.OpPut(c, cnt.baseFor(req.Token))).
			Commit()
		if err != nil {
			return dlock.Reply{}, fmt.Errorf("dlock/etcd: fence: %w", err)
		}
		if resp.Succeeded {
			return dlock.Reply{OK: true, Counter: req.Token}, nil
		}
		// The key or the counter changed since the read: read again.
	}
	return dlock.Reply{}, errors.New("dlock/etcd: fence: key kept changing")
}

// Inspect implements dlock.Inspector: one read of the key and its counter,
// and the key's lease's time to live. KeyState.TTL is whole seconds as etcd
// reports it, rounded down (the key expires in under TTL+1s); a key without
// a lease (not written by a Node) reports a TTL of 0.
func (n *Node) Inspect(ctx context.Context, key string) (dlock.KeyState, error) {
	kv, cnt, err := n.read(ctx, "inspect", key)
	if err != nil {
		return dlock.KeyState{}, err
	}
	st := dlock.KeyState{Counter: cnt.value(), HasCounter: cnt.version > 0}
	if kv == nil {
		return st, nil
	}
	st.Held, st.Value = true, string(kv.Value)
	if kv.Lease != 0 {
		ttl, err := n.c.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
		if err != nil {
			return dlock.KeyState{}, fmt.Errorf("dlock/etcd: inspect: lease time to live: %w", err)
		}
		if ttl.TTL < 0 {
			// The lease expired: the key is being deleted.
			return dlock.KeyState{Counter: st.Counter, HasCounter: st.HasCounter}, nil
		}
		st.TTL = time.Duration(ttl.TTL) * time.Second
	}
	return st, nil
}
