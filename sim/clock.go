package sim

import (
	"context"
	"math"
	"time"

	"github.com/benbjohnson/clock"
)

// scale multiplies d by f, rounding to the nanosecond.
func scale(d time.Duration, f float64) time.Duration {
	return time.Duration(math.Round(float64(d) * f))
}

// skew maps true time to a local clock: local = epoch + offset + (true -
// epoch) × (1 + rate). Clients and nodes each have one.
type skew struct {
	epoch  time.Time // true start of the run; local and true agree here but for offset
	offset time.Duration
	rate   float64
}

// local returns the local reading at true instant t.
func (s skew) local(t time.Time) time.Time {
	return s.epoch.Add(s.offset + scale(t.Sub(s.epoch), 1+s.rate))
}

// trueAt returns the true instant at which the local clock reads l.
func (s skew) trueAt(l time.Time) time.Time {
	return s.epoch.Add(scale(l.Sub(s.epoch)-s.offset, 1/(1+s.rate)))
}

// trueDur converts a local duration to the true duration it takes.
func (s skew) trueDur(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return scale(d, 1/(1+s.rate))
}

// skewClock is a client's clock.Clock: it wraps the real clock (which inside
// a synctest bubble runs on the bubble's fake time) and shifts and stretches
// it. Readings are transformed; durations given to timers are converted to
// true durations, so a timer of d fires when the local clock has advanced
// by d. (Timer.Reset and Ticker.Reset on the returned values take true
// durations: clock.Timer cannot be wrapped.)
type skewClock struct {
	base clock.Clock
	s    skew
}

var _ clock.Clock = (*skewClock)(nil)

func newSkewClock(s skew) *skewClock { return &skewClock{base: clock.New(), s: s} }

func (c *skewClock) Now() time.Time { return c.s.local(c.base.Now()) }

func (c *skewClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

func (c *skewClock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }

func (c *skewClock) After(d time.Duration) <-chan time.Time {
	return c.Timer(d).C
}

func (c *skewClock) AfterFunc(d time.Duration, f func()) *clock.Timer {
	return c.base.AfterFunc(c.s.trueDur(d), f)
}

func (c *skewClock) Sleep(d time.Duration) { c.base.Sleep(c.s.trueDur(d)) }

func (c *skewClock) Tick(d time.Duration) <-chan time.Time { return c.Ticker(d).C }

func (c *skewClock) Ticker(d time.Duration) *clock.Ticker { return c.base.Ticker(c.s.trueDur(d)) }

// Timer returns a timer that fires after d on this clock. Its channel
// carries the true instant, which callers of the library do not inspect.
func (c *skewClock) Timer(d time.Duration) *clock.Timer { return c.base.Timer(c.s.trueDur(d)) }

func (c *skewClock) WithDeadline(parent context.Context, d time.Time) (context.Context, context.CancelFunc) {
	return context.WithDeadline(parent, c.s.trueAt(d))
}

func (c *skewClock) WithTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, c.s.trueDur(d))
}
