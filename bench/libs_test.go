package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"math"
	mrand "math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bsm/redislock"
	"github.com/charconstpointer/dlock"
	"github.com/go-redsync/redsync/v4"
	rsredis "github.com/go-redsync/redsync/v4/redis"
	rsgoredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
)

// cfg is the one configuration every library gets, translated to its own
// options. BENCHMARKS.md states the translation.
type cfg struct {
	ttl           time.Duration // key TTL on the nodes
	retryInterval time.Duration // pause between attempts
	retryJitter   time.Duration // random extra pause in [0, retryJitter)
	retryLimit    int           // retries after the first attempt; -1 = until ctx ends
	refresh       time.Duration // auto-refresh period; 0 = none (scenario 6 only)
}

// baseCfg is used by every scenario; scenario 3 sets retryLimit -1 and
// scenario 6 sets refresh.
var baseCfg = cfg{
	ttl:           10 * time.Second,
	retryInterval: 5 * time.Millisecond,
	retryJitter:   5 * time.Millisecond,
	retryLimit:    32,
}

func (c cfg) delay() time.Duration {
	d := c.retryInterval
	if c.retryJitter > 0 {
		d += mrand.N(c.retryJitter)
	}
	return d
}

// locker is what a benchmark needs from a library: take a lock on a key.
type locker interface {
	lock(ctx context.Context, key string) (held, error)
}

// held is one acquired lock.
type held interface {
	release(ctx context.Context) error
	// lost reports whether the library knows it no longer holds the lock
	// (auto-refresh failed). Only meaningful when cfg.refresh > 0.
	lost() bool
}

type lib struct {
	name   string
	single bool // single-node library: runs with one node only
	new    func(b *testing.B, cs []*redis.Client, c cfg) locker
}

// libs lists every library in the order they run; dlock first, so that
// benchstat's deltas read "peer vs dlock".
var libs = []lib{
	{name: "dlock", new: func(b *testing.B, cs []*redis.Client, c cfg) locker { return newDlock(b, cs, c, false) }},
	{name: "redsync", new: func(b *testing.B, cs []*redis.Client, c cfg) locker { return newRedsync(b, cs, c, false) }},
	{name: "redsync-ff", new: func(b *testing.B, cs []*redis.Client, c cfg) locker { return newRedsync(b, cs, c, true) }},
	{name: "floor", new: newFloor},
	{name: "redislock", single: true, new: newRedislock},
}

// fencedLib is dlock with WithFencing: every Lock takes a fencing token
// (issue 8). Scenario 1 runs it right after dlock (s1Libs), so that the
// cost of fencing is measured in the same run, under the same load.
var fencedLib = lib{name: "dlock-fenced", new: func(b *testing.B, cs []*redis.Client, c cfg) locker { return newDlock(b, cs, c, true) }}

// s1Libs is libs with dlock-fenced after dlock.
var s1Libs = slices.Insert(slices.Clone(libs), 1, fencedLib)

// defaultsLib is dlock with its own default retry options (RetryInterval
// 100ms, jitter RetryInterval/2) instead of the shared cfg's 5ms polling:
// scenario 3 runs it after dlock (s3Libs), to show what wake-on-release
// gives a user who sets nothing. TTL and RetryLimit come from cfg.
var defaultsLib = lib{name: "dlock-defaults", new: func(b *testing.B, cs []*redis.Client, c cfg) locker {
	return newDlockWith(b, cs, c, false, true)
}}

// s3Libs is libs with dlock-defaults after dlock.
var s3Libs = slices.Insert(slices.Clone(libs), 1, defaultsLib)

var errNotReleased = errors.New("bench: release did not reach a majority")

// --- dlock ---

type dlockLocker struct {
	r      *dlock.Redlock
	fenced bool
}

var errNoToken = errors.New("bench: a fenced lock has no fencing token")

func newDlock(b *testing.B, cs []*redis.Client, c cfg, fencing bool) locker {
	return newDlockWith(b, cs, c, fencing, false)
}

// newDlockWith is newDlock; with ownRetry, dlock keeps its default retry
// interval and jitter instead of c's.
func newDlockWith(b *testing.B, cs []*redis.Client, c cfg, fencing, ownRetry bool) locker {
	ucs := make([]redis.UniversalClient, len(cs))
	for i, cl := range cs {
		ucs[i] = cl
	}
	defs := []dlock.LockOpt{
		dlock.WithTTL(c.ttl),
		dlock.WithRetryLimit(c.retryLimit),
	}
	if !ownRetry {
		defs = append(defs, dlock.WithRetryInterval(c.retryInterval), dlock.WithRetryJitter(c.retryJitter))
	}
	if c.refresh > 0 {
		defs = append(defs, dlock.WithRefreshInterval(c.refresh))
	}
	if fencing {
		defs = append(defs, dlock.WithFencing())
	}
	r, err := dlock.New(dlock.RedisNodes(ucs...), dlock.WithDefaults(defs...))
	if err != nil {
		b.Fatal(err)
	}
	return dlockLocker{r, fencing}
}

func (l dlockLocker) lock(ctx context.Context, key string) (held, error) {
	lk, err := l.r.LockContext(ctx, key, "")
	if err != nil {
		return nil, err
	}
	if l.fenced && lk.Token() == 0 {
		lk.ReleaseContext(ctx)
		return nil, errNoToken
	}
	return (*dlockHeld)(lk), nil
}

type dlockHeld dlock.Lock

func (h *dlockHeld) release(ctx context.Context) error {
	return (*dlock.Lock)(h).ReleaseContext(ctx)
}

func (h *dlockHeld) lost() bool {
	select {
	case <-(*dlock.Lock)(h).Lost():
		return true
	default:
		return false
	}
}

// why says why a lost lock is no longer held (Lock.Err): the benchmark logs
// the reasons of scenario 6's lost locks.
func (h *dlockHeld) why() error { return (*dlock.Lock)(h).Err() }

// --- redsync ---

type redsyncLocker struct {
	rs      *redsync.Redsync
	opts    []redsync.Option
	refresh time.Duration
}

func newRedsync(_ *testing.B, cs []*redis.Client, c cfg, failFast bool) locker {
	pools := make([]rsredis.Pool, len(cs))
	for i, cl := range cs {
		pools[i] = rsgoredis.NewPool(cl)
	}
	tries := c.retryLimit + 1
	if c.retryLimit < 0 {
		tries = math.MaxInt32 // until ctx ends
	}
	opts := []redsync.Option{
		redsync.WithExpiry(c.ttl),
		redsync.WithTries(tries),
		redsync.WithRetryDelayFunc(func(int) time.Duration { return c.delay() }),
	}
	if failFast {
		opts = append(opts, redsync.WithFailFast(true))
	}
	return &redsyncLocker{rs: redsync.New(pools...), opts: opts, refresh: c.refresh}
}

func (l *redsyncLocker) lock(ctx context.Context, key string) (held, error) {
	m := l.rs.NewMutex(key, l.opts...)
	if err := m.LockContext(ctx); err != nil {
		return nil, err
	}
	if l.refresh <= 0 {
		return (*redsyncHeld)(m), nil
	}
	return &refreshing{held: (*redsyncHeld)(m), r: startRefresh(l.refresh, func(ctx context.Context) error {
		ok, err := m.ExtendContext(ctx)
		if err == nil && !ok {
			err = errNotReleased
		}
		return err
	})}, nil
}

type redsyncHeld redsync.Mutex

func (h *redsyncHeld) release(ctx context.Context) error {
	ok, err := (*redsync.Mutex)(h).UnlockContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errNotReleased
	}
	return nil
}

func (h *redsyncHeld) lost() bool { return false }

// --- redislock (single node) ---

type redislockLocker struct {
	c       *redislock.Client
	ttl     time.Duration
	opts    *redislock.Options
	refresh time.Duration
}

// jitterBackoff is redislock's RetryStrategy with our interval and jitter.
// redislock bounds retries by time (Obtain's ctx gets a TTL deadline when it
// has none), not by count, so retryLimit does not apply to it.
type jitterBackoff struct{ c cfg }

func (j jitterBackoff) NextBackoff() time.Duration { return j.c.delay() }

func newRedislock(_ *testing.B, cs []*redis.Client, c cfg) locker {
	return &redislockLocker{
		c:       redislock.New(cs[0]),
		ttl:     c.ttl,
		opts:    &redislock.Options{RetryStrategy: jitterBackoff{c}},
		refresh: c.refresh,
	}
}

func (l *redislockLocker) lock(ctx context.Context, key string) (held, error) {
	lk, err := l.c.Obtain(ctx, key, l.ttl, l.opts)
	if err != nil {
		return nil, err
	}
	if l.refresh <= 0 {
		return (*redislockHeld)(lk), nil
	}
	return &refreshing{held: (*redislockHeld)(lk), r: startRefresh(l.refresh, func(ctx context.Context) error {
		return lk.Refresh(ctx, l.ttl, nil)
	})}, nil
}

type redislockHeld redislock.Lock

func (h *redislockHeld) release(ctx context.Context) error {
	return (*redislock.Lock)(h).Release(ctx)
}

func (h *redislockHeld) lost() bool { return false }

// --- floor: plain go-redis, no library logic ---

// The floor fans SET NX PX out to every node in parallel and returns at
// quorum; release fans a compare-and-delete script out and returns at
// quorum. No validity arithmetic, no per-node timeouts, no cleanup of
// stragglers: the least work a Redlock can do.
type floorLocker struct {
	cs      []*redis.Client
	quorum  int
	c       cfg
	refresh time.Duration
}

var (
	floorRelease = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`)
	floorExtend  = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`)
)

func newFloor(_ *testing.B, cs []*redis.Client, c cfg) locker {
	return &floorLocker{cs: cs, quorum: len(cs)/2 + 1, c: c, refresh: c.refresh}
}

// fanout runs op on every node in parallel and returns whether a quorum
// said yes, as soon as that is known.
func (f *floorLocker) fanout(op func(c *redis.Client) bool) bool {
	ch := make(chan bool, len(f.cs))
	for _, c := range f.cs {
		go func() { ch <- op(c) }()
	}
	yes, no := 0, 0
	for range f.cs {
		if <-ch {
			if yes++; yes >= f.quorum {
				return true
			}
		} else if no++; no > len(f.cs)-f.quorum {
			return false
		}
	}
	return false
}

func (f *floorLocker) lock(ctx context.Context, key string) (held, error) {
	var raw [16]byte
	rand.Read(raw[:])
	value := hex.EncodeToString(raw[:])
	for i := 0; ; i++ {
		if f.fanout(func(c *redis.Client) bool {
			ok, err := c.SetNX(ctx, key, value, f.c.ttl).Result()
			return err == nil && ok
		}) {
			h := &floorHeld{f: f, key: key, value: value}
			if f.refresh > 0 {
				return &refreshing{held: h, r: startRefresh(f.refresh, h.extend)}, nil
			}
			return h, nil
		}
		(&floorHeld{f: f, key: key, value: value}).release(ctx)
		if f.c.retryLimit >= 0 && i >= f.c.retryLimit {
			return nil, errors.New("floor: not acquired")
		}
		t := time.NewTimer(f.c.delay())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

type floorHeld struct {
	f          *floorLocker
	key, value string
}

func (h *floorHeld) release(ctx context.Context) error {
	if !h.f.fanout(func(c *redis.Client) bool {
		n, err := floorRelease.Run(ctx, c, []string{h.key}, h.value).Int()
		return err == nil && n == 1
	}) {
		return errNotReleased
	}
	return nil
}

func (h *floorHeld) extend(ctx context.Context) error {
	ms := h.f.c.ttl.Milliseconds()
	if !h.f.fanout(func(c *redis.Client) bool {
		n, err := floorExtend.Run(ctx, c, []string{h.key}, h.value, ms).Int()
		return err == nil && n == 1
	}) {
		return errNotReleased
	}
	return nil
}

func (h *floorHeld) lost() bool { return false }

// --- auto-refresh for libraries without one ---

// refresher is the loop a redsync, redislock or floor user writes to keep a
// lock: one goroutine per lock, a ticker, an extend call per tick.
type refresher struct {
	stop, done chan struct{}
	lost       atomic.Bool
}

func startRefresh(every time.Duration, extend func(context.Context) error) *refresher {
	r := &refresher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
				if err := extend(context.Background()); err != nil {
					r.lost.Store(true)
				}
			}
		}
	}()
	return r
}

type refreshing struct {
	held
	r *refresher
}

func (h *refreshing) release(ctx context.Context) error {
	close(h.r.stop)
	<-h.r.done
	return h.held.release(ctx)
}

func (h *refreshing) lost() bool { return h.r.lost.Load() }
