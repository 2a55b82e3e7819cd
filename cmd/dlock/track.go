//go:build unix

package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/charconstpointer/dlock"
)

// tracked wraps a Node to count the calls in flight on all nodes, so that
// dlock can wait, before it exits, for the calls the library leaves running
// in the background (stragglers of the acquire round, releases after the
// majority answered); an exiting process would cut them short.
//
// A wrapper hides the optional capabilities of the Node it wraps, so track
// returns one that forwards each capability the library may use (Fencer,
// TTLGranularity), exactly when the wrapped Node has it.
type tracked struct {
	dlock.Node
	inflight *atomic.Int64
}

// track wraps n, counting its calls in inflight.
func track(n dlock.Node, inflight *atomic.Int64) dlock.Node {
	t := &tracked{Node: n, inflight: inflight}
	f, fencer := n.(dlock.Fencer)
	g, granular := n.(dlock.TTLGranularity)
	switch {
	case fencer && granular:
		return &trackedFencerGranular{&trackedFencer{tracked: t, f: f}, g}
	case fencer:
		return &trackedFencer{tracked: t, f: f}
	case granular:
		return &trackedGranular{t, g}
	}
	return t
}

// trackedGranular is a tracked Node that is also a dlock.TTLGranularity.
type trackedGranular struct {
	*tracked
	g dlock.TTLGranularity
}

// TTLGranularity implements dlock.TTLGranularity.
func (t *trackedGranular) TTLGranularity() time.Duration { return t.g.TTLGranularity() }

// trackedFencerGranular is a tracked Node that is also a dlock.Fencer and a
// dlock.TTLGranularity.
type trackedFencerGranular struct {
	*trackedFencer
	g dlock.TTLGranularity
}

// TTLGranularity implements dlock.TTLGranularity.
func (t *trackedFencerGranular) TTLGranularity() time.Duration { return t.g.TTLGranularity() }

func (t *tracked) begin() func() {
	t.inflight.Add(1)
	return func() { t.inflight.Add(-1) }
}

// Acquire implements dlock.Node.
func (t *tracked) Acquire(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	defer t.begin()()
	return t.Node.Acquire(ctx, key, value, ttl)
}

// Extend implements dlock.Node.
func (t *tracked) Extend(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	defer t.begin()()
	return t.Node.Extend(ctx, key, value, ttl)
}

// Release implements dlock.Node.
func (t *tracked) Release(ctx context.Context, key, value string) (bool, error) {
	defer t.begin()()
	return t.Node.Release(ctx, key, value)
}

// trackedFencer is a tracked Node that is also a dlock.Fencer.
type trackedFencer struct {
	*tracked
	f dlock.Fencer
}

// AcquireFenced implements dlock.Fencer.
func (t *trackedFencer) AcquireFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	defer t.begin()()
	return t.f.AcquireFenced(ctx, req)
}

// ExtendFenced implements dlock.Fencer.
func (t *trackedFencer) ExtendFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	defer t.begin()()
	return t.f.ExtendFenced(ctx, req)
}

// Fence implements dlock.Fencer.
func (t *trackedFencer) Fence(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	defer t.begin()()
	return t.f.Fence(ctx, req)
}

// settle waits until no call is in flight or ctx ends, and reports whether
// the calls settled.
func settle(ctx context.Context, inflight *atomic.Int64) bool {
	for inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Millisecond):
		}
	}
	return true
}
