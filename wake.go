package dlock

import (
	"context"
	"slices"
	"sync"
	"time"
)

// wakeHub keeps the Lock calls of a Redlock that wait for keys, in
// arrival order per key: only the first of a key's queue tries the nodes,
// the others wait for their turn, so that within one Redlock waiters are
// served in the order they came and do not split the nodes' votes among
// themselves. When a node announces a release (Notifier), the first waiter
// of the key retries at once. Nodes are watched only while some call
// waits: the first waiter starts the watches, the last one stops them, so
// no goroutine or subscription outlives its last waiter.
type wakeHub struct {
	r       *Redlock
	watches bool // some node announces releases
	enough  int  // announcements of a release that wake a waiter at once: a quorum, or every announcing node when fewer

	mu     sync.Mutex
	queues map[string][]*waiter // by key on the nodes, in arrival order; no empty queue
	stop   context.CancelFunc   // ends the watches; nil while none run
	done   chan struct{}        // closed when the watches of the last generation ended
}

// waiter is one Lock call waiting for a key.
type waiter struct {
	h   *wakeHub
	key string
	// c receives a wake: a release of the key, or the waiter's turn
	// (it became the first of its queue). Buffered: one pending wake is
	// enough.
	c chan struct{}
	// heard counts the announced releases of the key since the waiter's
	// last wake; grace wakes it if too few come. Guarded by h.mu.
	heard int
	grace *time.Timer
	// since is when the Lock call started, on the Redlock's clock.
	since time.Time
}

// earliest returns t, or the earlier start of a Lock call queued for w's
// key: the first of the queue asks the nodes on behalf of them all, so it
// claims the longest wait among them. Otherwise the nodes, which remember
// an earlier call that has waited longer, would refuse it a free key while
// that call, not first here, no longer asks.
func (w *waiter) earliest(t time.Time) time.Time {
	if w == nil {
		return t
	}
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	for _, o := range w.h.queues[w.key] {
		if o.since.Before(t) {
			t = o.since
		}
	}
	return t
}

// watchRetry is the pause before a watch that broke is started again.
const watchRetry = time.Second

// usable reports whether the hub can serve the calling goroutine: not
// when it runs in a testing/synctest bubble and the Redlock was not built
// in one (its watches and queues could belong to another bubble).
func (h *wakeHub) usable() bool {
	return h != nil && (!inBubble() || h.r.builtInBubble)
}

// queued reports whether some Lock call of the Redlock waits for key.
func (h *wakeHub) queued(key string) bool {
	if !h.usable() {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.queues[key]) > 0
}

// wait adds a waiter for key, a Lock call that started at since, at the end
// of its queue and returns it, or nil when the hub cannot serve the caller
// (see usable).
//
// Every Lock call that may wait joins the queue before its first attempt,
// so that calls arriving together do not split the nodes' votes among
// themselves; the nodes are watched once a key has two calls queued, or
// once a call's attempt failed (watch).
func (h *wakeHub) wait(key string, since time.Time) *waiter {
	if !h.usable() {
		return nil
	}
	w := &waiter{h: h, key: key, c: make(chan struct{}, 1), since: since}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.queues == nil {
		h.queues = map[string][]*waiter{}
	}
	q := append(h.queues[key], w)
	h.queues[key] = q
	if len(q) > 1 {
		h.watchLocked()
	}
	return w
}

// watch makes sure the nodes are watched while w waits.
func (w *waiter) watch() {
	if w == nil {
		return
	}
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	w.h.watchLocked()
}

// watchLocked starts the watches unless they run; h.mu is held.
func (h *wakeHub) watchLocked() {
	if h.watches && h.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		h.stop = cancel
		h.done = make(chan struct{})
		h.start(ctx, h.done)
	}
}

// ahead returns how many waiters of the same key came before w and still
// wait; 0 for a nil waiter.
func (w *waiter) ahead() int {
	if w == nil {
		return 0
	}
	h := w.h
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Index(h.queues[w.key], w)
}

// stop removes w from its queue; the last waiter of the Redlock ends the
// watches. When w was first and leaves without the key (it gave up), the
// next waiter is told that its turn has come; when w got the key, the next
// waiter's turn comes with its release (or at its next poll), and trying
// at once would only be refused.
func (w *waiter) stop(got bool) {
	if w == nil {
		return
	}
	h := w.h
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.queues[w.key]
	i := slices.Index(q, w)
	if i < 0 {
		return
	}
	if w.grace != nil {
		w.grace.Stop()
		w.grace = nil
	}
	q = slices.Delete(q, i, i+1)
	if len(q) == 0 {
		delete(h.queues, w.key)
	} else {
		h.queues[w.key] = q
		if i == 0 && !got {
			q[0].wake()
		}
	}
	if len(h.queues) == 0 && h.stop != nil {
		h.stop()
		h.stop = nil
	}
}

// wake sends w a wake unless one is pending.
func (w *waiter) wake() {
	select {
	case w.c <- struct{}{}:
	default:
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

// wakeGrace is how long after the first announced release of a key its
// first waiter is woken at the latest, when fewer nodes than a quorum
// announced it (some did not hold the key, or an announcement was lost).
const wakeGrace = 2 * time.Millisecond

// released counts an announced release of key for its first waiter, and
// wakes it once as many nodes as a quorum announced it, or wakeGrace after
// the first announcement. Waking at the first would send the waiter's
// attempt to nodes that have not yet seen the release, to be refused there.
func (h *wakeHub) released(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.queues[key]
	if len(q) == 0 {
		return
	}
	w := q[0]
	w.heard++
	if w.heard >= h.enough {
		w.woken()
		return
	}
	if w.grace == nil {
		w.grace = time.AfterFunc(wakeGrace, func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if w.grace != nil { // not woken meanwhile
				w.woken()
			}
		})
	}
}

// woken wakes w for the announcements it heard; h.mu is held.
func (w *waiter) woken() {
	w.heard = 0
	if w.grace != nil {
		w.grace.Stop()
		w.grace = nil
	}
	w.wake()
}
