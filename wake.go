package dlock

import (
	"context"
	"sync"
	"time"
)

// wakeHub wakes the Lock calls of a Redlock that wait for keys, when a node
// announces a release (Notifier). It watches a node only while some call
// waits: the first waiter starts the watches, the last one stops them, so
// no goroutine or subscription outlives its last waiter.
type wakeHub struct {
	r *Redlock

	mu      sync.Mutex
	waiters map[string]map[*waiter]struct{} // by key on the nodes
	count   int
	stop    context.CancelFunc // ends the watches; nil while none run
	done    chan struct{}      // closed when the watches of the last generation ended
}

// waiter is one Lock call waiting for a key.
type waiter struct {
	h   *wakeHub
	key string
	c   chan struct{} // buffered: one pending wake is enough
}

// watchRetry is the pause before a watch that broke is started again.
const watchRetry = time.Second

// wait registers a waiter for key and returns it, or nil when no node of
// the Redlock announces releases, or when the caller runs in a
// testing/synctest bubble and the Redlock was not built in one (its
// watches could belong to another bubble).
func (h *wakeHub) wait(key string) *waiter {
	if h == nil || (inBubble() && !h.r.builtInBubble) {
		return nil
	}
	w := &waiter{h: h, key: key, c: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.waiters == nil {
		h.waiters = map[string]map[*waiter]struct{}{}
	}
	set := h.waiters[key]
	if set == nil {
		set = map[*waiter]struct{}{}
		h.waiters[key] = set
	}
	set[w] = struct{}{}
	h.count++
	if h.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		h.stop = cancel
		h.done = make(chan struct{})
		h.start(ctx, h.done)
	}
	return w
}

// stop unregisters w; the last waiter ends the watches.
func (w *waiter) stop() {
	if w == nil {
		return
	}
	h := w.h
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.waiters[w.key]
	if _, ok := set[w]; !ok {
		return
	}
	delete(set, w)
	if len(set) == 0 {
		delete(h.waiters, w.key)
	}
	h.count--
	if h.count == 0 && h.stop != nil {
		h.stop()
		h.stop = nil
	}
}

// wakeC returns the channel that receives a wake, or nil for no waiter.
func (w *waiter) wakeC() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.c
}

// start runs one watch per announcing node until ctx ends; done closes
// when all have returned.
func (h *wakeHub) start(ctx context.Context, done chan struct{}) {
	var wg sync.WaitGroup
	for i, n := range h.r.notifiers {
		if n == nil {
			continue
		}
		wg.Go(func() { h.watch(ctx, i, n) })
	}
	go func() {
		wg.Wait()
		close(done)
	}()
}

// watch keeps a watch of node i running until ctx ends, starting it again
// a second after it breaks.
func (h *wakeHub) watch(ctx context.Context, i int, n Notifier) {
	for {
		err := n.WatchReleases(ctx, h.released)
		if ctx.Err() != nil {
			return
		}
		h.r.log.Debug("dlock: watching releases failed", "node", i, "err", err)
		t := time.NewTimer(watchRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// released wakes every waiter of key.
func (h *wakeHub) released(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.waiters[key] {
		select {
		case w.c <- struct{}{}:
		default:
		}
	}
}
