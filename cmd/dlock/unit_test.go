//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/charconstpointer/dlock"
)

func TestRedactRaw(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"redis://user:pw@host:port", "redis://user:xxxxx@host:port"},
		{"redis://:pw@host:1/0", "redis://:xxxxx@host:1/0"},
		{"redis://user@host:1", "redis://user@host:1"},
		{"redis://host:1/p@th", "redis://host:1/p@th"},
		{"redis://u:p@ss@host:x", "redis://u:xxxxx@host:x"},
		{"u:pw@host", "u:xxxxx@host"},
		{"", ""},
	} {
		if got := redactRaw(tc.in); got != tc.want {
			t.Errorf("redactRaw(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestChildEnv(t *testing.T) {
	base := []string{"PATH=/bin", "DLOCK_KEY=outer", "DLOCK_VALUE=outer", "DLOCK_TOKEN=9", "DLOCK_NODES=redis://x"}
	got := childEnv(base, "k", "v", 5, false)
	want := []string{"PATH=/bin", "DLOCK_NODES=redis://x", "DLOCK_KEY=k", "DLOCK_VALUE=v"}
	if !slices.Equal(got, want) {
		t.Errorf("without fencing: %q, want %q", got, want)
	}
	got = childEnv(base, "k", "v", 5, true)
	if want := append(want, "DLOCK_TOKEN=5"); !slices.Equal(got, want) {
		t.Errorf("with fencing: %q, want %q", got, want)
	}
}

func TestValuePrefix(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0123456789abcdef0123456789abcdef", "01234567…"},
		{"0123", "01…"},
		{"x", "…"},
		{"", "…"},
	} {
		if got := valuePrefix(tc.in); got != tc.want {
			t.Errorf("valuePrefix(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNodeErrors_finds_every_node_in_joined_errors(t *testing.T) {
	err := errors.Join(
		fmt.Errorf("head: %w", dlock.ErrNotAcquired),
		&dlock.NodeError{Node: 0, Err: errors.New("a")},
		fmt.Errorf("wrapped: %w", errors.Join(&dlock.NodeError{Node: 2, Err: errors.New("c")})),
	)
	var got []int
	for _, ne := range nodeErrors(err) {
		got = append(got, ne.Node)
	}
	if !slices.Equal(got, []int{0, 2}) {
		t.Errorf("nodes %v, want [0 2]", got)
	}
	if nodeErrors(nil) != nil {
		t.Error("nodeErrors(nil) != nil")
	}
}

// fakeNode is a Node with every capability, counting nothing.
type fakeNode struct{}

func (fakeNode) Acquire(context.Context, string, string, time.Duration) (bool, error) {
	return true, nil
}
func (fakeNode) Extend(context.Context, string, string, time.Duration) (bool, error) {
	return true, nil
}
func (fakeNode) Release(context.Context, string, string) (bool, error) { return true, nil }

type fakeFencer struct{ fakeNode }

func (fakeFencer) AcquireFenced(context.Context, dlock.Request) (dlock.Reply, error) {
	return dlock.Reply{OK: true}, nil
}
func (fakeFencer) ExtendFenced(context.Context, dlock.Request) (dlock.Reply, error) {
	return dlock.Reply{OK: true}, nil
}
func (fakeFencer) Fence(context.Context, dlock.Request) (dlock.Reply, error) {
	return dlock.Reply{OK: true}, nil
}

type fakeGranular struct{ fakeNode }

func (fakeGranular) TTLGranularity() time.Duration { return time.Second }

type fakeBoth struct{ fakeFencer }

func (fakeBoth) TTLGranularity() time.Duration { return time.Second }

func TestTrack_keeps_exactly_the_capabilities_of_the_node(t *testing.T) {
	for _, tc := range []struct {
		name             string
		n                dlock.Node
		fencer, granular bool
	}{
		{"plain", fakeNode{}, false, false},
		{"fencer", fakeFencer{}, true, false},
		{"granular", fakeGranular{}, false, true},
		{"both", fakeBoth{}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var inflight atomic.Int64
			w := track(tc.n, &inflight)
			f, isFencer := w.(dlock.Fencer)
			g, isGranular := w.(dlock.TTLGranularity)
			if isFencer != tc.fencer || isGranular != tc.granular {
				t.Fatalf("wrapped: Fencer %v, TTLGranularity %v; want %v, %v", isFencer, isGranular, tc.fencer, tc.granular)
			}
			if isGranular && g.TTLGranularity() != time.Second {
				t.Errorf("TTLGranularity() = %v, want the node's 1s", g.TTLGranularity())
			}
			if isFencer {
				if r, err := f.Fence(t.Context(), dlock.Request{}); err != nil || !r.OK {
					t.Errorf("Fence = %v, %v; want the node's answer", r, err)
				}
			}
			if ok, err := w.Acquire(t.Context(), "k", "v", time.Second); !ok || err != nil {
				t.Errorf("Acquire = %v, %v; want the node's answer", ok, err)
			}
			if n := inflight.Load(); n != 0 {
				t.Errorf("%d calls in flight after they returned", n)
			}
		})
	}
}

func TestTrack_counts_calls_in_flight(t *testing.T) {
	var inflight atomic.Int64
	block := make(chan struct{})
	w := track(blockingNode{block}, &inflight)
	done := make(chan struct{})
	go func() {
		_, _ = w.Release(context.Background(), "k", "v")
		close(done)
	}()
	for inflight.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if settle(ctx, &inflight) {
		t.Error("settle returned true while a call was in flight")
	}
	close(block)
	<-done
	if !settle(t.Context(), &inflight) {
		t.Error("settle returned false after the call ended")
	}
}

type blockingNode struct{ block chan struct{} }

func (b blockingNode) Acquire(context.Context, string, string, time.Duration) (bool, error) {
	<-b.block
	return true, nil
}
func (b blockingNode) Extend(context.Context, string, string, time.Duration) (bool, error) {
	<-b.block
	return true, nil
}
func (b blockingNode) Release(context.Context, string, string) (bool, error) {
	<-b.block
	return true, nil
}
