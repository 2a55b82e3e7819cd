package dlock

import (
	"testing"
	"time"
)

func TestDrift(t *testing.T) {
	for _, tc := range []struct {
		ttl    time.Duration
		factor float64
		want   time.Duration
	}{
		{10 * time.Second, 0.01, 102 * time.Millisecond},
		{time.Second, 0.01, 12 * time.Millisecond},
		{time.Second, 0, 2 * time.Millisecond},
		{100 * time.Millisecond, 0.5, 52 * time.Millisecond},
		{time.Millisecond, 0.01, 2*time.Millisecond + 10*time.Microsecond},
	} {
		if got := drift(tc.ttl, tc.factor); got != tc.want {
			t.Errorf("drift(%v, %v) = %v, want %v", tc.ttl, tc.factor, got, tc.want)
		}
	}
}

func TestValidity(t *testing.T) {
	for _, tc := range []struct {
		ttl, elapsed time.Duration
		factor       float64
		want         time.Duration
	}{
		{10 * time.Second, 0, 0.01, 10*time.Second - 102*time.Millisecond},
		{10 * time.Second, time.Second, 0.01, 9*time.Second - 102*time.Millisecond},
		{100 * time.Millisecond, 97 * time.Millisecond, 0.01, 0},                 // boundary: not valid
		{100 * time.Millisecond, 96 * time.Millisecond, 0.01, time.Millisecond},  // just valid
		{100 * time.Millisecond, 98 * time.Millisecond, 0.01, -time.Millisecond}, // past it
		{time.Millisecond, 0, 0, -time.Millisecond},                              // a TTL below the fixed drift is never valid
		{time.Second, 2 * time.Second, 0.01, -time.Second - 12*time.Millisecond}, // elapsed beyond TTL
	} {
		if got := validity(tc.ttl, tc.elapsed, tc.factor); got != tc.want {
			t.Errorf("validity(%v, %v, %v) = %v, want %v", tc.ttl, tc.elapsed, tc.factor, got, tc.want)
		}
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got, want := validUntil(start, time.Second, 0.01), start.Add(988*time.Millisecond); !got.Equal(want) {
		t.Errorf("validUntil = %v, want %v", got, want)
	}
}
