package sim

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/dlocktest"
)

// direct is a simulated node called directly, in real time, without the
// simulated network: it puts the node's dlock.Fencer contract through
// dlocktest's conformance suite, the one dlocktest.MemoryNode and RedisNode
// pass.
type direct struct{ n *node }

var (
	_ dlock.Fencer    = direct{}
	_ dlock.Inspector = direct{}
)

func (d direct) do(ctx context.Context, o op, req dlock.Request) (dlock.Reply, error) {
	if err := ctx.Err(); err != nil {
		return dlock.Reply{}, fmt.Errorf("sim: direct node: %w", err)
	}
	if (o == opAcquire || o == opExtend || o == opAcquireFenced || o == opExtendFenced) && req.TTL <= 0 {
		return dlock.Reply{}, fmt.Errorf("sim: direct node: ttl %v: must be > 0", req.TTL)
	}
	r, _, err := d.n.apply(time.Now(), o, req)
	return r, err
}

func (d direct) Acquire(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	r, err := d.do(ctx, opAcquire, dlock.Request{Key: key, Value: value, TTL: ttl})
	return r.OK, err
}

func (d direct) Extend(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	r, err := d.do(ctx, opExtend, dlock.Request{Key: key, Value: value, TTL: ttl})
	return r.OK, err
}

func (d direct) Release(ctx context.Context, key, value string) (bool, error) {
	r, err := d.do(ctx, opRelease, dlock.Request{Key: key, Value: value})
	return r.OK, err
}

func (d direct) AcquireFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	return d.do(ctx, opAcquireFenced, req)
}

func (d direct) ExtendFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	return d.do(ctx, opExtendFenced, req)
}

func (d direct) Fence(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	return d.do(ctx, opFence, req)
}

func (d direct) Inspect(ctx context.Context, key string) (dlock.KeyState, error) {
	if err := ctx.Err(); err != nil {
		return dlock.KeyState{}, fmt.Errorf("sim: direct node: %w", err)
	}
	return d.n.inspect(time.Now(), key)
}

func newTestNode() *node {
	return &node{up: true, store: map[string]entry{}, counters: map[string]uint64{}, clock: skew{epoch: time.Now()}}
}

// TestNodeConformance runs dlocktest's conformance suite against one
// simulated node, over real time (a few seconds).
func TestNodeConformance(t *testing.T) {
	n := newTestNode()
	dlocktest.TestNode(t, func(*testing.T) dlock.Node { return direct{n} })
}

// TestNodeRestart checks what the suite leaves to each backend: a crash
// without persistence loses counters and marker; without a guard the
// counter starts again at 0; with one, the node is guarded for the guard's
// length by its own clock, and counters start at the floor.
func TestNodeRestart(t *testing.T) {
	ctx := t.Context()
	n := newTestNode()
	d := direct{n}
	const key, guard = "k", time.Hour
	fenced := func(v string, g time.Duration) dlock.Reply {
		t.Helper()
		r, err := d.AcquireFenced(ctx, dlock.Request{Key: key, Value: v, TTL: time.Minute, Guard: g, Fencing: true})
		if err != nil {
			t.Fatal(err)
		}
		if r.OK {
			if _, err := d.Release(ctx, key, v); err != nil {
				t.Fatal(err)
			}
		}
		return r
	}
	if got := fenced("a", 0); !got.OK || got.Counter != 1 {
		t.Fatalf("first grant = %+v, want OK, counter 1", got)
	}
	fenced("b", 0)
	n.crash()
	n.restart()
	if got := fenced("c", 0); !got.OK || got.Counter != 1 {
		t.Fatalf("grant after a crash, no guard = %+v, want OK, counter 1 (counters lost)", got)
	}
	n.crash()
	n.restart()
	if got := fenced("d", guard); got.OK || !got.Guarded {
		t.Fatalf("grant after a crash with a guard = %+v, want Guarded", got)
	}
	floor := n.marker.floor
	if want := uint64(n.now(time.Now()).UnixMicro()); floor > want || floor+uint64(time.Minute/time.Microsecond) < want {
		t.Fatalf("floor = %d, want about the node clock in µs (%d)", floor, want)
	}
	n.jump(guard) // the node's own clock says the guard has passed
	if got := fenced("e", guard); !got.OK || got.Counter != floor+1 {
		t.Fatalf("grant once the guard passed = %+v, want OK, counter %d (the floor + 1)", got, floor+1)
	}
}
