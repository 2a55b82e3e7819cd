package etcd_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/charconstpointer/dlock"
)

// BenchmarkLockRelease measures an uncontended Lock+Release through a
// Redlock of one etcd node (one Grant and one transaction to lock, one
// transaction and one Revoke to release), reporting the median and 99th
// percentile of one Lock+Release in microseconds beside the mean:
//
//	DLOCK_ETCD_ENDPOINTS=... go test -run '^$' -bench LockRelease -benchtime 2000x
func BenchmarkLockRelease(b *testing.B) {
	for _, c := range []struct {
		name string
		opts []dlock.LockOpt
	}{
		{"plain", nil},
		{"fencing", []dlock.LockOpt{dlock.WithFencing()}},
	} {
		b.Run(c.name, func(b *testing.B) {
			n, _, _ := newNode(b)
			r, err := dlock.New([]dlock.Node{n})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			opts := append([]dlock.LockOpt{dlock.WithTTL(10 * time.Second)}, c.opts...)
			var lat []time.Duration
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				l, err := r.TryLock(ctx, "bench", "", opts...)
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Release(); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
			}
		})
	}
}
