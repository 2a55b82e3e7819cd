package dlocktest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/dlocktest"
)

func TestNode_memory(t *testing.T) {
	t.Parallel()
	dlocktest.TestNode(t, func(t *testing.T) dlock.Node {
		return dlocktest.NewMemoryNode(clock.New())
	})
}

// TestNode_shared_store runs the suite twice on one node shared by every
// subtest, as a real store is: the second run finds the first one's keys,
// counters and restart marker. It also runs it on a provisioned node,
// whose marker is old.
func TestNode_shared_store(t *testing.T) {
	t.Parallel()
	fresh := dlocktest.NewMemoryNode(nil)
	provisioned := dlocktest.NewMemoryNode(nil)
	provisioned.Provision()
	runs := []struct {
		name string
		node *dlocktest.MemoryNode
	}{
		{"fresh", fresh},
		{"reused", fresh},
		{"provisioned", provisioned},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			dlocktest.TestNode(t, func(*testing.T) dlock.Node { return r.node })
		})
	}
	// Keys left behind expire; none is left with the suite's long TTL.
	for _, n := range []*dlocktest.MemoryNode{fresh, provisioned} {
		for _, k := range n.Keys() {
			if s, err := n.Inspect(t.Context(), k); err == nil && s.TTL > 10*time.Second {
				t.Errorf("key %q left held for %v after the suite", k, s.TTL)
			}
		}
	}
}

// TestNode_coarse runs the suite against a memory node that keeps TTLs in
// whole seconds, rounded up, as etcd's leases do.
func TestNode_coarse(t *testing.T) {
	t.Parallel()
	dlocktest.TestNode(t, func(t *testing.T) dlock.Node {
		return &coarseNode{dlocktest.NewMemoryNode(nil), time.Second}
	})
}

// coarseNode is a memory node that rounds every TTL up to a whole number of
// granules, and says so through dlock.TTLGranularity.
type coarseNode struct {
	*dlocktest.MemoryNode
	granule time.Duration
}

func (n *coarseNode) TTLGranularity() time.Duration { return n.granule }

func (n *coarseNode) round(ttl time.Duration) time.Duration {
	if r := ttl % n.granule; r != 0 {
		ttl += n.granule - r
	}
	return ttl
}

func (n *coarseNode) Acquire(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	return n.MemoryNode.Acquire(ctx, key, value, n.round(ttl))
}

func (n *coarseNode) Extend(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	return n.MemoryNode.Extend(ctx, key, value, n.round(ttl))
}

func (n *coarseNode) AcquireFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	req.TTL = n.round(req.TTL)
	return n.MemoryNode.AcquireFenced(ctx, req)
}

func (n *coarseNode) ExtendFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	req.TTL = n.round(req.TTL)
	return n.MemoryNode.ExtendFenced(ctx, req)
}

// mutant is a memory node with one bug, made by overriding one method.
// Methods not overridden are the memory node's, so a mutant is a Fencer
// and an Inspector too.
type mutant struct {
	*dlocktest.MemoryNode
	acquire       func(m *mutant, ctx context.Context, key, value string, ttl time.Duration) (bool, error)
	extend        func(m *mutant, ctx context.Context, key, value string, ttl time.Duration) (bool, error)
	release       func(m *mutant, ctx context.Context, key, value string) (bool, error)
	acquireFenced func(m *mutant, ctx context.Context, req dlock.Request) (dlock.Reply, error)
	extendFenced  func(m *mutant, ctx context.Context, req dlock.Request) (dlock.Reply, error)
	fence         func(m *mutant, ctx context.Context, req dlock.Request) (dlock.Reply, error)
	leave         func(m *mutant, ctx context.Context, req dlock.Request) error

	seen *seenWaiters // for mutants that track waiters; set when the mutant is made
}

// seenWaiters is what a mutant remembers of the waiters it was asked about.
type seenWaiters struct {
	mu sync.Mutex
	m  map[string][]string
}

func (m *mutant) Acquire(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	if m.acquire != nil {
		return m.acquire(m, ctx, key, value, ttl)
	}
	return m.MemoryNode.Acquire(ctx, key, value, ttl)
}

func (m *mutant) Extend(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	if m.extend != nil {
		return m.extend(m, ctx, key, value, ttl)
	}
	return m.MemoryNode.Extend(ctx, key, value, ttl)
}

func (m *mutant) Release(ctx context.Context, key, value string) (bool, error) {
	if m.release != nil {
		return m.release(m, ctx, key, value)
	}
	return m.MemoryNode.Release(ctx, key, value)
}

func (m *mutant) AcquireFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	if m.acquireFenced != nil {
		return m.acquireFenced(m, ctx, req)
	}
	return m.MemoryNode.AcquireFenced(ctx, req)
}

func (m *mutant) ExtendFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	if m.extendFenced != nil {
		return m.extendFenced(m, ctx, req)
	}
	return m.MemoryNode.ExtendFenced(ctx, req)
}

func (m *mutant) Fence(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	if m.fence != nil {
		return m.fence(m, ctx, req)
	}
	return m.MemoryNode.Fence(ctx, req)
}

func (m *mutant) Leave(ctx context.Context, req dlock.Request) error {
	if m.leave != nil {
		return m.leave(m, ctx, req)
	}
	return m.MemoryNode.Leave(ctx, req)
}

// mutants are the bugs TestNode must catch, each with a subtest of the
// suite that must report it.
var mutants = []struct {
	name     string
	wantFail string // a subtest of TestNode, under "conformance/"
	m        mutant
}{{
	name:     "leave_forgets_every_waiter",
	wantFail: "queue",
	m: mutant{
		// Remembers the waiters it was asked about, and forgets them all on
		// any Leave of the key: a node that clears the key's whole queue.
		acquireFenced: func(m *mutant, ctx context.Context, req dlock.Request) (dlock.Reply, error) {
			if req.Waiter != "" {
				m.seen.mu.Lock()
				m.seen.m[req.Key] = append(m.seen.m[req.Key], req.Waiter)
				m.seen.mu.Unlock()
			}
			return m.MemoryNode.AcquireFenced(ctx, req)
		},
		leave: func(m *mutant, ctx context.Context, req dlock.Request) error {
			m.seen.mu.Lock()
			ws := m.seen.m[req.Key]
			m.seen.mu.Unlock()
			for _, w := range append(ws, req.Waiter) {
				if err := m.MemoryNode.Leave(ctx, dlock.Request{Key: req.Key, Waiter: w}); err != nil {
					return err
				}
			}
			return nil
		},
	},
}, {
	name:     "leave_ignored",
	wantFail: "queue",
	m:        mutant{leave: func(*mutant, context.Context, dlock.Request) error { return nil }},
}, {
	name:     "waiters_ignored",
	wantFail: "queue",
	m: mutant{acquireFenced: func(m *mutant, ctx context.Context, req dlock.Request) (dlock.Reply, error) {
		req.Waiter = ""
		return m.MemoryNode.AcquireFenced(ctx, req)
	}},
}, {
	name:     "acquire_overwrites",
	wantFail: "acquire",
	m: mutant{acquire: func(m *mutant, ctx context.Context, k, v string, ttl time.Duration) (bool, error) {
		if cur, ok := m.Get(k); ok {
			_, _ = m.MemoryNode.Release(ctx, k, cur)
		}
		return m.MemoryNode.Acquire(ctx, k, v, ttl)
	}},
}, {
	name:     "acquire_check_then_set",
	wantFail: "concurrent_acquire",
	m: mutant{acquire: func(m *mutant, ctx context.Context, k, v string, ttl time.Duration) (bool, error) {
		if _, ok := m.Get(k); ok {
			return false, nil
		}
		time.Sleep(time.Millisecond) // the window between GET and SET
		if cur, ok := m.Get(k); ok {
			_, _ = m.MemoryNode.Release(ctx, k, cur)
		}
		return m.MemoryNode.Acquire(ctx, k, v, ttl)
	}},
}, {
	name:     "extend_ignores_value",
	wantFail: "extend",
	m: mutant{extend: func(m *mutant, ctx context.Context, k, v string, ttl time.Duration) (bool, error) {
		if cur, ok := m.Get(k); ok {
			v = cur
		}
		return m.MemoryNode.Extend(ctx, k, v, ttl)
	}},
}, {
	name:     "extend_does_not_recreate",
	wantFail: "extend_missing_key",
	m: mutant{extend: func(m *mutant, ctx context.Context, k, v string, ttl time.Duration) (bool, error) {
		if _, ok := m.Get(k); !ok {
			return false, nil
		}
		return m.MemoryNode.Extend(ctx, k, v, ttl)
	}},
}, {
	name:     "extend_keeps_longer_ttl",
	wantFail: "expiry",
	m: mutant{extend: func(m *mutant, ctx context.Context, k, v string, ttl time.Duration) (bool, error) {
		if s, err := m.Inspect(ctx, k); err == nil && s.Held && s.Value == v && s.TTL > ttl {
			return true, nil
		}
		return m.MemoryNode.Extend(ctx, k, v, ttl)
	}},
}, {
	name:     "release_ignores_value",
	wantFail: "release",
	m: mutant{release: func(m *mutant, ctx context.Context, k, v string) (bool, error) {
		if cur, ok := m.Get(k); ok {
			v = cur
		}
		return m.MemoryNode.Release(ctx, k, v)
	}},
}, {
	name:     "ttl_rounded_down",
	wantFail: "expiry",
	m: mutant{acquire: func(m *mutant, ctx context.Context, k, v string, ttl time.Duration) (bool, error) {
		return m.MemoryNode.Acquire(ctx, k, v, max(ttl.Truncate(100*time.Millisecond), time.Millisecond))
	}},
}, {
	name:     "ttl_too_long",
	wantFail: "expiry",
	m: mutant{acquire: func(m *mutant, ctx context.Context, k, v string, ttl time.Duration) (bool, error) {
		return m.MemoryNode.Acquire(ctx, k, v, 3*ttl)
	}},
}, {
	name:     "context_ignored",
	wantFail: "context_done",
	m: mutant{acquire: func(m *mutant, _ context.Context, k, v string, ttl time.Duration) (bool, error) {
		return m.MemoryNode.Acquire(context.Background(), k, v, ttl)
	}},
}, {
	name:     "counter_not_advanced",
	wantFail: "fencing_acquire",
	m: mutant{acquireFenced: func(m *mutant, ctx context.Context, req dlock.Request) (dlock.Reply, error) {
		if s, err := m.Inspect(ctx, req.Key); err == nil && s.HasCounter {
			req.Fencing = false // the counter stays where it is
		}
		return m.MemoryNode.AcquireFenced(ctx, req)
	}},
}, {
	name:     "fence_without_holding",
	wantFail: "fencing_fence",
	m: mutant{fence: func(m *mutant, ctx context.Context, req dlock.Request) (dlock.Reply, error) {
		if cur, ok := m.Get(req.Key); ok {
			req.Value = cur
		}
		return m.MemoryNode.Fence(ctx, req)
	}},
}, {
	name:     "recreate_ignores_token",
	wantFail: "fencing_extend_recreates",
	m: mutant{extendFenced: func(m *mutant, ctx context.Context, req dlock.Request) (dlock.Reply, error) {
		req.Token = 0
		return m.MemoryNode.ExtendFenced(ctx, req)
	}},
}, {
	name:     "guard_blocks_extend",
	wantFail: "guard_refuses_grants",
	m: mutant{extendFenced: func(m *mutant, ctx context.Context, req dlock.Request) (dlock.Reply, error) {
		if req.Guard > 0 {
			return dlock.Reply{Guarded: true}, nil
		}
		return m.MemoryNode.ExtendFenced(ctx, req)
	}},
}, {
	name:     "guard_never_passes",
	wantFail: "guard_passes",
	m: mutant{acquireFenced: func(m *mutant, ctx context.Context, req dlock.Request) (dlock.Reply, error) {
		if req.Guard > 0 {
			req.Guard = 1000 * time.Hour
		}
		return m.MemoryNode.AcquireFenced(ctx, req)
	}},
}}

// tooLate is what the suite logs when a timing check was inconclusive.
const tooLate = "came too late to tell"

// envMutant names the mutant that TestNode_mutant runs the suite against,
// in the child process started by TestTestNode_catches_mutants.
const envMutant = "DLOCKTEST_MUTANT"

// TestNode_mutant runs TestNode against the mutant named in $DLOCKTEST_MUTANT;
// without it, it is skipped. It is meant to fail.
func TestNode_mutant(t *testing.T) {
	name := os.Getenv(envMutant)
	if name == "" {
		t.Skip("runs only in a child process of TestTestNode_catches_mutants")
	}
	for _, mu := range mutants {
		if mu.name == name {
			dlocktest.TestNode(t, func(t *testing.T) dlock.Node {
				m := mu.m
				m.MemoryNode = dlocktest.NewMemoryNode(nil)
				m.seen = &seenWaiters{m: map[string][]string{}}
				return &m
			})
			return
		}
	}
	t.Fatalf("no mutant named %q", name)
}

// TestTestNode_catches_mutants checks that the suite fails, in the subtest
// expected, on each of a set of memory nodes with one bug each. A suite
// that never fails proves nothing.
func TestTestNode_catches_mutants(t *testing.T) {
	if os.Getenv(envMutant) != "" {
		t.Skip("in a mutant's child process")
	}
	if testing.Short() {
		t.Skip("starts a child process per mutant")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, mu := range mutants {
		t.Run(mu.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), exe, "-test.run=^TestNode_mutant$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), envMutant+"="+mu.name)
			out, err := cmd.CombinedOutput()
			if err == nil && strings.Contains(string(out), tooLate) {
				t.Skipf("mutant %s not caught: the machine was too slow for the suite to tell", mu.name)
			}
			if err == nil {
				t.Fatalf("TestNode passed on mutant %s; want a failure in conformance/%s\n%s", mu.name, mu.wantFail, out)
			}
			want := "--- FAIL: TestNode_mutant/conformance/" + mu.wantFail + " "
			if !strings.Contains(string(out), want) {
				t.Errorf("TestNode on mutant %s: no %q in the output:\n%s", mu.name, strings.TrimSpace(want), out)
			}
		})
	}
}
