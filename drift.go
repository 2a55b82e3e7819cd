package dlock

import (
	"math"
	"time"
)

// minDrift is the fixed part of the clock drift allowance, added to the
// part proportional to the TTL, as the Redlock specification prescribes.
const minDrift = 2 * time.Millisecond

// drift returns the clock drift allowance for a lock with the given TTL:
// ttl*factor + 2ms.
func drift(ttl time.Duration, factor float64) time.Duration {
	d := float64(ttl) * factor
	if d >= float64(math.MaxInt64-minDrift) {
		return math.MaxInt64 // saturate rather than overflow: never valid
	}
	return time.Duration(d) + minDrift
}

// validity returns how long a lock acquired or extended with the given TTL
// stays valid once elapsed has passed since the round started: ttl - elapsed
// - drift. A result ≤ 0 means the lock must not be considered held.
func validity(ttl, elapsed time.Duration, factor float64) time.Duration {
	return ttl - elapsed - drift(ttl, factor)
}

// validUntil returns the instant at which a lock acquired or extended in a
// round that started at start stops being valid: start + ttl - drift.
func validUntil(start time.Time, ttl time.Duration, factor float64) time.Time {
	return start.Add(ttl - drift(ttl, factor))
}
