package dlock

import "time"

// task is one node call of a flight, for a worker.
type task struct {
	f    *flight
	i    int
	prev *call
}

// workerIdle is how long a worker goroutine waits for its next call before
// it exits. It is measured on the real clock, never the injected one, so a
// worker's life does not depend on a test advancing a mock clock.
const workerIdle = 50 * time.Millisecond

// dispatch hands t to an idle worker of its node, or starts a new one. A
// worker runs calls one after another and exits after workerIdle without
// one, so goroutines do not outlive a burst by more than that. Reusing them
// spares a fresh goroutine's stack growth inside the client on every call,
// about a fifth of the CPU of a Lock+Release on local Redis nodes.
//
// Inside a testing/synctest bubble no worker is reused or kept idle: each
// call gets a goroutine of its own that ends with it. A goroutine belongs
// to the bubble that started it, and a worker waiting on a channel shared
// with goroutines outside its bubble would keep the bubble from ever
// advancing its fake time; a Redlock built outside a bubble and used inside
// one (or in several) must work all the same.
func (r *Redlock) dispatch(t task) {
	if inBubble() {
		go t.f.run(t.i, t.prev)
		return
	}
	select {
	case r.idle[t.i] <- t:
	default:
		go r.work(t)
	}
}

// inBubble reports whether the calling goroutine runs in a testing/synctest
// bubble: there, and only there, time.Now carries no monotonic reading.
func inBubble() bool {
	now := time.Now()
	return now == now.Round(0) //nolint:staticcheck // comparing the monotonic reading on purpose
}

// work runs t, then further calls for the same node until none comes for
// workerIdle.
func (r *Redlock) work(t task) {
	timer := time.NewTimer(workerIdle)
	defer timer.Stop()
	for {
		t.f.run(t.i, t.prev)
		timer.Reset(workerIdle)
		select {
		case t = <-r.idle[t.i]:
		case <-timer.C:
			return
		}
	}
}
