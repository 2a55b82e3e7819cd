package dlock_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/charconstpointer/dlock"
)

// nopNode grants everything at once: benchmarks over it measure dlock's own
// overhead per operation, without any backend.
type nopNode struct{ id int }

func (nopNode) Acquire(context.Context, string, string, time.Duration) (bool, error) {
	return true, nil
}
func (nopNode) Extend(context.Context, string, string, time.Duration) (bool, error) {
	return true, nil
}
func (nopNode) Release(context.Context, string, string) (bool, error) { return true, nil }

// BenchmarkOverhead_LockRelease measures one Lock+Release through the
// library over nodes that answer at once, per node count.
func BenchmarkOverhead_LockRelease(b *testing.B) {
	for _, n := range []int{1, 3, 5, 7} {
		b.Run("nodes="+strconv.Itoa(n), func(b *testing.B) {
			ns := make([]dlock.Node, n)
			for i := range ns {
				ns[i] = nopNode{id: i}
			}
			r, err := dlock.New(ns)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				l, err := r.LockContext(ctx, "k", "")
				if err != nil {
					b.Fatal(err)
				}
				if err := l.ReleaseContext(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
