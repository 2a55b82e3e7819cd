package dlock_test

import (
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/dlocktest"
)

func memoryNodes(n int) ([]*dlocktest.MemoryNode, []dlock.Node) {
	ms := make([]*dlocktest.MemoryNode, n)
	ns := make([]dlock.Node, n)
	for i := range ms {
		ms[i] = dlocktest.NewMemoryNode(nil)
		ns[i] = ms[i]
	}
	return ms, ns
}

func counterOf(t *testing.T, m *dlocktest.MemoryNode, key string) uint64 {
	t.Helper()
	st, err := m.Inspect(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	return st.Counter
}

// Fenced locks taken one after another get tokens that only grow, and a
// token is held by a majority of the nodes' counters when Lock returns.
func TestLock_fencing_tokens_grow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms, ns := memoryNodes(5)
		r, err := dlock.New(ns, dlock.WithDefaults(dlock.WithFencing()))
		if err != nil {
			t.Fatal(err)
		}
		var last uint64
		for i := range 20 {
			l, err := r.Lock("k", "")
			if err != nil {
				t.Fatal(err)
			}
			if l.Token() <= last {
				t.Fatalf("lock %d: token %d after %d, want it larger", i, l.Token(), last)
			}
			last = l.Token()
			at := 0
			for _, m := range ms {
				if counterOf(t, m, "k") == l.Token() {
					at++
				}
			}
			if at < r.Quorum() {
				t.Errorf("lock %d: token %d on %d nodes, want a majority", i, l.Token(), at)
			}
			if i%3 == 0 {
				if err := l.Refresh(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Release(); err != nil {
				t.Fatal(err)
			}
			if i%4 == 0 {
				time.Sleep(time.Minute) // keys gone, counters kept
			}
		}
		// Unfenced locks have token 0.
		l, err := r.Lock("k", "", func(c *dlock.LockConfig) { c.Fencing = false })
		if err != nil {
			t.Fatal(err)
		}
		if l.Token() != 0 {
			t.Errorf("unfenced Token() = %d, want 0", l.Token())
		}
		_ = l.Release()
	})
}

// When the granting nodes' counters disagree, the token is the largest,
// and a second round raises the others to it before Lock returns.
func TestLock_fencing_raises_lagging_counters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms, ns := memoryNodes(3)
		// Nodes 1 and 2 saw more grants than node 0, and disagree: any
		// majority that grants includes one of them, so the token is
		// taken from a lagging node and a raise is needed.
		for i, grants := range []int{0, 5, 3} {
			for range grants {
				rep, err := ms[i].AcquireFenced(t.Context(), dlock.Request{Key: "k", Value: "x", TTL: time.Second, Fencing: true})
				if err != nil || !rep.OK {
					t.Fatalf("AcquireFenced: %+v, %v", rep, err)
				}
				_, _ = ms[i].Release(t.Context(), "k", "x")
			}
		}
		r, err := dlock.New(ns)
		if err != nil {
			t.Fatal(err)
		}
		l, err := r.Lock("k", "", dlock.WithFencing())
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Token(); got != 4 && got != 6 {
			t.Errorf("Token() = %d, want the largest counter of the granting nodes (4 or 6)", got)
		}
		at := 0
		for _, m := range ms {
			if counterOf(t, m, "k") == l.Token() {
				at++
			}
		}
		if at < r.Quorum() {
			t.Errorf("token %d on %d nodes when Lock returned, want a majority", l.Token(), at)
		}
		_ = l.Release()
	})
}

// WithFencing and WithRestartGuard need nodes that implement Fencer.
func TestFencing_needs_Fencer_nodes(t *testing.T) {
	fs := fakes(3)
	if _, err := dlock.New(nodes(fs), dlock.WithRestartGuard(time.Second)); !errors.Is(err, dlock.ErrInvalidConfig) {
		t.Errorf("New(WithRestartGuard) over plain nodes: %v, want ErrInvalidConfig", err)
	}
	r := mustNew(t, fs)
	if _, err := r.Lock("k", "", dlock.WithFencing()); !errors.Is(err, dlock.ErrInvalidConfig) {
		t.Errorf("Lock(WithFencing) over plain nodes: %v, want ErrInvalidConfig", err)
	}
	if _, err := dlock.New(nodes(fs), dlock.WithRestartGuard(-time.Second)); !errors.Is(err, dlock.ErrInvalidConfig) {
		t.Errorf("New(WithRestartGuard(-1s)): %v, want ErrInvalidConfig", err)
	}
}

// A refresh that puts back a key a node lost raises that node's counter to
// the lock's token; the token itself never changes.
func TestLock_fencing_refresh_puts_back_the_token(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms, ns := memoryNodes(3)
		r, err := dlock.New(ns)
		if err != nil {
			t.Fatal(err)
		}
		l, err := r.Lock("k", "", dlock.WithFencing(), dlock.WithTTL(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		token := l.Token()
		ms[0].Wipe() // restarted without persistence: key and counter gone
		if err := l.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		if l.Token() != token {
			t.Errorf("Token() changed from %d to %d on refresh", token, l.Token())
		}
		synctest.Wait() // the refresh returned at a majority; node 0 may still be answering
		if v, ok := ms[0].Get("k"); !ok || v != l.Value() {
			t.Errorf("node 0 holds %q, %v after the refresh; want the lock's value", v, ok)
		}
		if got := counterOf(t, ms[0], "k"); got != token {
			t.Errorf("node 0 counter = %d, want the token %d", got, token)
		}
		_ = l.Release()
		next, err := r.Lock("k", "", dlock.WithFencing())
		if err != nil {
			t.Fatal(err)
		}
		if next.Token() <= token {
			t.Errorf("next token %d, want above %d", next.Token(), token)
		}
		_ = next.Release()
	})
}

// The restart guard: a node that lost its data refuses to grant until the
// guard has passed, the refusal is its own kind of error, the lock holds
// on the others, and no token goes backwards.
func TestLock_restart_guard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms, ns := memoryNodes(3)
		for _, m := range ms {
			m.Provision() // freshly provisioned: no wait on first use
		}
		r, err := dlock.New(ns, dlock.WithRestartGuard(10*time.Second), dlock.WithDefaults(dlock.WithFencing()))
		if err != nil {
			t.Fatal(err)
		}
		var tokens []uint64
		l, err := r.Lock("k", "", dlock.WithTTL(2*time.Second))
		if err != nil {
			t.Fatalf("first lock on provisioned nodes: %v", err)
		}
		tokens = append(tokens, l.Token())
		_ = l.Release()

		// A majority restarts empty (a restart takes at least a
		// millisecond: the floor rule assumes fewer grants than
		// microseconds before a loss, which fake time could break).
		time.Sleep(time.Millisecond)
		ms[0].Wipe()
		ms[1].Wipe()
		_, err = r.TryLock(t.Context(), "k", "", dlock.WithTTL(2*time.Second))
		if !errors.Is(err, dlock.ErrNotAcquired) || !errors.Is(err, dlock.ErrRestartGuard) {
			t.Fatalf("TryLock with a guarded majority: %v, want ErrNotAcquired and ErrRestartGuard", err)
		}
		var ne *dlock.NodeError
		if !errors.As(err, &ne) || (ne.Node != 0 && ne.Node != 1) {
			t.Errorf("err = %v, want a *NodeError for node 0 or 1", err)
		}
		time.Sleep(9 * time.Second)
		if _, err := r.TryLock(t.Context(), "k", "", dlock.WithTTL(2*time.Second)); !errors.Is(err, dlock.ErrRestartGuard) {
			t.Fatalf("TryLock 9s after: %v, want the guard still in force", err)
		}
		time.Sleep(2 * time.Second)
		l, err = r.TryLock(t.Context(), "k", "", dlock.WithTTL(2*time.Second))
		if err != nil {
			t.Fatalf("TryLock once the guard passed: %v", err)
		}
		tokens = append(tokens, l.Token())
		// While a node is guarded, the holder keeps extending where it holds.
		time.Sleep(time.Millisecond)
		ms[2].Wipe()
		if err := l.Refresh(t.Context()); err != nil {
			t.Errorf("Refresh with one guarded node of three: %v", err)
		}
		_ = l.Release()
		time.Sleep(11 * time.Second)
		l, err = r.TryLock(t.Context(), "k", "")
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, l.Token())
		_ = l.Release()
		if !slices.IsSorted(tokens) || tokens[0] == tokens[1] || tokens[1] == tokens[2] {
			t.Errorf("tokens %v, want them to grow across the data losses", tokens)
		}
	})
}

// Under lost replies, late requests and lost requests, fenced locks get
// tokens that grow: no two grants share a token, and a lock whose attempt
// started after another lock was granted has the larger token.
func TestLock_fencing_tokens_under_lost_replies(t *testing.T) {
	seeds := faultSeeds(t, 40)
	first := uint64(time.Now().UnixNano())
	holds, inversions := 0, 0
	for i := range uint64(seeds) {
		seed := first + i
		run := runFaults(t, seed, true, 3*time.Second)
		holds += len(run.holds)
		for _, a := range run.holds {
			for _, b := range run.holds {
				if a.acq.Before(b.acq) && b.token < a.token {
					inversions++ // only possible for attempts that overlapped a grant: counted, not a contract breach
				}
			}
		}
		if v := run.violations(); len(v) > 0 {
			t.Errorf("seed %d: %d violations, first: %s", seed, len(v), v[0])
		}
		if v := run.tokenViolations(); len(v) > 0 {
			t.Errorf("seed %d (DLOCK_FAULT_FIRST_SEED=%d DLOCK_FAULT_SEEDS=1): %d token violations, first: %s", seed, seed, len(v), v[0])
		}
	}
	if holds < seeds*10 {
		t.Errorf("%d acquisitions over %d seeds: too few", holds, seeds)
	}
	t.Logf("%d seeds from %d, %d fenced acquisitions, %d pairs granted in the other order than their tokens (overlapping attempts)", seeds, first, holds, inversions)
}
