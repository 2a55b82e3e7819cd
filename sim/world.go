package sim

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/charconstpointer/dlock"
)

// resourceKey is the one lock every client contends for.
const resourceKey = "resource"

// event is one line of the trace, at a true instant relative to the start.
type event struct {
	at      time.Duration
	finding bool // the checker's, listed after the events of its instant
	text    string
}

// partition cuts clients from nodes during [from, to).
type partition struct {
	from, to time.Time
	clients  []bool
	nodes    []bool
}

// hold is one successful acquisition: from the moment Lock returned until
// the holder began to release or its validity (by its own clock) ended.
// attempt is when its successful attempt started, in true time; token is
// its fencing token.
type hold struct {
	client, n int
	value     string
	token     uint64
	attempt   time.Time
	acq, end  time.Time
}

// resourceOp is one operation on the shared resource, with the token of
// the hold it was made under; refused marks one that a fenced resource
// refused as stale.
type resourceOp struct {
	client, hold int
	token        uint64
	at           time.Time
	refused      bool
}

// simClient is one client with its own clock and Redlock.
type simClient struct {
	id    int
	clock *skewClock
	rl    *dlock.Redlock
}

// world is one run: nodes, network, clients, faults and the records the
// checker reads. It lives inside one synctest bubble.
type world struct {
	sc    Scenario
	seed  uint64
	start time.Time
	end   time.Time

	nodes      []*node
	clients    []*simClient
	partitions []partition

	inflight atomic.Int64 // deliver goroutines running

	mu     sync.Mutex // guards what follows
	pools  [][]pool   // [client][node]
	events []event
	holds  []hold
	ops    []resourceOp
	top    uint64 // the largest token the resource accepted
	faults [numFaultKinds]int
	healed time.Time // when the last fault ended
}

// faultKind counts one kind of injected fault.
type faultKind int

const (
	faultDrop faultKind = iota
	faultSlow
	faultPartition
	faultCrash
	faultJump
	faultPause
	numFaultKinds
)

var faultNames = [numFaultKinds]string{"drop", "slow", "partition", "crash", "jump", "pause"}

func (w *world) h(vals ...uint64) uint64 { return hashOf(append([]uint64{w.seed}, vals...)...) }

// logf records a trace line at the current instant.
func (w *world) logf(format string, args ...any) {
	w.logAt(time.Now(), format, args...)
}

func (w *world) logAt(t time.Time, format string, args ...any) {
	e := event{at: t.Sub(w.start), text: fmt.Sprintf(format, args...)}
	w.mu.Lock()
	w.events = append(w.events, e)
	w.mu.Unlock()
}

// fault counts a fault that ends (heals) at healed.
func (w *world) fault(k faultKind, healed time.Time) {
	w.mu.Lock()
	w.faults[k]++
	if healed.After(w.healed) {
		w.healed = healed
	}
	w.mu.Unlock()
}

// newWorld builds the world of seed; it must run inside a synctest bubble.
func newWorld(sc Scenario, seed int64) (*world, error) {
	if err := sc.validate(); err != nil {
		return nil, err
	}
	start := time.Now().Round(0)
	w := &world{sc: sc, seed: uint64(seed), start: start, end: atSlot(start.Add(sc.Duration()), slotEnd)}
	for i := range sc.Nodes {
		w.nodes = append(w.nodes, &node{
			id:       i,
			persist:  unit(w.h(tagPersist, uint64(i))) < sc.PersistProb,
			up:       true,
			store:    map[string]entry{},
			counters: map[string]uint64{},
			clock:    w.skew(tagNodeClock, i, sc.NodeRate, sc.NodeOffset, sc.fixedNodeRate),
		})
	}
	w.pools = make([][]pool, sc.Clients)
	for c := range sc.Clients {
		w.pools[c] = make([]pool, sc.Nodes)
		clk := newSkewClock(w.skew(tagClientClock, c, sc.ClientRate, sc.ClientOffset, sc.fixedClientRate))
		stubs := make([]dlock.Node, sc.Nodes)
		for n := range stubs {
			stubs[n] = &stub{w: w, c: c, n: n}
		}
		rl, err := dlock.New(stubs,
			dlock.WithClock(clk),
			dlock.WithRand(newSeededReader(w.h(tagRand, uint64(c)))),
			dlock.WithNodeTimeout(sc.NodeTimeout),
			dlock.WithRestartGuard(sc.Guard),
			dlock.WithDefaults(
				dlock.WithTTL(sc.TTL),
				dlock.WithRetryInterval(sc.RetryInterval),
				dlock.WithRetryLimit(-1),
				dlock.WithDriftFactor(dlock.DefaultDriftFactor),
				dlock.WithFencing(),
			),
		)
		if err != nil {
			return nil, fmt.Errorf("sim: dlock.New: %w", err)
		}
		w.clients = append(w.clients, &simClient{id: c, clock: clk, rl: rl})
	}
	w.planPartitions()
	return w, nil
}

// skew draws a clock for actor i: rate in [-rate, rate] (or fixed), offset
// in [-offset, offset].
func (w *world) skew(tag uint64, i int, rate float64, offset time.Duration, fixed *float64) skew {
	s := skew{epoch: w.start}
	if fixed != nil {
		s.rate = *fixed
	} else if rate > 0 {
		s.rate = (2*unit(w.h(tag, uint64(i), 1)) - 1) * rate
	}
	if offset > 0 {
		s.offset = between(w.h(tag, uint64(i), 2), -offset, offset)
	}
	return s
}

// run runs the world to its end and waits for every client.
func (w *world) run() {
	ctx, cancel := context.WithDeadline(context.Background(), w.end)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range w.clients {
		wg.Go(func() { w.client(ctx, c) })
	}
	if w.sc.Crash != NoCrash || w.sc.ClockJump {
		wg.Go(w.injectNodeFaults)
	}
	wg.Wait()
	// A bubble ends in deadlock if its main goroutine returns while others
	// still wait on timers. The library's background calls (releases after
	// a round) end with their messages, so wait until none is in flight.
	for {
		time.Sleep(time.Second)
		if w.inflight.Load() == 0 {
			return
		}
	}
}

// inWindow reports whether t lies in the fault window.
func (w *world) inWindow(t time.Time) bool { return t.Sub(w.start) < w.sc.FaultWindow }

// dropped reports whether the message sent at t with hash h is lost.
func (w *world) dropped(t time.Time, h uint64) bool {
	return w.sc.DropProb > 0 && w.inWindow(t) && unit(h) < w.sc.DropProb
}

// latency draws a one-way latency for a message sent at t from h. Tail
// latencies happen only in the fault window.
func (w *world) latency(t time.Time, h uint64) time.Duration {
	sc := &w.sc
	if sc.TailProb > 0 && w.inWindow(t) && unit(hashOf(h, tagTail)) < sc.TailProb {
		u := 1 - unit(hashOf(h, tagTail, 1))
		d := time.Duration(float64(sc.TailMin) * math.Pow(u, -1/0.8))
		return min(d, sc.TailMax)
	}
	return between(h, sc.LatencyMin, sc.LatencyMax)
}

// slow counts a message delayed beyond the node timeout as a fault.
func (w *world) slow(lat time.Duration, arrive time.Time) {
	if lat > w.sc.NodeTimeout {
		w.fault(faultSlow, arrive)
	}
}

// cut reports whether the link between client c and node n is cut at t.
func (w *world) cut(c, n int, t time.Time) bool {
	for _, p := range w.partitions {
		if !t.Before(p.from) && t.Before(p.to) && p.clients[c] && p.nodes[n] {
			return true
		}
	}
	return false
}

// lost says why a message between client c and node n that arrives at t is
// lost ("dropped", counted as a fault, or "cut by partition"), or "" when it
// gets through; h decides a drop.
func (w *world) lost(c, n int, t time.Time, h uint64) string {
	if w.dropped(t, h) {
		w.fault(faultDrop, t)
		return "dropped"
	}
	if w.cut(c, n, t) {
		return "cut by partition"
	}
	return ""
}

// result is a node call's outcome as seen by the client.
type result struct {
	rep dlock.Reply
	err error
}

// stub is client c's handle on node n: a dlock.Fencer whose calls travel
// over the simulated network to the shared node, each kind of call as its
// own operation with the same latency, loss, pooling and retransmission.
type stub struct {
	w    *world
	c, n int
}

var (
	_ dlock.Fencer = (*stub)(nil)
	_ dlock.Queue  = (*stub)(nil)
)

func (s *stub) Acquire(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	r, err := s.w.call(ctx, s.c, s.n, opAcquire, dlock.Request{Key: key, Value: value, TTL: ttl})
	return r.OK, err
}

func (s *stub) Extend(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	r, err := s.w.call(ctx, s.c, s.n, opExtend, dlock.Request{Key: key, Value: value, TTL: ttl})
	return r.OK, err
}

func (s *stub) Release(ctx context.Context, key, value string) (bool, error) {
	r, err := s.w.call(ctx, s.c, s.n, opRelease, dlock.Request{Key: key, Value: value})
	return r.OK, err
}

func (s *stub) AcquireFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	return s.w.call(ctx, s.c, s.n, opAcquireFenced, req)
}

func (s *stub) ExtendFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	return s.w.call(ctx, s.c, s.n, opExtendFenced, req)
}

func (s *stub) Fence(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	return s.w.call(ctx, s.c, s.n, opFence, req)
}

func (s *stub) Leave(ctx context.Context, req dlock.Request) error {
	_, err := s.w.call(ctx, s.c, s.n, opLeave, req)
	return err
}

// call sends one operation from client c to node n on a connection of
// their pool and waits for the reply or for ctx. The message's fate
// (latency, loss) is a hash of the seed, the client, the node, the
// operation, the value and the instant of the call, so it does not depend on
// the order in which goroutines make calls. When ctx ends first, the call
// abandons its connection and returns ctx.Err(); its request still arrives.
func (w *world) call(ctx context.Context, c, n int, o op, req dlock.Request) (dlock.Reply, error) {
	now := time.Now()
	value := req.Value
	h := w.h(uint64(c), uint64(n), uint64(o), strHash(value), uint64(now.UnixNano()))
	lat := w.latency(now, hashOf(h, tagReqLatency))
	giveUp := atSlot(now.Add(2*w.sc.NodeTimeout), slotGiveUp)
	w.mu.Lock()
	p := &w.pools[c][n]
	x := &exchange{conn: p.take()}
	arrive := book(&p.reqs, now, atSlot(now.Add(lat), slotReq(c, o)))
	w.mu.Unlock()
	epoch := w.nodes[n].epoch()
	w.slow(lat, arrive)
	reqLost := w.lost(c, n, arrive, hashOf(h, tagReqDrop))
	if reqLost != "" {
		w.mu.Lock()
		x.replyAt = later(arrive, giveUp)
		w.mu.Unlock()
	}
	reply := make(chan result, 1)
	w.inflight.Add(1)
	go func() {
		defer w.inflight.Add(-1)
		w.deliver(x, c, n, o, req, h, now, epoch, arrive, giveUp, reqLost, reply)
	}()
	select {
	case r := <-reply:
		return r.rep, r.err
	case <-ctx.Done():
	}
	// A reply that reaches the client at this very instant wins over the
	// context, whichever goroutine the scheduler ran first.
	ended := time.Now()
	w.mu.Lock()
	due := !x.replyAt.IsZero() && !x.replyAt.After(ended)
	if !due {
		x.abandoned = ended
	}
	w.mu.Unlock()
	if due {
		r := <-reply
		return r.rep, r.err
	}
	w.logf("c%d -> n%d %s k%d v=%s: abandoned, %v", c, n, o, x.conn, short(value), ctx.Err())
	return dlock.Reply{}, ctx.Err()
}

// deliver carries one request of exchange x, sent at call when node n was
// in its epoch-th life, to the node and the reply back; reqLost says why
// the request is lost ("" if it is not).
func (w *world) deliver(x *exchange, c, n int, o op, req dlock.Request, h uint64, call time.Time, epoch int, arrive, giveUp time.Time, reqLost string, reply chan<- result) {
	value := req.Value
	// end hands the call its result at x.replyAt, unless it was abandoned;
	// the connection goes back to the pool only after a reply.
	end := func(r result, idle bool) {
		sleepUntil(x.replyAt)
		w.mu.Lock()
		gone := !x.abandoned.IsZero()
		if idle && !gone {
			w.pools[c][n].put(x.conn)
		}
		w.mu.Unlock()
		if !gone {
			reply <- r
		}
	}
	sleepUntil(arrive)
	if reqLost != "" {
		w.logf("c%d -> n%d %s k%d v=%s: request %s", c, n, o, x.conn, short(value), reqLost)
		if at, ok := w.retransmission(c, n, o, h, call, arrive); ok {
			w.inflight.Add(1)
			go func() {
				defer w.inflight.Add(-1)
				sleepUntil(at)
				w.applyLate(x.conn, c, n, o, req, at, epoch)
			}()
		}
		end(result{err: errNoReply}, false)
		return
	}
	rep, what, err := w.nodes[n].apply(arrive, o, req)
	w.mu.Lock()
	late := ""
	if !x.abandoned.IsZero() && x.abandoned.Before(arrive) {
		late = fmt.Sprintf(" (late: the caller gave up at %s)", stamp(x.abandoned.Sub(w.start)))
	}
	w.mu.Unlock()
	w.logf("n%d %s c%d k%d v=%s: %s%s", n, o, c, x.conn, short(value), what, late)

	lat := w.latency(arrive, hashOf(h, tagRespLatency))
	w.mu.Lock()
	back := book(&w.pools[c][n].resps, arrive, atSlot(arrive.Add(lat), slotResp(c, n, o)))
	w.mu.Unlock()
	w.slow(lat, back)
	respLost := w.lost(c, n, back, hashOf(h, tagRespDrop))
	w.mu.Lock()
	x.replyAt = back
	if respLost != "" {
		x.replyAt = later(back, giveUp)
	}
	w.mu.Unlock()
	if respLost != "" {
		sleepUntil(back)
		w.logf("c%d -> n%d %s k%d v=%s: reply %s", c, n, o, x.conn, short(value), respLost)
		end(result{err: errNoReply}, false)
		return
	}
	end(result{rep: rep, err: err}, true)
}

// retransmission returns when the request of client c to node n with hash
// h, sent at call and lost on its way (its first copy due at arrive),
// reaches the node after all, as TCP retransmits it: copy k (1 … maxRetrans)
// leaves at call + rto·(2^k − 1), with a latency of its own, no earlier
// than arrive, and is lost, like any message, to a drop or a partition. It
// reports false when every copy is lost.
func (w *world) retransmission(c, n int, o op, h uint64, call, arrive time.Time) (time.Time, bool) {
	for k := range uint64(maxRetrans) {
		hk := hashOf(h, tagRetrans, k)
		sent := call.Add(rto * time.Duration(1<<(k+1)-1))
		lat := w.latency(sent, hk)
		w.mu.Lock()
		at := book(&w.pools[c][n].reqs, arrive, atSlot(later(sent.Add(lat), arrive), slotReq(c, o)))
		w.mu.Unlock()
		if w.lost(c, n, at, hashOf(hk, tagReqDrop)) == "" {
			return at, true
		}
	}
	return time.Time{}, false
}

// applyLate applies a retransmitted request, sent on connection k when node
// n was in its epoch-th life, at t. Its call failed (errNoReply); a
// node that crashed since then resets the connection instead.
func (w *world) applyLate(k, c, n int, o op, req dlock.Request, t time.Time, epoch int) {
	what := "connection reset: the node restarted"
	if w.nodes[n].epoch() == epoch {
		_, what, _ = w.nodes[n].apply(t, o, req)
	}
	w.logf("n%d %s c%d k%d v=%s: %s (retransmitted; its call failed)", n, o, c, k, short(req.Value), what)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
