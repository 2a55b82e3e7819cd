package postgres

import (
	"slices"
	"testing"
	"time"

	"github.com/charconstpointer/dlock"
)

// BenchmarkRedlock_one_node measures Lock+Release (TryLock, then Release)
// through a Redlock of one Postgres node, uncontended, and reports the
// median besides the mean:
//
//	DLOCK_POSTGRES_URLS=... go test -run '^$' -bench Redlock_one_node -benchtime 3s
func BenchmarkRedlock_one_node(b *testing.B) {
	urls := serverURLs(b, 1)
	node := newTestNode(b, newPool(b, urls[0]))
	r, err := dlock.New([]dlock.Node{node})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		opts []dlock.LockOpt
	}{
		{"plain", nil},
		{"fenced", []dlock.LockOpt{dlock.WithFencing()}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := b.Context()
			b.ReportAllocs()
			var lat []time.Duration
			for b.Loop() {
				start := time.Now()
				l, err := r.TryLock(ctx, "bench", "", bc.opts...)
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Release(); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
		})
	}
}
