package dlock

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
)

// Locker acquires locks. It is the seed's interface; *Redlock implements it.
type Locker interface {
	// Lock acquires the lock on key, storing value (generated when empty),
	// retrying as the options say.
	Lock(key, value string, opts ...LockOpt) (*Lock, error)
}

var _ Locker = (*Redlock)(nil)

// Redlock is a distributed lock over N independent nodes, held only while a
// majority of them agree, within the lock's TTL minus clock drift. It is
// safe for concurrent use. It needs no Close: the goroutines that make its
// node calls exit on their own 50ms after their last call.
type Redlock struct {
	nodes       []Node
	quorum      int
	clock       clock.Clock
	log         *slog.Logger
	prefix      string
	defaults    LockConfig
	nodeTimeout time.Duration // 0: derived from each lock's TTL

	idle []chan task // per node: where idle workers wait for a call

	randMu sync.Mutex
	rand   io.Reader
}

// New returns a Redlock over nodes, which must be independent masters (not
// replicas of each other). The quorum is len(nodes)/2 + 1.
//
// New returns an error wrapping ErrInvalidConfig, naming the field and the
// value, when nodes is empty, holds a nil Node, or an option is invalid.
func New(nodes []Node, opts ...Option) (*Redlock, error) {
	if len(nodes) == 0 {
		return nil, invalid("nodes", "[]", "need at least one node")
	}
	for i, n := range nodes {
		if isNil(n) {
			return nil, invalid("nodes["+strconv.Itoa(i)+"]", "nil", "must not be nil")
		}
	}
	cfg := defaultConfig()
	for _, opt := range opts {
		if opt != nil {
			opt(&cfg)
		}
	}
	if err := errors.Join(cfg.errs...); err != nil {
		return nil, err
	}
	// An Option may be any func(*Config), so check the result too.
	switch {
	case isNil(cfg.Clock):
		return nil, invalid("Clock", "nil", "must not be nil")
	case cfg.Logger == nil:
		return nil, invalid("Logger", "nil", "must not be nil")
	case isNil(cfg.Rand):
		return nil, invalid("Rand", "nil", "must not be nil")
	case cfg.NodeTimeout < 0:
		return nil, invalid("NodeTimeout", cfg.NodeTimeout, "must be > 0 (0: derived from the TTL)")
	}
	for i := range nodes {
		for j := range i {
			if sameNode(nodes[i], nodes[j]) {
				return nil, invalid("nodes["+strconv.Itoa(i)+"]", "nodes["+strconv.Itoa(j)+"]",
					"the same node twice would count twice towards the quorum")
			}
		}
	}
	if _, err := cfg.Defaults.resolve(); err != nil {
		return nil, fmt.Errorf("defaults: %w", err)
	}
	return &Redlock{
		nodes:       slices.Clone(nodes),
		quorum:      len(nodes)/2 + 1,
		clock:       cfg.Clock,
		log:         cfg.Logger,
		prefix:      cfg.KeyPrefix,
		defaults:    cfg.Defaults,
		nodeTimeout: cfg.NodeTimeout,
		idle:        newIdle(len(nodes)),
		rand:        cfg.Rand,
	}, nil
}

func newIdle(n int) []chan task {
	idle := make([]chan task, n)
	for i := range idle {
		idle[i] = make(chan task)
	}
	return idle
}

// sameNode reports whether a and b are the same comparable Node value.
func sameNode(a, b Node) bool {
	ta := reflect.TypeOf(a)
	return ta == reflect.TypeOf(b) && ta.Comparable() && a == b
}

// isNil reports whether n is nil, including a nil pointer in an interface.
func isNil(n any) bool {
	if n == nil {
		return true
	}
	switch v := reflect.ValueOf(n); v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Func, reflect.Chan, reflect.Slice, reflect.Interface:
		return v.IsNil()
	}
	return false
}

// Quorum returns how many nodes must agree for a lock to be held:
// len(nodes)/2 + 1.
func (r *Redlock) Quorum() int { return r.quorum }

// Lock acquires the lock on key with context.Background(); see LockContext.
func (r *Redlock) Lock(key, value string, opts ...LockOpt) (*Lock, error) {
	return r.LockContext(context.Background(), key, value, opts...)
}

// LockContext acquires the lock on key, storing value on the nodes. An
// empty value is replaced by 16 random bytes, hex-encoded; a given value must
// be unique to its holder. An attempt fans out to every node in parallel and
// succeeds when a majority granted it with validity left; a failed attempt
// is undone on every node and retried after RetryInterval plus jitter, up to
// RetryLimit times (-1: until ctx ends).
//
// Errors: ErrInvalidConfig for a bad argument or option (no node is
// contacted); ErrNotAcquired, joined with each node's *NodeError, when the
// retries are exhausted; when ctx ends first, an error wrapping both
// ErrNotAcquired and ctx.Err().
func (r *Redlock) LockContext(ctx context.Context, key, value string, opts ...LockOpt) (*Lock, error) {
	return r.lock(ctx, key, value, opts, true)
}

// TryLock makes one attempt to acquire the lock on key, with no retries,
// and otherwise behaves as LockContext.
func (r *Redlock) TryLock(ctx context.Context, key, value string, opts ...LockOpt) (*Lock, error) {
	return r.lock(ctx, key, value, opts, false)
}

// params are the resolved settings of one lock.
type params struct {
	LockConfig
	nodeTimeout time.Duration
	nodeKey     string // the key with the Redlock's prefix, as stored on the nodes
}

func (r *Redlock) lock(ctx context.Context, key, value string, opts []LockOpt, retry bool) (*Lock, error) {
	if ctx == nil {
		return nil, invalid("ctx", "nil", "must not be nil")
	}
	if key == "" {
		return nil, invalid("key", `""`, "must not be empty")
	}
	cfg, err := r.defaults.apply(opts).resolve()
	if err != nil {
		return nil, err
	}
	p := params{LockConfig: cfg, nodeTimeout: r.nodeTimeout, nodeKey: r.prefix + key}
	if p.nodeTimeout == 0 {
		p.nodeTimeout = max(cfg.TTL/20, minNodeTimeout)
	}
	if value == "" {
		if value, err = r.newValue(); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, notAcquiredCtx(key, err)
	}

	ln := make(lanes, len(r.nodes)) // this lock's call history per node
	for attempt := 1; ; attempt++ {
		l, t, sent, err := r.attempt(ctx, key, value, p, ln)
		if err == nil {
			return l, nil
		}
		// Undo the attempt on every node it reached, each release after
		// that node's own acquire, so that a late grant is undone too. The
		// releases run in the background; the next attempt queues after them.
		r.start(r.releaseRound(ctx, p, value, ln, sent))
		if r.log.Enabled(ctx, slog.LevelDebug) {
			r.log.DebugContext(ctx, "dlock: acquire attempt failed", "key", key, "attempt", attempt,
				"ok", t.ok, "refused", t.refused, "failed", t.failed, "pending", t.pending())
		}
		if t.ctxErr != nil {
			return nil, err
		}
		if !retry || (cfg.RetryLimit >= 0 && attempt > cfg.RetryLimit) {
			return nil, err
		}
		if wait := addSat(cfg.RetryInterval, r.jitter(cfg.RetryJitter)); wait > 0 {
			timer := r.clock.Timer(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return nil, errors.Join(notAcquiredCtx(key, ctx.Err()), err)
			}
		} else if ctx.Err() != nil {
			return nil, errors.Join(notAcquiredCtx(key, ctx.Err()), err)
		}
	}
}

// notAcquiredCtx is the error of a Lock call on key cut short by its
// context ending with err: both errors.Is(ErrNotAcquired) and errors.Is(err)
// hold.
func notAcquiredCtx(key string, err error) error {
	return fmt.Errorf("%w: %q: %w", ErrNotAcquired, key, err)
}

// attempt makes one acquire round. On failure it returns the error and
// which nodes the acquire was sent to, so that the caller can undo it.
func (r *Redlock) attempt(ctx context.Context, key, value string, p params, ln lanes) (*Lock, tally, []bool, error) {
	start := r.clock.Now()
	t, sent := r.fanout(ctx, round{
		lanes:   ln,
		callCtx: ctx,
		decide:  p.nodeTimeout,
		budget:  p.nodeTimeout,
		op:      opAcquire,
		key:     p.nodeKey,
		value:   value,
		ttl:     p.TTL,
	})
	if t.ctxErr != nil {
		return nil, t, sent, t.join(notAcquiredCtx(key, t.ctxErr))
	}
	left := validity(p.TTL, r.clock.Since(start), p.DriftFactor)
	if !t.won() {
		return nil, t, sent, t.join(fmt.Errorf("%w: %q: %s", ErrNotAcquired, key, &t))
	}
	if left <= 0 {
		return nil, t, sent, t.join(fmt.Errorf("%w: %q: %s, but no validity left (%v after drift)", ErrNotAcquired, key, &t, left))
	}
	return newLock(r, key, value, p, validUntil(start, p.TTL, p.DriftFactor), ln), t, nil, nil
}

// releaseRound returns the round that deletes the lock's key, where it
// still holds value, on the nodes marked in only (all when nil), each after
// the lock's previous call there. The calls run even once ctx has ended, and
// each may take up to the TTL (at least the node timeout): past the TTL the
// key is gone anyway, and until then a release that gives up early, say while
// waiting for a pooled connection to a slow node, would leave the key behind.
func (r *Redlock) releaseRound(ctx context.Context, p params, value string, ln lanes, only []bool) round {
	return round{
		lanes:   ln,
		must:    true,
		only:    only,
		callCtx: context.WithoutCancel(ctx),
		decide:  p.nodeTimeout,
		budget:  max(p.TTL, p.nodeTimeout),
		op:      opRelease,
		key:     p.nodeKey,
		value:   value,
	}
}

// addSat returns a+b for non-negative durations, saturating at the largest
// Duration instead of wrapping around.
func addSat(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// readRand fills b from the Redlock's source, which need not be safe for
// concurrent use.
func (r *Redlock) readRand(b []byte) error {
	r.randMu.Lock()
	defer r.randMu.Unlock()
	_, err := io.ReadFull(r.rand, b)
	return err
}

// newValue returns 16 random bytes from the Redlock's source, hex-encoded.
func (r *Redlock) newValue() (string, error) {
	var b [16]byte
	if err := r.readRand(b[:]); err != nil {
		return "", fmt.Errorf("dlock: generate lock value: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// jitter returns a random duration in [0, bound), or 0 when bound ≤ 0 or
// the source fails.
func (r *Redlock) jitter(bound time.Duration) time.Duration {
	if bound <= 0 {
		return 0
	}
	var b [8]byte
	if err := r.readRand(b[:]); err != nil {
		return 0
	}
	return time.Duration(binary.LittleEndian.Uint64(b[:]) % uint64(bound))
}
