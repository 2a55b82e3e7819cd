package dlock_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/internal/redistest"
)

// Integration tests of fencing tokens and the restart guard (issue 8) on
// redis-server processes that each test starts itself
// (redistest.StartServer, no persistence): holders that pause past their
// validity while writing to a fenced resource, and nodes SIGKILLed and
// restarted empty in the middle of contention. They need redis-server on
// PATH, not DLOCK_REDIS_ADDRS: without it they are skipped, or fail under
// DLOCK_REQUIRE_REDIS=1.
//
// Every contender is a Redlock of its own over clients of its own, as
// separate processes would be. Times are read with time.Now, the clock the
// Redlocks use (their default), so hold intervals and ValidUntil compare.

// fiNodeCount is how many redis-servers the contention tests start.
const fiNodeCount = 5

// fiSettle registers a cleanup, run after every cleanup registered later
// (contenders stopped, clients closed, servers stopped), that waits until
// the goroutines the test started have returned, so that its background
// calls cannot leak into the next test.
func fiSettle(t *testing.T) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		// go-redis probes a dead node once a second until its client closes.
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines still running 10s after the test, %d before it", runtime.NumGoroutine(), base)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// fiServers starts n redis-servers of the test's own.
func fiServers(t *testing.T, n int) []*redistest.Server {
	t.Helper()
	ss := make([]*redistest.Server, n)
	for i := range ss {
		ss[i] = redistest.StartServer(t)
	}
	return ss
}

// fiClients returns one client per server, closed when the test ends. The
// clients cut calls short at the node timeout, and a node that is down
// costs one quick dial.
func fiClients(t *testing.T, ss []*redistest.Server) []*redis.Client {
	t.Helper()
	cs := make([]*redis.Client, len(ss))
	for i, s := range ss {
		c := redis.NewClient(&redis.Options{
			Addr:                  s.Addr(),
			ContextTimeoutEnabled: true,
			DialTimeout:           200 * time.Millisecond,
			ReadTimeout:           time.Second,
			WriteTimeout:          time.Second,
		})
		t.Cleanup(func() { c.Close() })
		cs[i] = c
	}
	return cs
}

// fiRedlock returns a Redlock over clients of its own to the servers.
func fiRedlock(t *testing.T, ss []*redistest.Server, opts ...dlock.Option) *dlock.Redlock {
	t.Helper()
	r, err := dlock.New(dlock.RedisNodes(fiClients(t, ss)...), opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// fiGrant is one successful Lock call.
type fiGrant struct {
	holder   int
	called   time.Time // the Lock call started
	returned time.Time // Lock returned the lock
	until    time.Time // its ValidUntil
	token    uint64
	paused   bool // the holder paused past its validity before its last write
}

// fiWrite is one write to the fenced resource.
type fiWrite struct {
	holder   int
	grant    int // index of the writer's grant
	token    uint64
	at       time.Time
	accepted bool
	late     bool // at or after the writer's ValidUntil
}

// fiResource is a resource that checks fencing tokens: it remembers the
// largest token it accepted and refuses smaller ones. It records every
// write, accepted or not, in the order it saw them.
type fiResource struct {
	mu      sync.Mutex
	largest uint64
	grants  []fiGrant
	writes  []fiWrite
}

// grant records a grant and returns its index.
func (s *fiResource) grant(g fiGrant) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.grants = append(s.grants, g)
	return len(s.grants) - 1
}

// write offers a write with the token of grant gi, and reports whether the
// resource accepted it.
func (s *fiResource) write(gi int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.grants[gi]
	w := fiWrite{holder: g.holder, grant: gi, token: g.token, at: time.Now()}
	w.late = !w.at.Before(g.until)
	w.accepted = w.token >= s.largest
	if w.accepted {
		s.largest = w.token
	}
	s.writes = append(s.writes, w)
	return w.accepted
}

// fiTokenOrder returns the pairs of grants whose tokens break the contract:
// a grant whose Lock call started after another grant's Lock returned must
// have the larger token; and no two grants share a token.
func fiTokenOrder(grants []fiGrant) []string {
	var bad []string
	for i, a := range grants {
		for j, b := range grants {
			switch {
			case i < j && a.token == b.token:
				bad = append(bad, fmt.Sprintf("grants %d (holder %d) and %d (holder %d) share token %d", i, a.holder, j, b.holder, a.token))
			case b.called.After(a.returned) && b.token <= a.token:
				bad = append(bad, fmt.Sprintf("grant %d (holder %d, Lock called %v after grant %d returned) has token %d, want above %d",
					j, b.holder, b.called.Sub(a.returned).Round(time.Microsecond), i, b.token, a.token))
			}
		}
	}
	return bad
}

// Issue 8, fencing: six contenders, each a Redlock of its own, take one key
// with fencing, a 300ms TTL and no refresh, and write to a fenced resource.
// A third of the holds pause past their validity between their last check
// of Held and their last write, as a GC pause or a stopped VM would. The
// resource accepts no stale write; it refuses the paused holders' writes
// once a later holder wrote (which happens: the pauses really are stale and
// really are overtaken), only ever refuses writes made after the writer's
// validity ran out, and tokens grow with the order of the grants.
func TestIntegration_fencing_refuses_paused_holders(t *testing.T) {
	fiSettle(t)
	ss := fiServers(t, fiNodeCount)
	const (
		key       = "fi:paused"
		ttl       = 300 * time.Millisecond
		holders   = 6
		runFor    = 4 * time.Second
		pauseMore = 150 * time.Millisecond // a pause ends this much (plus up to 100ms) after ValidUntil
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (it chooses the paused holds; the timing is real)", seed)

	lockers := make([]*dlock.Redlock, holders)
	for i := range lockers {
		lockers[i] = fiRedlock(t, ss, dlock.WithNodeTimeout(50*time.Millisecond))
	}
	var (
		res  fiResource
		errs itErrors
		wg   sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(t.Context(), runFor)
	t.Cleanup(func() { cancel(); wg.Wait() })
	start := time.Now()
	for i, r := range lockers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			for {
				called := time.Now()
				l, err := r.LockContext(ctx, key, "", dlock.WithFencing(), dlock.WithTTL(ttl),
					dlock.WithRetryInterval(10*time.Millisecond), dlock.WithRetryLimit(-1))
				if err != nil {
					if ctx.Err() == nil {
						errs.add(fmt.Errorf("holder %d: Lock: %w", i, err))
					}
					return
				}
				paused := rng.IntN(3) == 0
				gi := res.grant(fiGrant{holder: i, called: called, returned: time.Now(), until: l.ValidUntil(),
					token: l.Token(), paused: paused})
				if l.Held() {
					res.write(gi)
				}
				if paused {
					// Held was checked, then the process stopped past its
					// validity; it resumes and writes without knowing.
					time.Sleep(time.Until(l.ValidUntil()) + pauseMore + time.Duration(rng.Int64N(int64(100*time.Millisecond))))
					res.write(gi)
				} else {
					time.Sleep(5 * time.Millisecond)
					if l.Held() {
						res.write(gi)
					}
				}
				_ = l.Release() // a paused holder's lock is lost by now: ErrLockLost
			}
		})
	}
	wg.Wait()
	errs.check(t)
	elapsed := time.Since(start)

	res.mu.Lock()
	grants, writes := slices.Clone(res.grants), slices.Clone(res.writes)
	res.mu.Unlock()

	// No stale write accepted: the accepted tokens never go down.
	var largest uint64
	stale, refused, acceptedLate := 0, 0, 0
	for _, w := range writes {
		switch {
		case w.accepted && w.token < largest:
			stale++
			t.Errorf("stale write accepted: holder %d wrote with token %d after token %d was accepted", w.holder, w.token, largest)
		case !w.accepted:
			refused++
			if !w.late {
				g := grants[w.grant]
				t.Errorf("holder %d's write with token %d was refused %v before its ValidUntil (the resource had accepted %d): a later holder wrote while this one held the lock",
					w.holder, w.token, g.until.Sub(w.at), largest)
			}
		case w.late:
			acceptedLate++
		}
		if w.accepted {
			largest = max(largest, w.token)
		}
	}
	// Paused holds overtaken: another holder's Lock returned after the
	// paused holder's, before its write after the pause.
	paused, overtaken := 0, 0
	for gi, a := range grants {
		if !a.paused {
			continue
		}
		paused++
		i := slices.IndexFunc(writes, func(w fiWrite) bool { return w.grant == gi && w.late })
		if i < 0 {
			continue
		}
		if slices.ContainsFunc(grants, func(b fiGrant) bool {
			return b.holder != a.holder && b.returned.After(a.returned) && b.returned.Before(writes[i].at)
		}) {
			overtaken++
		}
	}
	for i, v := range fiTokenOrder(grants) {
		if i == 10 {
			t.Errorf("... and more token order violations")
			break
		}
		t.Error(v)
	}

	t.Logf("%v: %d grants (%d paused, %d of them overtaken by another holder), %d writes: %d accepted (%d after the writer's validity, none overtaken yet), %d refused, %d stale accepted",
		elapsed.Round(time.Millisecond), len(grants), paused, overtaken, len(writes), len(writes)-refused, acceptedLate, refused, stale)
	if got, want := len(grants), 10; got < want {
		t.Errorf("%d grants in %v, want at least %d", got, runFor, want)
	}
	if paused == 0 || overtaken == 0 {
		t.Errorf("%d paused holds, %d overtaken by another holder: want some of each, or the test shows nothing", paused, overtaken)
	}
	if refused == 0 {
		t.Errorf("no write was refused: the paused holders were never stale, so the test shows nothing")
	}
}

// fiHold is one contender's hold of the lock, from Lock's return to the
// earlier of its ValidUntil and the start of its Release.
type fiHold struct {
	holder     int
	called     time.Time // the successful TryLock call started
	start, end time.Time
	token      uint64
}

// fiRefusal is a node's refusal by its restart guard, as a contender saw it
// in a TryLock error.
type fiRefusal struct {
	node int
	at   time.Time // when TryLock returned the error
}

// fiRestart is one SIGKILL of a node and its start again, empty, on the
// same port.
type fiRestart struct {
	node   int
	killed time.Time // just before SIGKILL
	back   time.Time // the server answered again
}

// fiEvent is one round of restarts of the nodes that hold the key.
type fiEvent struct {
	restarts []fiRestart
	// unrestarted is how many nodes the event did not restart.
	unrestarted int
}

// fiRestartRun is what one run of contention with restarts saw.
type fiRestartRun struct {
	holds     []fiHold
	refusals  []fiRefusal
	events    []fiEvent
	end       time.Time
	lockTries int
	markers   []map[string]string // per node, its restart marker after the run
}

// fiRunRestarts starts five servers and five contenders that take key with
// fencing and an 800ms TTL, over Redlocks with the given restart guard, and
// kills and restarts nodes holding the key: in the "one" events one node,
// in the "majority" events a majority of all nodes (while the holder's
// value is still on them). Each contender records its holds,
// checking Held before each use, and the restart guard refusals it saw in
// its TryLock errors.
func fiRunRestarts(t *testing.T, guard time.Duration) fiRestartRun {
	t.Helper()
	ss := fiServers(t, fiNodeCount)
	control := fiClients(t, ss)
	const (
		key        = "fi:restart"
		ttl        = 800 * time.Millisecond
		contenders = 5
		quorum     = fiNodeCount/2 + 1
	)
	// Freshly provisioned nodes: the first locks do not wait out the guard.
	for i, c := range control {
		if err := c.HSet(t.Context(), "dlock:restart-guard", "since", 0, "floor", 0).Err(); err != nil {
			t.Fatalf("node %d: HSET marker: %v", i, err)
		}
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (it chooses the hold times; the timing is real)", seed)

	lockers := make([]*dlock.Redlock, contenders)
	for i := range lockers {
		lockers[i] = fiRedlock(t, ss, dlock.WithRestartGuard(guard), dlock.WithNodeTimeout(100*time.Millisecond),
			dlock.WithDefaults(dlock.WithFencing(), dlock.WithTTL(ttl)))
	}
	var (
		mu    sync.Mutex
		run   fiRestartRun
		errs  itErrors
		wg    sync.WaitGroup
		tries = make([]int, contenders)
	)
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(func() { cancel(); wg.Wait() })
	fresh := make(chan string, 1) // the value of a lock just acquired, for the controller
	for i, r := range lockers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			for ctx.Err() == nil {
				called := time.Now()
				tries[i]++
				l, err := r.TryLock(ctx, key, "")
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					if !errors.Is(err, dlock.ErrNotAcquired) {
						errs.add(fmt.Errorf("contender %d: TryLock: %w", i, err))
						return
					}
					at := time.Now()
					mu.Lock()
					for _, ne := range nodeErrors(err) {
						if errors.Is(ne, dlock.ErrRestartGuard) {
							run.refusals = append(run.refusals, fiRefusal{node: ne.Node, at: at})
						}
					}
					mu.Unlock()
					time.Sleep(5*time.Millisecond + time.Duration(rng.Int64N(int64(10*time.Millisecond))))
					continue
				}
				h := fiHold{holder: i, called: called, start: time.Now(), token: l.Token()}
				holdFor := 100*time.Millisecond + time.Duration(rng.Int64N(int64(250*time.Millisecond)))
				select {
				case fresh <- l.Value():
					holdFor = ttl // the controller restarts nodes under this hold: keep it as long as it is valid
				default:
				}
				for time.Since(h.start) < holdFor && l.Held() {
					time.Sleep(10 * time.Millisecond) // a use of the resource
				}
				h.end = time.Now()
				if until := l.ValidUntil(); until.Before(h.end) {
					h.end = until
				}
				_ = l.Release()
				mu.Lock()
				run.holds = append(run.holds, h)
				mu.Unlock()
			}
		})
	}

	// Events: wait for a fresh holder, then restart nodes holding its value.
	plan := []string{"one", "majority", "one", "majority"}
	time.Sleep(200 * time.Millisecond)
	for e, kind := range plan {
		select {
		case <-fresh: // a lock taken before this event: too old
		default:
		}
		var value string
		select {
		case value = <-fresh:
		case <-time.After(5 * time.Second):
		}
		holding := fiHolding(t, control, key, value)
		if len(holding) == 0 {
			t.Errorf("event %d: no lock acquired within 5s, or its value already gone", e)
			break
		}
		held := len(holding)
		var ev fiEvent
		for len(ev.restarts) < fiNodeCount {
			if kind == "one" && len(ev.restarts) == 1 {
				break
			}
			if kind == "majority" && len(ev.restarts) == quorum {
				break
			}
			if len(holding) == 0 {
				break
			}
			// Rotate, so that the events restart different nodes.
			j := slices.MinFunc(holding, func(a, b int) int {
				return (a-2*e+2*fiNodeCount)%fiNodeCount - (b-2*e+2*fiNodeCount)%fiNodeCount
			})
			rs := fiRestart{node: j, killed: time.Now()}
			ss[j].Stop()
			ss[j].Start()
			rs.back = time.Now()
			ev.restarts = append(ev.restarts, rs)
			holding = fiHolding(t, control, key, value)
		}
		ev.unrestarted = fiNodeCount - len(ev.restarts)
		nodes := make([]int, len(ev.restarts))
		for i, rs := range ev.restarts {
			nodes[i] = rs.node
		}
		t.Logf("event %d (%s): restarted nodes %v in %v; the holder's value was on %d nodes, now on %d",
			e, kind, nodes, time.Since(ev.restarts[0].killed).Round(time.Millisecond), held, len(holding))
		run.events = append(run.events, ev)
		wait := 600 * time.Millisecond
		if kind == "majority" {
			wait = max(guard, time.Second) + 700*time.Millisecond
		}
		time.Sleep(wait)
	}
	run.end = time.Now()
	cancel()
	wg.Wait()
	errs.check(t)
	for _, n := range tries {
		run.lockTries += n
	}
	for i, c := range control {
		m, err := c.HGetAll(t.Context(), "dlock:restart-guard").Result()
		if err != nil {
			t.Errorf("node %d: HGETALL marker: %v", i, err)
		}
		run.markers = append(run.markers, m)
	}
	slices.SortFunc(run.holds, func(a, b fiHold) int { return a.start.Compare(b.start) })
	return run
}

// fiHolding returns the nodes on which key holds value.
func fiHolding(t *testing.T, cs []*redis.Client, key, value string) []int {
	t.Helper()
	var on []int
	for i, c := range cs {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		v, err := c.Get(ctx, key).Result()
		cancel()
		if err == nil && v == value {
			on = append(on, i)
		}
	}
	return on
}

// fiOverlaps returns the pairs of holds of different contenders that
// overlap in time.
func fiOverlaps(holds []fiHold) []string {
	var out []string
	for i, a := range holds {
		for _, b := range holds[i+1:] {
			if a.holder != b.holder && b.start.Before(a.end) && a.start.Before(b.end) {
				out = append(out, fmt.Sprintf("contender %d held [%v, %v] (token %d) and contender %d [%v, %v] (token %d): %v together",
					a.holder, a.start.Format("15:04:05.000000"), a.end.Format("15:04:05.000000"), a.token,
					b.holder, b.start.Format("15:04:05.000000"), b.end.Format("15:04:05.000000"), b.token,
					fiMinTime(a.end, b.end).Sub(b.start).Round(time.Microsecond)))
			}
		}
	}
	return out
}

func fiMinTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// fiHoldTokenOrder applies fiTokenOrder to holds.
func fiHoldTokenOrder(holds []fiHold) []string {
	grants := make([]fiGrant, len(holds))
	for i, h := range holds {
		grants[i] = fiGrant{holder: h.holder, called: h.called, returned: h.start, token: h.token}
	}
	return fiTokenOrder(grants)
}

// Issue 8, restart guard: five contenders take one key with fencing while
// nodes that hold it are SIGKILLed and restarted empty at once, on the same
// port: one node, or one after another a majority of the nodes (all holding
// the holder's value). With WithRestartGuard(1s) over an 800ms TTL: no two
// contenders' holds overlap, tokens grow with the order of the grants, every
// restarted node refuses grants with ErrRestartGuard (seen in TryLock
// errors) and only for about the guard, no lock is granted within the guard
// after a majority lost its data, and locking goes on after every restart.
// The same run without the guard is a control: what it shows is logged,
// not asserted, as it depends on timing.
func TestIntegration_restart_guard_node_restarted_empty(t *testing.T) {
	const guard = time.Second
	tests := []struct {
		name  string
		guard time.Duration
	}{
		{"guarded", guard},
		{"unguarded_control", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fiSettle(t)
			run := fiRunRestarts(t, tt.guard)
			overlaps := fiOverlaps(run.holds)
			order := fiHoldTokenOrder(run.holds)
			restarted := 0
			for _, ev := range run.events {
				restarted += len(ev.restarts)
			}
			t.Logf("%d holds in %d TryLock calls, %d restarts in %d events, %d guard refusals seen, %d overlapping pairs of holds, %d token order violations",
				len(run.holds), run.lockTries, restarted, len(run.events), len(run.refusals), len(overlaps), len(order))
			if tt.guard == 0 {
				for i, o := range overlaps {
					if i == 3 {
						break
					}
					t.Logf("without the guard: %s", o)
				}
				for i, o := range order {
					if i == 3 {
						break
					}
					t.Logf("without the guard: %s", o)
				}
				if len(run.refusals) > 0 {
					t.Errorf("%d refusals by a restart guard with the guard off", len(run.refusals))
				}
				return
			}

			for i, o := range overlaps {
				if i == 10 {
					t.Errorf("... and %d more overlaps", len(overlaps)-10)
					break
				}
				t.Errorf("overlap: %s", o)
			}
			for i, o := range order {
				if i == 10 {
					t.Errorf("... and %d more token order violations", len(order)-10)
					break
				}
				t.Errorf("token order: %s", o)
			}
			if got, want := len(run.events), 4; got != want {
				t.Fatalf("%d events ran, want %d", got, want)
			}
			const slack = 300 * time.Millisecond
			majorityLost := 0
			for e, ev := range run.events {
				if len(ev.restarts) == 0 {
					t.Errorf("event %d restarted no node: the holder's value was gone before the first kill", e)
					continue
				}
				// Every restarted node refused grants while guarded, and
				// only for about the guard.
				for _, rs := range ev.restarts {
					n := 0
					for _, rf := range run.refusals {
						if rf.node == rs.node && rf.at.After(rs.killed) && rf.at.Before(rs.back.Add(guard)) {
							n++
						}
					}
					if n == 0 {
						t.Errorf("event %d: node %d, restarted empty, was never seen refusing by its restart guard", e, rs.node)
					}
				}
				// Locking went on: some Lock call that started after the
				// event's last restart succeeded before the next event.
				last := ev.restarts[len(ev.restarts)-1].back
				next := run.end
				if e+1 < len(run.events) {
					next = run.events[e+1].restarts[0].killed
				}
				if !slices.ContainsFunc(run.holds, func(h fiHold) bool { return h.called.After(last) && h.start.Before(next) }) {
					t.Errorf("event %d: no lock acquired between the last restart (%v) and the next event", e, last.Format("15:04:05.000"))
				}
				// With fewer than a quorum of nodes left unrestarted, a
				// Lock call that started after the last kill needs a
				// restarted node whose guard has passed: it cannot be
				// granted within the guard from the first kill.
				if ev.unrestarted < fiNodeCount/2+1 {
					majorityLost++
					first, lastKill := ev.restarts[0].killed, ev.restarts[len(ev.restarts)-1].killed
					for _, h := range run.holds {
						if h.called.After(lastKill) && h.start.Before(first.Add(guard-50*time.Millisecond)) {
							t.Errorf("event %d: contender %d got the lock %v after the first of %d nodes was killed, within the guard %v",
								e, h.holder, h.start.Sub(first).Round(time.Millisecond), len(ev.restarts), guard)
						}
					}
				}
			}
			if majorityLost == 0 {
				t.Errorf("no event restarted a majority of the nodes (the holder released first): the guard against a majority's data loss was not tried")
			}
			// A node votes again on its own once the guard has passed.
			var lastBack [fiNodeCount]time.Time
			wasRestarted := map[int]bool{}
			for _, ev := range run.events {
				for _, rs := range ev.restarts {
					wasRestarted[rs.node] = true
					lastBack[rs.node] = rs.back
				}
			}
			for _, rf := range run.refusals {
				if !wasRestarted[rf.node] {
					t.Errorf("node %d refused by its restart guard at %v, but it was never restarted", rf.node, rf.at.Format("15:04:05.000"))
				} else if rf.at.After(lastBack[rf.node].Add(guard + slack)) {
					t.Errorf("node %d refused by its restart guard %v after it came back, want the guard (%v) to have ended",
						rf.node, rf.at.Sub(lastBack[rf.node]).Round(time.Millisecond), guard)
				}
			}
			// The marker: where the node came back empty it recorded when.
			for i, m := range run.markers {
				if got, want := m["since"] != "0" && m["since"] != "", wasRestarted[i]; got != want {
					t.Errorf("node %d: marker %v: dated since its restart = %v, want %v (restarted: %v)", i, m, got, want, wasRestarted[i])
				}
			}
		})
	}
}

// The restart guard needs a standalone server per node: a *redis.ClusterClient
// or a *redis.Ring spreads its keys over servers that lose their data
// separately, so New rejects it with ErrInvalidConfig, naming the node.
// Without the guard, or over standalone clients, New accepts the nodes. New
// contacts no node: the addresses are unreachable.
func TestNew_restart_guard_needs_standalone_servers(t *testing.T) {
	standalone := func(port string) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + port})
		t.Cleanup(func() { c.Close() })
		return c
	}
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:4"}})
	t.Cleanup(func() { cluster.Close() })
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:5"}})
	t.Cleanup(func() { ring.Close() })
	a, b, c := standalone("1"), standalone("2"), standalone("3")

	tests := []struct {
		name    string
		clients []redis.UniversalClient
		guard   time.Duration
		wantErr string // "" when New must accept
	}{
		{"cluster_with_guard", []redis.UniversalClient{a, cluster, b}, time.Second, "nodes[1]"},
		{"ring_with_guard", []redis.UniversalClient{ring, a, b}, time.Second, "nodes[0]"},
		{"cluster_without_guard", []redis.UniversalClient{a, cluster, b}, 0, ""},
		{"ring_without_guard", []redis.UniversalClient{ring, a, b}, 0, ""},
		{"standalone_with_guard", []redis.UniversalClient{a, b, c}, time.Second, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := dlock.New(dlock.RedisNodes(tt.clients...), dlock.WithRestartGuard(tt.guard))
			if tt.wantErr == "" {
				if err != nil || r == nil {
					t.Errorf("New = %v, %v; want a Redlock", r, err)
				}
				return
			}
			if !errors.Is(err, dlock.ErrInvalidConfig) || r != nil {
				t.Fatalf("New = %v, %v; want an error wrapping ErrInvalidConfig", r, err)
			}
			if got := err.Error(); !strings.Contains(got, tt.wantErr) {
				t.Errorf("New error %q does not name %s", got, tt.wantErr)
			}
		})
	}
}

// Inspect on real nodes reports what a fenced lock left: while it is held,
// the value and a TTL within the lock's on every node, and the counter at
// the token on a majority (never above it); after Release, the key gone and
// every counter kept as it was, without a time to live. An unfenced lock's
// key has no counter.
func TestIntegration_Inspect_reports_a_fenced_lock(t *testing.T) {
	fiSettle(t)
	ss := fiServers(t, 3)
	cs := fiClients(t, ss)
	nodes := dlock.RedisNodes(cs...)
	r, err := dlock.New(nodes)
	if err != nil {
		t.Fatal(err)
	}
	const (
		key = "fi:inspect"
		ttl = 5 * time.Second
	)
	inspectors := make([]dlock.Inspector, len(nodes))
	for i, n := range nodes {
		in, ok := n.(dlock.Inspector)
		if !ok {
			t.Fatalf("RedisNode %T does not implement dlock.Inspector", n)
		}
		inspectors[i] = in
	}
	// inspect returns every node's state once cond holds on all of them,
	// or after a second (the nodes that Lock or Release did not wait for
	// answer in the background).
	inspect := func(key string, cond func(dlock.KeyState) bool) []dlock.KeyState {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for {
			sts := make([]dlock.KeyState, len(inspectors))
			all := true
			for i, in := range inspectors {
				st, err := in.Inspect(t.Context(), key)
				if err != nil {
					t.Fatalf("node %d: Inspect(%q): %v", i, key, err)
				}
				sts[i] = st
				all = all && cond(st)
			}
			if all || time.Now().After(deadline) {
				return sts
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	first, err := r.Lock(key, "", dlock.WithFencing(), dlock.WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	// Release returns once a majority released; a node whose acquire was
	// still on its way releases after it. Wait for that, so that every node
	// is free for the next lock.
	for i, st := range inspect(key, func(st dlock.KeyState) bool { return !st.Held }) {
		if st.Held {
			t.Fatalf("node %d still holds the first lock's key 1s after its Release: %+v", i, st)
		}
	}
	called := time.Now()
	l, err := r.Lock(key, "", dlock.WithFencing(), dlock.WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	if l.Token() <= first.Token() {
		t.Errorf("second token %d, want above the first %d", l.Token(), first.Token())
	}
	// A node's counter may lag the token: where a majority returned the
	// token in the acquire round, the others are not raised.
	quorum := r.Quorum()
	held := inspect(key, func(st dlock.KeyState) bool { return st.Held })
	minTTL := ttl - time.Since(called) - 2*time.Millisecond // PTTL is in whole milliseconds
	nHeld, atToken := 0, 0
	for i, st := range held {
		if st.Held {
			nHeld++
			if st.Value != l.Value() {
				t.Errorf("node %d while held: Value %q, want %q", i, st.Value, l.Value())
			}
			if st.TTL < minTTL || st.TTL > ttl {
				t.Errorf("node %d while held: TTL %v, want in [%v, %v]", i, st.TTL, minTTL, ttl)
			}
			if !st.HasCounter || st.Counter > l.Token() {
				t.Errorf("node %d while held: Counter %d (HasCounter %v), want at most the token %d", i, st.Counter, st.HasCounter, l.Token())
			}
		}
		if st.HasCounter && st.Counter == l.Token() {
			atToken++
		} else {
			t.Logf("node %d: counter %d (HasCounter %v) lags the token %d", i, st.Counter, st.HasCounter, l.Token())
		}
	}
	if nHeld < quorum || atToken < quorum {
		t.Errorf("while held: the key on %d nodes and the counter at the token %d on %d, want each on at least a quorum (%d)",
			nHeld, l.Token(), atToken, quorum)
	}

	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	for i, st := range inspect(key, func(st dlock.KeyState) bool { return !st.Held }) {
		if st.Held || st.Value != "" || st.TTL != 0 {
			t.Errorf("node %d after Release: %+v, want the key gone", i, st)
		}
		if st.HasCounter != held[i].HasCounter || st.Counter != held[i].Counter {
			t.Errorf("node %d after Release: Counter %d (HasCounter %v), want %d (%v) kept",
				i, st.Counter, st.HasCounter, held[i].Counter, held[i].HasCounter)
		}
		// The counter key, as RedisNode documents it, has no time to live.
		if got, err := cs[i].PTTL(t.Context(), "dlock:fence:{"+key+"}").Result(); err != nil || got != -1 {
			t.Errorf("node %d: PTTL of the counter = %v, %v; want -1 (no time to live)", i, got, err)
		}
	}

	// An unfenced lock leaves no counter.
	u, err := r.Lock("fi:inspect-unfenced", "", dlock.WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Release()
	for i, st := range inspect("fi:inspect-unfenced", func(st dlock.KeyState) bool { return st.Held }) {
		if !st.Held || st.Value != u.Value() || st.HasCounter || st.Counter != 0 {
			t.Errorf("node %d, unfenced lock: %+v, want held by %q without a counter", i, st, u.Value())
		}
	}
}
