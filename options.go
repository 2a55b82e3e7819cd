package dlock

import (
	"crypto/rand"
	"io"
	"log/slog"
	"math"
	"time"

	"github.com/benbjohnson/clock"
)

// Defaults of a LockConfig, used where no option says otherwise.
const (
	DefaultTTL           = 10 * time.Second
	DefaultRetryInterval = 100 * time.Millisecond
	DefaultRetryLimit    = 32
	DefaultDriftFactor   = 0.01
)

// minNodeTimeout is the floor of the node timeout derived from a TTL.
const minNodeTimeout = 10 * time.Millisecond

// LockConfig holds the settings of one lock. It is filled from the built-in
// defaults, then the Redlock's WithDefaults options, then the options given
// to the Lock call; each option that is given is validated.
type LockConfig struct {
	// TTL is how long the key lives on a node unless refreshed. Default 10s;
	// must be > 0 and exceed the drift allowance TTL*DriftFactor + 2ms.
	TTL time.Duration `json:"ttl"`
	// RefreshInterval is how often a held lock is extended automatically.
	// Default 0 (no auto-refresh); must be ≥ 0 and < TTL minus the drift
	// allowance. A third of the TTL leaves room for two failed rounds.
	RefreshInterval time.Duration `json:"refresh_interval"`
	// RetryInterval is the pause between attempts to acquire a contended
	// lock. Default 100ms; must be ≥ 0.
	RetryInterval time.Duration `json:"retry_interval"`
	// RetryLimit is how many attempts follow the first one. Default 32;
	// -1 retries until the context ends; must be ≥ -1.
	RetryLimit int `json:"retry_limit"`
	// RetryJitter is the bound of a random delay in [0, RetryJitter) added
	// to each RetryInterval, so that contenders do not retry in lockstep.
	// Default RetryInterval/2; 0 means none; must be ≥ 0.
	RetryJitter time.Duration `json:"retry_jitter"`
	// DriftFactor is the share of the TTL allowed for clock drift between
	// nodes; the allowance is TTL*DriftFactor + 2ms. Default 0.01; must be
	// in [0, 1).
	DriftFactor float64 `json:"drift_factor"`
	// Fencing makes the lock take a fencing token (Lock.Token) that grows
	// with every lock granted on the key. Default off; every node must
	// implement Fencer.
	Fencing bool `json:"fencing"`

	// jitterSet records that RetryJitter was given, so that the default
	// RetryInterval/2 is derived only when it was not.
	jitterSet bool
}

// LockOpt sets one field of a LockConfig. A nil LockOpt is ignored.
type LockOpt func(*LockConfig)

// WithTTL sets the lock's time to live on the nodes. Default 10s; must be
// > 0 and exceed the drift allowance TTL*DriftFactor + 2ms.
func WithTTL(ttl time.Duration) LockOpt { return func(c *LockConfig) { c.TTL = ttl } }

// WithRefreshInterval makes the lock refresh itself every d until it is
// released or lost. Default 0 (no auto-refresh); must be ≥ 0 and < TTL minus
// the drift allowance (TTL*DriftFactor + 2ms).
func WithRefreshInterval(d time.Duration) LockOpt {
	return func(c *LockConfig) { c.RefreshInterval = d }
}

// WithRetryInterval sets the pause between acquire attempts. Default 100ms;
// must be ≥ 0.
func WithRetryInterval(d time.Duration) LockOpt {
	return func(c *LockConfig) { c.RetryInterval = d }
}

// WithRetryLimit sets how many attempts follow the first. Default 32; 0 makes
// one attempt; -1 retries until the context ends; must be ≥ -1.
func WithRetryLimit(n int) LockOpt { return func(c *LockConfig) { c.RetryLimit = n } }

// WithRetryJitter sets the bound of the random delay added to each retry
// interval. Default RetryInterval/2; 0 disables jitter; must be ≥ 0.
func WithRetryJitter(d time.Duration) LockOpt {
	return func(c *LockConfig) { c.RetryJitter = d; c.jitterSet = true }
}

// WithDriftFactor sets the share of the TTL allowed for clock drift.
// Default 0.01; must be in [0, 1).
func WithDriftFactor(f float64) LockOpt { return func(c *LockConfig) { c.DriftFactor = f } }

// WithFencing makes the lock take a fencing token, returned by Lock.Token:
// of two fenced locks on one key, the one granted later has the larger
// token. Default off. Every node must implement Fencer, or Lock returns
// an error wrapping ErrInvalidConfig.
func WithFencing() LockOpt { return func(c *LockConfig) { c.Fencing = true } }

// defaultLockConfig returns the built-in defaults. RetryJitter is derived
// from the final RetryInterval by resolve.
func defaultLockConfig() LockConfig {
	return LockConfig{
		TTL:           DefaultTTL,
		RetryInterval: DefaultRetryInterval,
		RetryLimit:    DefaultRetryLimit,
		DriftFactor:   DefaultDriftFactor,
	}
}

// apply returns c with opts applied in order.
func (c LockConfig) apply(opts []LockOpt) LockConfig {
	for _, opt := range opts {
		if opt != nil {
			opt(&c)
		}
	}
	return c
}

// resolve derives what was left to derive and validates the result.
func (c LockConfig) resolve() (LockConfig, error) {
	if !c.jitterSet && c.RetryJitter == 0 {
		c.RetryJitter = c.RetryInterval / 2
	}
	return c, c.validate()
}

func (c LockConfig) validate() error {
	switch {
	case c.TTL <= 0:
		return invalid("TTL", c.TTL, "must be > 0")
	case c.RetryInterval < 0:
		return invalid("RetryInterval", c.RetryInterval, "must be ≥ 0")
	case c.RetryJitter < 0:
		return invalid("RetryJitter", c.RetryJitter, "must be ≥ 0")
	case c.RetryLimit < -1:
		return invalid("RetryLimit", c.RetryLimit, "must be ≥ -1 (-1 retries until the context ends)")
	case math.IsNaN(c.DriftFactor) || c.DriftFactor < 0 || c.DriftFactor >= 1:
		return invalid("DriftFactor", c.DriftFactor, "must be in [0, 1)")
	case c.RefreshInterval < 0:
		return invalid("RefreshInterval", c.RefreshInterval, "must be ≥ 0 (0 disables auto-refresh)")
	case drift(c.TTL, c.DriftFactor) >= c.TTL:
		return invalid("TTL", c.TTL, "must exceed the drift allowance TTL*DriftFactor + 2ms ("+drift(c.TTL, c.DriftFactor).String()+"), or no lock is ever valid")
	case c.RefreshInterval >= c.TTL-drift(c.TTL, c.DriftFactor):
		return invalid("RefreshInterval", c.RefreshInterval, "must be < TTL minus the drift allowance ("+(c.TTL-drift(c.TTL, c.DriftFactor)).String()+"), or the lock expires before its first refresh")
	}
	return nil
}

// Config holds the settings of a Redlock, set through Options given to New.
type Config struct {
	// Clock reads time and makes timers for every wait and deadline.
	// Default clock.New(), the real clock.
	Clock clock.Clock
	// Logger receives attempts at debug level and losses at warn level.
	// Lock values are never logged. Default: discard.
	Logger *slog.Logger
	// KeyPrefix is prepended to every key on the nodes. Default "".
	KeyPrefix string
	// Defaults are the LockConfig every Lock call starts from.
	Defaults LockConfig
	// NodeTimeout bounds one node call. Default 0: TTL*0.05, at least 10ms,
	// for each lock.
	NodeTimeout time.Duration
	// Rand is the source of generated lock values and retry jitter.
	// Default crypto/rand.Reader.
	Rand io.Reader
	// RestartGuard is how long a node that lost its data must wait, by its
	// own clock, before it grants again. Default 0 (off); must be ≥ 0.
	RestartGuard time.Duration
	// MaxInFlight bounds the calls in flight to one node, over all locks
	// of the Redlock, beyond which an acquire is not sent. Default 0: 4
	// times the node client's pool size (RedisNode), else 64.
	MaxInFlight int

	// errs collects what the options found wrong, for New to return.
	errs []error
}

// Option sets one field of a Redlock's Config. A nil Option is ignored.
type Option func(*Config)

// WithClock sets the clock used for every time read, timer and deadline.
// Default clock.New(); must not be nil.
func WithClock(c clock.Clock) Option {
	return func(cfg *Config) {
		if c == nil {
			cfg.errs = append(cfg.errs, invalid("Clock", "nil", "must not be nil"))
			return
		}
		cfg.Clock = c
	}
}

// WithLogger sets the logger. Default: a logger that discards everything;
// must not be nil.
func WithLogger(l *slog.Logger) Option {
	return func(cfg *Config) {
		if l == nil {
			cfg.errs = append(cfg.errs, invalid("Logger", "nil", "must not be nil"))
			return
		}
		cfg.Logger = l
	}
}

// WithKeyPrefix sets a prefix prepended to every key on the nodes; Lock.Key
// still returns the key as given. Default "".
func WithKeyPrefix(p string) Option {
	return func(cfg *Config) { cfg.KeyPrefix = p }
}

// WithDefaults sets the LockConfig that every Lock call starts from, over the
// built-in defaults. The result is validated by New.
func WithDefaults(opts ...LockOpt) Option {
	return func(cfg *Config) { cfg.Defaults = cfg.Defaults.apply(opts) }
}

// WithNodeTimeout bounds each node call, and the wait for a node's answer in
// a round. Default TTL*0.05 of each lock, at least 10ms; must be > 0.
//
// The round decides on dlock's own timer and never waits on a hung node, but
// go-redis only cuts a call short at a context deadline when its client was
// built with ContextTimeoutEnabled: true; otherwise a straggling call runs
// in the background until the client's own ReadTimeout.
func WithNodeTimeout(d time.Duration) Option {
	return func(cfg *Config) {
		if d <= 0 {
			cfg.errs = append(cfg.errs, invalid("NodeTimeout", d, "must be > 0"))
			return
		}
		cfg.NodeTimeout = d
	}
}

// WithRand sets the source of generated lock values and retry jitter, for
// reproducible simulations. Default crypto/rand.Reader; must not be nil. The
// source is read under a lock, so it need not be safe for concurrent use.
func WithRand(r io.Reader) Option {
	return func(cfg *Config) {
		if r == nil {
			cfg.errs = append(cfg.errs, invalid("Rand", "nil", "must not be nil"))
			return
		}
		cfg.Rand = r
	}
}

// WithRestartGuard makes every node that lost its data (restarted without
// persistence, flushed, failed over to an empty replica, or new) grant
// nothing until d has passed by its own clock since it came back, enforced
// by the node itself. d should be at least the largest TTL of the locks on
// the nodes. Default 0 (off); must be ≥ 0. Every node must implement
// Fencer, or New returns an error wrapping ErrInvalidConfig.
func WithRestartGuard(d time.Duration) Option {
	return func(cfg *Config) {
		if d < 0 {
			cfg.errs = append(cfg.errs, invalid("RestartGuard", d, "must be ≥ 0 (0 disables the guard)"))
			return
		}
		cfg.RestartGuard = d
	}
}

// WithMaxInFlight bounds the calls in flight to each node, over all the
// locks of the Redlock, beyond which an acquire is not sent: it counts as
// failed for that node (there is nothing to undo), so that a slow or hung
// node cannot pile up calls, goroutines and memory however many locks are
// taken. Refreshes and releases are always sent (each lock has at most two
// calls queued per node), so that a held lock is never lost to the bound.
// Default: 4 times the node client's pool size (RedisNode: go-redis's
// PoolSize), or 64 for other nodes; must be > 0.
func WithMaxInFlight(n int) Option {
	return func(cfg *Config) {
		if n <= 0 {
			cfg.errs = append(cfg.errs, invalid("MaxInFlight", n, "must be > 0"))
			return
		}
		cfg.MaxInFlight = n
	}
}

// defaultConfig returns a Config with every default filled.
func defaultConfig() Config {
	return Config{
		Clock:    clock.New(),
		Logger:   slog.New(slog.DiscardHandler),
		Defaults: defaultLockConfig(),
		Rand:     rand.Reader,
	}
}
