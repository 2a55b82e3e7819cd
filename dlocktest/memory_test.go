package dlocktest_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/dlocktest"
)

func wantReply(t *testing.T, call string, got dlock.Reply, err error, want dlock.Reply) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", call, err)
	}
	if got != want {
		t.Errorf("%s = %+v, want %+v", call, got, want)
	}
}

func TestMemoryNode_expiry_synctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := dlocktest.NewMemoryNode(nil)
		ctx := t.Context()
		if ok, err := n.Acquire(ctx, "k", "v", time.Second); !ok || err != nil {
			t.Fatalf("Acquire = %v, %v; want true, nil", ok, err)
		}
		time.Sleep(time.Second - time.Nanosecond)
		if v, ok := n.Get("k"); !ok || v != "v" {
			t.Errorf("Get 1ns before expiry = %q, %v; want \"v\", true", v, ok)
		}
		s, err := n.Inspect(ctx, "k")
		if err != nil || !s.Held || s.TTL != time.Nanosecond {
			t.Errorf("Inspect 1ns before expiry = %+v, %v; want held with TTL 1ns", s, err)
		}
		time.Sleep(time.Nanosecond)
		if v, ok := n.Get("k"); ok {
			t.Errorf("Get at expiry = %q, true; want not held", v)
		}
		if ok, err := n.Extend(ctx, "k", "v", time.Second); !ok || err != nil {
			t.Errorf("Extend of an expired key = %v, %v; want true, nil (it re-creates the key)", ok, err)
		}
	})
}

func TestMemoryNode_mock_clock(t *testing.T) {
	c := clock.NewMock()
	n := dlocktest.NewMemoryNode(c)
	if ok, err := n.Acquire(t.Context(), "k", "v", time.Minute); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v; want true, nil", ok, err)
	}
	c.Add(time.Minute - 1)
	if got, want := n.Keys(), []string{"k"}; !slices.Equal(got, want) {
		t.Errorf("Keys before expiry = %q, want %q", got, want)
	}
	c.Add(1)
	if got := n.Keys(); len(got) != 0 {
		t.Errorf("Keys at expiry = %q, want none", got)
	}
}

func TestMemoryNode_Keys_sorted(t *testing.T) {
	n := dlocktest.NewMemoryNode(nil)
	for _, k := range []string{"b", "c", "a"} {
		if _, err := n.Acquire(t.Context(), k, "v", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := n.Keys(), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("Keys = %q, want %q", got, want)
	}
}

func TestMemoryNode_invalid_ttl(t *testing.T) {
	n := dlocktest.NewMemoryNode(nil)
	for _, ttl := range []time.Duration{0, -time.Second} {
		if ok, err := n.Acquire(t.Context(), "k", "v", ttl); ok || err == nil {
			t.Errorf("Acquire with TTL %v = %v, %v; want false and an error", ttl, ok, err)
		}
		if ok, err := n.Extend(t.Context(), "k", "v", ttl); ok || err == nil {
			t.Errorf("Extend with TTL %v = %v, %v; want false and an error", ttl, ok, err)
		}
	}
	if keys := n.Keys(); len(keys) != 0 {
		t.Errorf("Keys after refused calls = %q, want none", keys)
	}
}

// TestMemoryNode_guard follows a new node through its restart guard, in
// fake time.
func TestMemoryNode_guard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const guard = 10 * time.Second
		ctx := t.Context()
		cameBack := time.Now()
		floor := uint64(cameBack.UnixMicro())
		n := dlocktest.NewMemoryNode(nil)

		// Without a guard a new node grants, writes no marker, and starts
		// counters at 0.
		r, err := n.AcquireFenced(ctx, dlock.Request{Key: "old", Value: "v", TTL: time.Hour, Fencing: true})
		wantReply(t, "AcquireFenced without a guard", r, err, dlock.Reply{OK: true, Counter: 1})

		// The first guarded request writes the marker and is refused.
		r, err = n.AcquireFenced(ctx, dlock.Request{Key: "k", Value: "v", TTL: time.Hour, Guard: guard, Fencing: true})
		wantReply(t, "first AcquireFenced with a guard", r, err, dlock.Reply{Guarded: true})
		if s, err := n.Inspect(ctx, "k"); err != nil || s != (dlock.KeyState{}) {
			t.Errorf("Inspect after a guarded refusal = %+v, %v; want nothing written", s, err)
		}

		time.Sleep(guard - time.Nanosecond)
		r, err = n.AcquireFenced(ctx, dlock.Request{Key: "k", Value: "v", TTL: time.Hour, Guard: guard, Fencing: true})
		wantReply(t, "AcquireFenced 1ns before the guard passes", r, err, dlock.Reply{Guarded: true})
		r, err = n.ExtendFenced(ctx, dlock.Request{Key: "k", Value: "v", TTL: time.Hour, Guard: guard, Token: 5})
		wantReply(t, "ExtendFenced re-creating 1ns before the guard passes", r, err, dlock.Reply{Guarded: true})
		r, err = n.ExtendFenced(ctx, dlock.Request{Key: "old", Value: "v", TTL: time.Hour, Guard: guard, Token: 1})
		wantReply(t, "ExtendFenced of a held key while guarded", r, err, dlock.Reply{OK: true, Counter: 1})
		r, err = n.Fence(ctx, dlock.Request{Key: "old", Value: "v", Guard: guard, Token: 2})
		wantReply(t, "Fence of a held key while guarded", r, err, dlock.Reply{OK: true, Counter: 2})
		// A request without a guard ignores the marker; counters created
		// after the marker start at its floor.
		r, err = n.AcquireFenced(ctx, dlock.Request{Key: "other", Value: "v", TTL: time.Hour, Fencing: true})
		wantReply(t, "AcquireFenced without a guard while the marker is young", r, err, dlock.Reply{OK: true, Counter: floor + 1})

		time.Sleep(time.Nanosecond)
		r, err = n.AcquireFenced(ctx, dlock.Request{Key: "k", Value: "v", TTL: time.Hour, Guard: guard, Fencing: true})
		wantReply(t, "AcquireFenced once the guard has passed", r, err, dlock.Reply{OK: true, Counter: floor + 1})
		r, err = n.AcquireFenced(ctx, dlock.Request{Key: "k2", Value: "v", TTL: time.Hour, Guard: 2 * guard})
		wantReply(t, "AcquireFenced with a longer guard than has passed", r, err, dlock.Reply{Guarded: true})
	})
}

// TestMemoryNode_Wipe shows why the guard exists: without it a wiped node
// starts its counters again at 0; with it, at a floor above them.
func TestMemoryNode_Wipe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		n := dlocktest.NewMemoryNode(nil)
		n.Provision()
		req := dlock.Request{Key: "k", Value: "v", TTL: time.Hour, Fencing: true}
		before, err := n.AcquireFenced(ctx, req)
		if err != nil || !before.OK {
			t.Fatalf("AcquireFenced on a provisioned node = %+v, %v; want OK", before, err)
		}

		n.Wipe()
		if keys := n.Keys(); len(keys) != 0 {
			t.Errorf("Keys after Wipe = %q, want none", keys)
		}
		if s, err := n.Inspect(ctx, "k"); err != nil || s != (dlock.KeyState{}) {
			t.Errorf("Inspect after Wipe = %+v, %v; want nothing", s, err)
		}
		r, err := n.AcquireFenced(ctx, req)
		wantReply(t, "AcquireFenced without a guard after Wipe", r, err, dlock.Reply{OK: true, Counter: 1})
		if r.Counter >= before.Counter {
			t.Errorf("counter after Wipe without a guard = %d, want it below %d (the token went backwards)", r.Counter, before.Counter)
		}

		// The floor is the node's clock in microseconds when it came back:
		// above every counter of before as long as the node gave out fewer
		// than one token per microsecond.
		const guard = time.Minute
		time.Sleep(time.Second)
		n.Wipe()
		req.Guard = guard
		r, err = n.AcquireFenced(ctx, req)
		wantReply(t, "AcquireFenced with a guard after Wipe", r, err, dlock.Reply{Guarded: true})
		time.Sleep(guard)
		r, err = n.AcquireFenced(ctx, req)
		if err != nil || !r.OK || r.Counter <= before.Counter {
			t.Errorf("AcquireFenced once the guard passed after Wipe = %+v, %v; want OK with Counter above %d", r, err, before.Counter)
		}
	})
}

func TestMemoryNode_Provision(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := dlocktest.NewMemoryNode(nil)
		n.Provision()
		floor := uint64(time.Now().UnixMicro())
		r, err := n.AcquireFenced(t.Context(), dlock.Request{Key: "k", Value: "v", TTL: time.Hour, Guard: time.Hour, Fencing: true})
		wantReply(t, "AcquireFenced with a guard on a provisioned node", r, err, dlock.Reply{OK: true, Counter: floor + 1})
	})
}

func TestMemoryNode_SetFault(t *testing.T) {
	errDown := errors.New("node down")
	ctx := t.Context()
	n := dlocktest.NewMemoryNode(nil)
	if ok, err := n.Acquire(ctx, "held", "v", time.Hour); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	n.SetFault(errDown)
	req := dlock.Request{Key: "k", Value: "v", TTL: time.Hour, Guard: time.Hour, Fencing: true, Token: 7}
	calls := []struct {
		name string
		call func() error
	}{
		{"Acquire", func() error { _, err := n.Acquire(ctx, "k", "v", time.Hour); return err }},
		{"Extend", func() error { _, err := n.Extend(ctx, "k", "v", time.Hour); return err }},
		{"Release", func() error { _, err := n.Release(ctx, "held", "v"); return err }},
		{"AcquireFenced", func() error { _, err := n.AcquireFenced(ctx, req); return err }},
		{"ExtendFenced", func() error { _, err := n.ExtendFenced(ctx, req); return err }},
		{"Fence", func() error { _, err := n.Fence(ctx, req); return err }},
		{"Inspect", func() error { _, err := n.Inspect(ctx, "k"); return err }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, errDown) {
			t.Errorf("%s on a faulty node: err = %v, want %v", c.name, err, errDown)
		}
	}
	if got, want := n.Keys(), []string{"held"}; !slices.Equal(got, want) {
		t.Errorf("Keys after failed calls = %q, want %q (nothing changed)", got, want)
	}

	n.SetFault(nil)
	// No marker was written while down: a guarded request writes it now.
	r, err := n.AcquireFenced(ctx, req)
	wantReply(t, "AcquireFenced with a guard once back", r, err, dlock.Reply{Guarded: true})
	if ok, err := n.Release(ctx, "held", "v"); !ok || err != nil {
		t.Errorf("Release once back = %v, %v; want true, nil (data kept)", ok, err)
	}
}

func TestMemoryNode_context_done(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	n := dlocktest.NewMemoryNode(nil)
	if ok, err := n.Acquire(ctx, "k", "v", time.Hour); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("Acquire with a canceled context = %v, %v; want false and context.Canceled", ok, err)
	}
	if keys := n.Keys(); len(keys) != 0 {
		t.Errorf("Keys after a canceled Acquire = %q, want none", keys)
	}
}

func TestMemoryNode_counter_at_maximum(t *testing.T) {
	ctx := t.Context()
	n := dlocktest.NewMemoryNode(nil)
	req := dlock.Request{Key: "k", Value: "v", TTL: time.Hour, Fencing: true, Token: math.MaxUint64}
	if r, err := n.AcquireFenced(ctx, req); err != nil || !r.OK {
		t.Fatalf("AcquireFenced = %+v, %v", r, err)
	}
	r, err := n.Fence(ctx, req)
	wantReply(t, "Fence to the maximum", r, err, dlock.Reply{OK: true, Counter: math.MaxUint64})
	if ok, err := n.Release(ctx, "k", "v"); !ok || err != nil {
		t.Fatalf("Release = %v, %v", ok, err)
	}
	if r, err := n.AcquireFenced(ctx, req); err == nil || r.OK {
		t.Errorf("AcquireFenced with the counter at its maximum = %+v, %v; want an error, not a wrap to 0", r, err)
	}
}
