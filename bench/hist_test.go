package bench

import (
	"math/bits"
	"testing"
	"time"
)

// hist is a log-linear latency histogram (HdrHistogram-style) with 32
// sub-buckets per power of two, so a reported quantile is within ~3% of the
// true value. Recording never allocates, so it does not disturb allocs/op.
type hist struct {
	counts [64 << subBits]uint64
	n      uint64
}

const (
	subBits  = 5
	subCount = 1 << subBits
)

func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(v) - 1 // v in [2^e, 2^(e+1))
	shift := e - subBits
	return (shift+1)<<subBits + int((v>>shift)&(subCount-1))
}

// bucketMid returns the middle of bucket i's range of values.
func bucketMid(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	shift := i>>subBits - 1
	lo := uint64(subCount+i&(subCount-1)) << shift
	return lo + (uint64(1)<<shift)/2
}

func (h *hist) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.n++
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the q-quantile (0 < q ≤ 1) of the recorded durations.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return time.Duration(bucketMid(i))
		}
	}
	return time.Duration(bucketMid(len(h.counts) - 1))
}

// us converts a duration to microseconds for b.ReportMetric.
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func TestHist(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.quantile(tc.q)
		if lo, hi := tc.want*96/100, tc.want*104/100; got < lo || got > hi {
			t.Errorf("quantile(%v) = %v, want %v ±4%%", tc.q, got, tc.want)
		}
	}
	for v := uint64(0); v < 1<<20; v += 7 {
		i := bucketOf(v)
		if m := bucketMid(i); bucketOf(m) != i {
			t.Fatalf("bucketMid(%d) = %d is in bucket %d", i, m, bucketOf(m))
		}
	}
}
