package dlock_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/charconstpointer/dlock"
)

// lossyNode is an in-memory node whose calls meet the faults of a real
// network and connection pool, drawn from a seeded generator: a reply lost
// (the call was applied, the caller sees an error), a request applied late
// (the caller gave up at once or at its deadline; the request reaches the
// store later, after calls sent after it, as on another pooled
// connection), or a request lost (not applied). Every kind of call meets
// them. It implements dlock.Fencer too, with the counter rules of node.go.
type lossyNode struct {
	lostReply, late, lostReq float64       // chance of each fault per call
	maxLate                  time.Duration // a late request lands within this

	mu       sync.Mutex
	rng      *rand.Rand
	keys     map[string]entry
	counters map[string]uint64
	inflight sync.WaitGroup
}

func newLossyNode(seed uint64, node int, lostReply, late, lostReq float64) *lossyNode {
	return &lossyNode{
		lostReply: lostReply, late: late, lostReq: lostReq, maxLate: 150 * time.Millisecond,
		rng:  rand.New(rand.NewPCG(seed, uint64(node))),
		keys: map[string]entry{}, counters: map[string]uint64{},
	}
}

var errLost = errors.New("lossy node: connection reset")

// do runs apply under the node's faults and returns what the caller sees.
func (n *lossyNode) do(ctx context.Context, apply func() (dlock.Reply, error)) (dlock.Reply, error) {
	n.inflight.Add(1) // every call, so that the run can wait for them all
	defer n.inflight.Done()
	n.mu.Lock()
	u, atDeadline := n.rng.Float64(), n.rng.IntN(2) == 0
	delay := time.Duration(n.rng.Int64N(int64(n.maxLate)))
	n.mu.Unlock()
	fail := func() (dlock.Reply, error) {
		if atDeadline {
			<-ctx.Done()
			return dlock.Reply{}, ctx.Err()
		}
		return dlock.Reply{}, errLost
	}
	switch {
	case u < n.lostReply:
		n.mu.Lock()
		_, _ = apply()
		n.mu.Unlock()
		return fail()
	case u < n.lostReply+n.late:
		n.inflight.Add(1)
		go func() {
			defer n.inflight.Done()
			time.Sleep(delay)
			n.mu.Lock()
			defer n.mu.Unlock()
			_, _ = apply()
		}()
		return fail()
	case u < n.lostReply+n.late+n.lostReq:
		return fail()
	}
	if err := ctx.Err(); err != nil {
		return dlock.Reply{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return apply()
}

// live returns key's entry if set and unexpired; n.mu is held.
func (n *lossyNode) live(key string) (entry, bool) {
	e, ok := n.keys[key]
	if ok && !time.Now().Before(e.expires) {
		delete(n.keys, key)
		return entry{}, false
	}
	return e, ok
}

func (n *lossyNode) Acquire(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	r, err := n.AcquireFenced(ctx, dlock.Request{Key: key, Value: value, TTL: ttl})
	return r.OK, err
}

func (n *lossyNode) Extend(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	r, err := n.ExtendFenced(ctx, dlock.Request{Key: key, Value: value, TTL: ttl})
	return r.OK, err
}

func (n *lossyNode) Release(ctx context.Context, key, value string) (bool, error) {
	r, err := n.do(ctx, func() (dlock.Reply, error) {
		if e, ok := n.live(key); ok && e.value == value {
			delete(n.keys, key)
			return dlock.Reply{OK: true}, nil
		}
		return dlock.Reply{}, nil
	})
	return r.OK, err
}

func (n *lossyNode) AcquireFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	return n.do(ctx, func() (dlock.Reply, error) {
		if _, ok := n.live(req.Key); ok {
			return dlock.Reply{Counter: n.counters[req.Key]}, nil
		}
		n.keys[req.Key] = entry{value: req.Value, expires: time.Now().Add(req.TTL)}
		if !req.Fencing {
			return dlock.Reply{OK: true}, nil
		}
		n.counters[req.Key]++
		return dlock.Reply{OK: true, Counter: n.counters[req.Key]}, nil
	})
}

func (n *lossyNode) ExtendFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	return n.do(ctx, func() (dlock.Reply, error) {
		e, ok := n.live(req.Key)
		switch {
		case ok && e.value == req.Value:
		case ok:
			return dlock.Reply{Counter: n.counters[req.Key]}, nil
		case req.Token > 0 && n.counters[req.Key] > req.Token:
			return dlock.Reply{Counter: n.counters[req.Key]}, nil
		case req.Token > 0:
			n.counters[req.Key] = req.Token
		}
		n.keys[req.Key] = entry{value: req.Value, expires: time.Now().Add(req.TTL)}
		return dlock.Reply{OK: true, Counter: n.counters[req.Key]}, nil
	})
}

func (n *lossyNode) Fence(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	return n.do(ctx, func() (dlock.Reply, error) {
		e, ok := n.live(req.Key)
		if !ok || e.value != req.Value {
			return dlock.Reply{Counter: n.counters[req.Key]}, nil
		}
		n.counters[req.Key] = max(n.counters[req.Key], req.Token)
		c := n.counters[req.Key]
		return dlock.Reply{OK: c == req.Token, Counter: c}, nil
	})
}

// faultRun is one randomised run: clients contend for one key on lossy
// nodes, each checking Held right before every use of the resource.
//
// Events at one instant of fake time are ordered by a sequence number, so
// that a use just before another client's grant at the same instant is not
// taken for one during it.
type faultRun struct {
	mu    sync.Mutex
	seq   int
	holds []faultHold
	uses  []faultUse
}

type faultHold struct {
	client         int
	token          uint64
	acq, start     time.Time // when Lock returned; when its attempt started
	end            time.Time // when its validity ended, or the holder began to release
	acqSeq, endSeq int       // the order of the grant and of the start of the release
}

type faultUse struct {
	client, hold int
	at           time.Time
	seq          int
}

// next returns the next sequence number; run.mu is held.
func (run *faultRun) next() int {
	run.seq++
	return run.seq
}

// runFaults runs clients for d of fake time in a bubble and returns what
// they did. Each client has its own Redlock over the shared nodes (as
// separate processes would) and supplies the same value on every Lock, as
// a job runner configured with a worker name does.
func runFaults(t *testing.T, seed uint64, fencing bool, d time.Duration) *faultRun {
	run := &faultRun{}
	synctest.Test(t, func(t *testing.T) {
		const nodes, clients = 5, 4
		ns := make([]*lossyNode, nodes)
		for i := range ns {
			ns[i] = newLossyNode(seed, i, 0.03, 0.03, 0.03)
		}
		dn := make([]dlock.Node, nodes)
		for i, n := range ns {
			dn[i] = n
		}
		ttl := 100 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		var wg sync.WaitGroup
		for c := range clients {
			opts := []dlock.LockOpt{dlock.WithTTL(ttl), dlock.WithRetryLimit(-1),
				dlock.WithRetryInterval(5 * time.Millisecond), dlock.WithRetryJitter(5 * time.Millisecond)}
			if fencing {
				opts = append(opts, dlock.WithFencing())
			}
			r, err := dlock.New(dn, dlock.WithNodeTimeout(10*time.Millisecond),
				dlock.WithRand(rand.NewChaCha8(seedBytes(seed, c))), dlock.WithDefaults(opts...))
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(seed, 1000+uint64(c)))
			wg.Go(func() { run.client(ctx, r, c, rng, ttl) })
		}
		wg.Wait()
		time.Sleep(time.Second) // background releases end
		for _, n := range ns {
			n.inflight.Wait() // and the calls they made (a happens-before edge for the race detector)
		}
	})
	return run
}

func seedBytes(seed uint64, c int) [32]byte {
	var b [32]byte
	copy(b[:], fmt.Sprintf("%d/%d", seed, c))
	return b
}

func (run *faultRun) client(ctx context.Context, r *dlock.Redlock, c int, rng *rand.Rand, ttl time.Duration) {
	value := "worker-" + strconv.Itoa(c)
	for ctx.Err() == nil {
		var opts []dlock.LockOpt
		if rng.IntN(3) == 0 {
			opts = append(opts, dlock.WithRefreshInterval(ttl/3))
		}
		l, err := r.LockContext(ctx, "job", value, opts...)
		if err != nil {
			continue
		}
		acq := time.Now()
		run.mu.Lock()
		hi := len(run.holds)
		// The attempt started ValidUntil - (TTL - drift) before.
		run.holds = append(run.holds, faultHold{client: c, token: l.Token(), acq: acq,
			start: l.ValidUntil().Add(-(ttl - ttl/100 - 2*time.Millisecond)), end: l.ValidUntil(),
			acqSeq: run.next(), endSeq: math.MaxInt})
		run.mu.Unlock()
		for range 1 + rng.IntN(6) {
			time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
			if !l.Held() {
				break
			}
			run.mu.Lock()
			run.uses = append(run.uses, faultUse{client: c, hold: hi, at: time.Now(), seq: run.next()})
			run.mu.Unlock()
		}
		run.mu.Lock()
		if now := time.Now(); now.Before(run.holds[hi].end) {
			run.holds[hi].end = now
		}
		run.holds[hi].endSeq = run.next()
		run.mu.Unlock()
		_ = l.Release()
		time.Sleep(time.Duration(rng.IntN(10)) * time.Millisecond)
	}
}

// violations lists each use of the resource made while another client
// held the lock.
func (run *faultRun) violations() []string {
	var out []string
	for _, u := range run.uses {
		for hi, h := range run.holds {
			if h.client != u.client && u.seq > h.acqSeq && u.seq < h.endSeq && u.at.Before(h.end) {
				out = append(out, fmt.Sprintf("client %d used the resource at %v while client %d held it (hold %d: %v to %v)",
					u.client, u.at.Format(time.StampMicro), h.client, hi, h.acq.Format(time.StampMicro), h.end.Format(time.StampMicro)))
				break
			}
		}
	}
	return out
}

// faultSeeds is how many seeds TestLock_mutual_exclusion_under_lost_replies
// runs; DLOCK_FAULT_SEEDS overrides it.
func faultSeeds(t *testing.T, def int) int {
	if s := os.Getenv("DLOCK_FAULT_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("DLOCK_FAULT_SEEDS=%q: %v", s, err)
		}
		return n
	}
	return def
}

// Lost replies, requests applied late (after calls sent later, as on
// another pooled connection) and lost requests, for every kind of call:
// no two clients ever hold the lock at once, over many seeds. Each client
// supplies the same value on every Lock; before dlock stored a new value
// per attempt, a late release of a failed attempt deleted the next
// attempt's grant on some seeds, and two clients held the lock.
func TestLock_mutual_exclusion_under_lost_replies(t *testing.T) {
	seeds := faultSeeds(t, 60)
	first := uint64(time.Now().UnixNano()) // fresh seeds each run; a failure prints its seed
	if s := os.Getenv("DLOCK_FAULT_FIRST_SEED"); s != "" {
		first, _ = strconv.ParseUint(s, 10, 64)
	}
	bad := 0
	holds := 0
	for i := range uint64(seeds) {
		seed := first + i
		run := runFaults(t, seed, false, 3*time.Second)
		holds += len(run.holds)
		if v := run.violations(); len(v) > 0 {
			bad++
			t.Errorf("seed %d (DLOCK_FAULT_FIRST_SEED=%d DLOCK_FAULT_SEEDS=1): %d violations, first: %s", seed, seed, len(v), v[0])
		}
	}
	if holds < seeds*10 {
		t.Errorf("%d acquisitions over %d seeds: too few for the run to mean anything", holds, seeds)
	}
	t.Logf("%d seeds from %d, %d acquisitions, %d seeds with two holders", seeds, first, holds, bad)
}

// tokenViolations lists pairs of fenced grants out of order: the same
// token twice, or a lock whose attempt started after another lock was
// granted with a token that is not larger.
func (run *faultRun) tokenViolations() []string {
	var out []string
	for i, a := range run.holds {
		if a.token == 0 {
			out = append(out, fmt.Sprintf("hold %d (client %d) has no token", i, a.client))
			continue
		}
		for j, b := range run.holds {
			switch {
			case i == j:
			case a.token == b.token && i < j:
				out = append(out, fmt.Sprintf("holds %d and %d share token %d", i, j, a.token))
			case b.start.After(a.acq) && b.token <= a.token:
				out = append(out, fmt.Sprintf("hold %d (token %d, attempt started %v) after hold %d (token %d, granted %v)",
					j, b.token, b.start.Format(time.StampMicro), i, a.token, a.acq.Format(time.StampMicro)))
			}
		}
	}
	return out
}
