package dlock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// fakeNode is an in-memory dlock.Node whose keys expire by time.Now (fake
// time inside a synctest bubble). Its behaviour is set by its fields before
// use; the store is safe for concurrent use.
type fakeNode struct {
	delay  time.Duration   // each call takes this long (honouring ctx)
	hang   bool            // each call blocks until ctx ends
	stuck  <-chan struct{} // each call blocks until this closes, ignoring ctx (a client without ContextTimeoutEnabled)
	fail   error           // each call returns this error
	flaky  int             // every flaky-th call fails (0: never)
	refuse bool            // Acquire and Extend answer ok=false
	panics bool            // each call panics
	// lateApply makes Acquire fail at once but set the key this much later,
	// as a command does that reaches the server after its client gave up.
	lateApply time.Duration
	// lateRelease makes Release fail at once but apply this much later,
	// ignoring the caller's context: a reply lost, the request delivered
	// late on a connection the client gave up.
	lateRelease time.Duration
	// hook, when set, runs at the start of every call with its kind.
	hook func(op string)

	mu    sync.Mutex
	keys  map[string]entry
	calls []string // "acquire key", "extend key", "release key", in the order the calls returned
	n     int
}

type entry struct {
	value   string
	expires time.Time
}

var errFake = errors.New("fake node failure")

// behaviour guards changes to the fake nodes' behaviour fields made while
// calls may be running (see mutate).
var behaviour sync.RWMutex

// mutate changes fake nodes' behaviour fields while calls may be running.
func mutate(f func()) {
	behaviour.Lock()
	defer behaviour.Unlock()
	f()
}

func (n *fakeNode) enter(ctx context.Context) error {
	behaviour.RLock()
	b := fakeNode{delay: n.delay, hang: n.hang, stuck: n.stuck, fail: n.fail, flaky: n.flaky, panics: n.panics}
	behaviour.RUnlock()
	return b.wait(ctx, n)
}

// wait acts out the behaviour in b for a call on n.
func (b *fakeNode) wait(ctx context.Context, n *fakeNode) error {
	if b.panics {
		panic("fake node panic")
	}
	if b.stuck != nil {
		<-b.stuck
	}
	if b.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if b.delay > 0 {
		t := time.NewTimer(b.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if b.fail != nil {
		return b.fail
	}
	n.mu.Lock()
	n.n++
	k := n.n
	n.mu.Unlock()
	if b.flaky > 0 && k%b.flaky == 0 {
		return fmt.Errorf("flaky call %d: %w", k, errFake)
	}
	return nil
}

func (n *fakeNode) hookFn() func(string) {
	behaviour.RLock()
	defer behaviour.RUnlock()
	return n.hook
}

func (n *fakeNode) refusing() bool {
	behaviour.RLock()
	defer behaviour.RUnlock()
	return n.refuse
}

func (n *fakeNode) record(op, key string) {
	n.calls = append(n.calls, op+" "+key)
}

// live returns the entry for key if it has not expired; n.mu is held.
func (n *fakeNode) live(key string) (entry, bool) {
	e, ok := n.keys[key]
	if ok && !time.Now().Before(e.expires) {
		delete(n.keys, key)
		return entry{}, false
	}
	return e, ok
}

func (n *fakeNode) Acquire(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	if n.lateApply > 0 {
		go func() {
			time.Sleep(n.lateApply)
			n.mu.Lock()
			defer n.mu.Unlock()
			n.record("acquire", key)
			if _, ok := n.live(key); !ok {
				if n.keys == nil {
					n.keys = map[string]entry{}
				}
				n.keys[key] = entry{value: value, expires: time.Now().Add(ttl)}
			}
		}()
		return false, fmt.Errorf("reply lost: %w", errFake)
	}
	if h := n.hookFn(); h != nil {
		h("acquire")
	}
	if err := n.enter(ctx); err != nil {
		return false, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.record("acquire", key)
	if n.refusing() {
		return false, nil
	}
	if _, ok := n.live(key); ok {
		return false, nil
	}
	if n.keys == nil {
		n.keys = map[string]entry{}
	}
	n.keys[key] = entry{value: value, expires: time.Now().Add(ttl)}
	return true, nil
}

func (n *fakeNode) Extend(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	if h := n.hookFn(); h != nil {
		h("extend")
	}
	if err := n.enter(ctx); err != nil {
		return false, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.record("extend", key)
	if n.refusing() {
		return false, nil
	}
	e, ok := n.live(key)
	if ok && e.value != value {
		return false, nil
	}
	if n.keys == nil {
		n.keys = map[string]entry{}
	}
	n.keys[key] = entry{value: value, expires: time.Now().Add(ttl)} // extend, or put back a missing key
	return true, nil
}

func (n *fakeNode) Release(ctx context.Context, key, value string) (bool, error) {
	behaviour.RLock()
	late, hook := n.lateRelease, n.hook
	behaviour.RUnlock()
	if hook != nil {
		hook("release")
	}
	if late > 0 {
		go func() {
			time.Sleep(late)
			n.mu.Lock()
			defer n.mu.Unlock()
			n.record("late release", key)
			if e, ok := n.live(key); ok && e.value == value {
				delete(n.keys, key)
			}
		}()
		return false, fmt.Errorf("reply lost: %w", errFake)
	}
	if err := n.enter(ctx); err != nil {
		return false, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.record("release", key)
	e, ok := n.live(key)
	if !ok || e.value != value {
		return false, nil
	}
	delete(n.keys, key)
	return true, nil
}

// value returns what key holds on n now ("" when absent or expired).
func (n *fakeNode) value(key string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, _ := n.live(key)
	return e.value
}

// set stores key=value with ttl, as another holder would.
func (n *fakeNode) set(key, value string, ttl time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.keys == nil {
		n.keys = map[string]entry{}
	}
	n.keys[key] = entry{value: value, expires: time.Now().Add(ttl)}
}

// count returns how many calls of op ("acquire", "extend", "release") returned.
func (n *fakeNode) count(op string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, s := range n.calls {
		if len(s) > len(op) && s[:len(op)] == op && s[len(op)] == ' ' {
			c++
		}
	}
	return c
}

// history returns a copy of the calls that returned, in order.
func (n *fakeNode) history() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.calls...)
}
