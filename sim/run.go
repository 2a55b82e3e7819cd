package sim

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// Result is the checker's verdict on one run, with the run's trace.
type Result struct {
	Class  string
	Seed   int64
	Expect Expect
	Tokens TokenExpect
	Fenced bool // the class's resource refuses stale tokens

	Acquisitions int // successful Lock calls
	Operations   int // operations on the resource
	// Faults counts each kind of injected fault, by name: drop, slow (a message
	// delayed beyond the node timeout), partition,
	// crash, jump, pause.
	Faults map[string]int
	// Violations counts resource operations made by one client while
	// another held the lock by its own successful acquisition, in true time.
	Violations int
	// LivenessFailures counts clients that did not acquire the lock within
	// the scenario's Liveness after the last fault healed.
	LivenessFailures int
	// Stale counts the operations that the fenced resource refused (their
	// token was below one it had accepted); 0 in a class whose resource
	// refuses nothing.
	Stale int
	// TokenViolations counts grants that break the token contract: a grant
	// B with the same token as an earlier grant A, or whose successful
	// attempt started (true time) after some grant A's Lock returned, with
	// B's token below A's. Attempts that overlap are not ordered by the
	// contract (see the dlock package documentation).
	TokenViolations int
	// Inversions counts grants B whose Lock returned after some grant A's
	// with a smaller token, overlapping attempts included (violations
	// among them); for information.
	Inversions int
	// Unserial counts, in a fenced class, accepted operations whose token
	// is below that of an operation accepted before them: the resource's
	// accepted history must stay serial, so this must be 0.
	Unserial int
	// ClosestHandover is the smallest gap, in true time, between the end of
	// one client's hold and the start of the next hold by another client
	// that began after it; negative when two holds overlapped. It shows how
	// close a run came to a violation (0 when there was no handover).
	ClosestHandover time.Duration
	// Healed is when the last fault ended, since the start (0: no fault).
	Healed time.Duration
	// Simulated is the simulated length of the run.
	Simulated time.Duration
	// Trace is the run's event trace: a header, then one line per event
	// ordered by true time (ties by text), with the checker's findings
	// (VIOLATION, LIVENESS) after the events of their instant. RunMany drops
	// it unless asked to keep it; TraceHash stays.
	Trace []string
	// TraceHash is the SHA-256 of the trace (each line and a newline), in hex.
	TraceHash string
}

// FaultTotal is the number of faults of every kind.
func (r *Result) FaultTotal() int {
	n := 0
	for _, v := range r.Faults {
		n += v
	}
	return n
}

// Verdict is what the run showed, in the form of its class's expectation
// (ExpectString): "UNSAFE" holds with a violation, else "safe"; then
// "tokens UNSAFE" with a token violation (or, fenced, an unserial accepted
// history), else "tokens safe"; then ", stuck" when a client failed to
// acquire after the faults healed, where the class must stay live.
func (r *Result) Verdict() string {
	return verdict(r.Violations, r.TokenViolations+r.Unserial, r.LivenessFailures, r.live())
}

// ExpectString is what the run's class must show: "safe" or "UNSAFE"
// holds (UNSAFE: at least one overlap), then the tokens' expectation.
func (r *Result) ExpectString() string { return expectString(r.Expect, r.Tokens) }

func expectString(e Expect, t TokenExpect) string { return e.String() + ", tokens " + t.String() }

// verdict names what a run or a class showed; see Result.Verdict.
func verdict(violations, tokenViolations, livenessFailures int, live bool) string {
	holds, tokens := "safe", "safe"
	if violations > 0 {
		holds = "UNSAFE"
	}
	if tokenViolations > 0 {
		tokens = "UNSAFE"
	}
	s := holds + ", tokens " + tokens
	if live && livenessFailures > 0 {
		s += ", stuck"
	}
	return s
}

// live reports whether the class must stay live: a class that must be safe
// for holds, or a fenced class whose tokens must be safe (its verdict).
func (r *Result) live() bool { return mustStayLive(r.Expect, r.Tokens, r.Fenced) }

func mustStayLive(e Expect, t TokenExpect, fenced bool) bool {
	return e == Safe || fenced && t == TokensSafe
}

// Broken reports whether this run shows what its class must never show:
// an overlap in a class safe for holds, a token violation where tokens must
// be safe, an unserial accepted history, or a liveness failure where the
// class must stay live.
func (r *Result) Broken() bool {
	return r.Expect == Safe && r.Violations > 0 ||
		r.Tokens == TokensSafe && r.TokenViolations > 0 ||
		r.Unserial > 0 ||
		r.live() && r.LivenessFailures > 0
}

// Offends reports whether this run, on its own, contradicts its class's
// expectation: it is Broken, or it lacks what its class must show (a
// violation in a class UNSAFE for holds, a token violation in a class
// UNSAFE for tokens).
func (r *Result) Offends() bool {
	return r.Broken() || r.Expect == Unsafe && r.Violations == 0 || r.Tokens == TokensUnsafe && r.TokenViolations == 0
}

// hashTrace is the SHA-256 of the lines, each followed by a newline, in hex.
func hashTrace(lines []string) string {
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Summary is one line describing the run.
func (r *Result) Summary() string {
	var fs []string
	for _, k := range faultNames {
		if n := r.Faults[k]; n > 0 {
			fs = append(fs, fmt.Sprintf("%s:%d", k, n))
		}
	}
	if len(fs) == 0 {
		fs = []string{"none"}
	}
	return fmt.Sprintf("class=%s seed=%d simulated=%v acquisitions=%d operations=%d faults=%s violations=%d stale=%d token_violations=%d inversions=%d unserial=%d closest_handover=%v liveness_failures=%d healed=%s expected=%q verdict=%q trace_sha256=%s",
		r.Class, r.Seed, r.Simulated, r.Acquisitions, r.Operations, strings.Join(fs, ","),
		r.Violations, r.Stale, r.TokenViolations, r.Inversions, r.Unserial, r.ClosestHandover, r.LivenessFailures,
		strings.TrimSpace(stamp(r.Healed)), r.ExpectString(), r.Verdict(), r.TraceHash)
}

// ReplayCommand is the command that replays this run with its trace.
func (r *Result) ReplayCommand() string {
	return fmt.Sprintf("make sim CLASS=%s SEED=%d TRACE=1", r.Class, r.Seed)
}

// Run runs scenario sc with seed in a new synctest bubble and returns the
// checker's result. It must be called from a test (or a test binary built by
// testing.Main), not from inside a bubble. An error in the scenario fails t.
func Run(t *testing.T, sc Scenario, seed int64) *Result {
	t.Helper()
	var res *Result
	synctest.Test(t, func(t *testing.T) {
		w, err := newWorld(sc, seed)
		if err != nil {
			t.Error(err)
			return
		}
		w.run()
		res = w.result()
	})
	if res == nil {
		t.Fatalf("sim: %s seed %d: no result", sc.Name, seed)
	}
	return res
}

// stamp formats an offset from the start of the run, like "  12.345678901".
func stamp(d time.Duration) string {
	sign := " "
	if d < 0 {
		sign, d = "-", -d
	}
	return fmt.Sprintf("%s%3d.%09d", sign, d/time.Second, d%time.Second)
}

// result runs the checker over the records of a finished run.
func (w *world) result() *Result {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := &Result{
		Class: w.sc.Name, Seed: int64(w.seed), Expect: w.sc.Expect, Tokens: w.sc.Tokens, Fenced: w.sc.Fenced,
		Acquisitions: len(w.holds), Operations: len(w.ops),
		Faults:    map[string]int{},
		Simulated: time.Since(w.start),
	}
	for k, n := range w.faults {
		r.Faults[faultNames[k]] = n
	}
	if !w.healed.IsZero() {
		r.Healed = w.healed.Sub(w.start)
	}

	// Mutual exclusion, in true time.
	var findings []event
	for _, o := range w.ops {
		for hi, h := range w.holds {
			if h.client != o.client && !o.at.Before(h.acq) && o.at.Before(h.end) {
				r.Violations++
				own := w.holds[o.hold]
				findings = append(findings, event{o.at.Sub(w.start), true, fmt.Sprintf(
					"VIOLATION: c%d operates (its hold: acquired at %s, until %s) while c%d holds (hold #%d: acquired at %s, until %s)",
					o.client, stamp(own.acq.Sub(w.start)), stamp(own.end.Sub(w.start)), h.client, hi, stamp(h.acq.Sub(w.start)), stamp(h.end.Sub(w.start)))})
				break
			}
		}
	}

	findings = append(findings, w.checkTokens(r)...)

	first := true
	for _, b := range w.holds {
		for _, a := range w.holds {
			if a.client != b.client && a.acq.Before(b.acq) {
				if g := b.acq.Sub(a.end); first || g < r.ClosestHandover {
					r.ClosestHandover, first = g, false
				}
			}
		}
	}

	// Liveness: every client acquires within Liveness of the last heal
	// (or was holding when it healed).
	healed := w.start
	if !w.healed.IsZero() {
		healed = w.healed
	}
	deadline := healed.Add(w.sc.Liveness)
	for c := range w.sc.Clients {
		ok := false
		for _, h := range w.holds {
			if h.client == c && ((!h.acq.Before(healed) && !h.acq.After(deadline)) || (h.acq.Before(healed) && h.end.After(healed))) {
				ok = true
				break
			}
		}
		if !ok {
			r.LivenessFailures++
			findings = append(findings, event{deadline.Sub(w.start), true, fmt.Sprintf(
				"LIVENESS: c%d did not acquire within %v after the last fault healed at %s", c, w.sc.Liveness, stamp(healed.Sub(w.start)))})
		}
	}

	evs := append(slices.Clone(w.events), findings...)
	slices.SortStableFunc(evs, func(a, b event) int {
		switch {
		case a.at != b.at:
			return cmp.Compare(a.at, b.at)
		case a.finding != b.finding:
			if a.finding {
				return 1
			}
			return -1
		}
		return strings.Compare(a.text, b.text)
	})
	r.Trace = make([]string, 0, len(evs)+1)
	r.Trace = append(r.Trace, fmt.Sprintf("# class=%s seed=%d: %s; %d nodes, %d clients, TTL %v, node timeout %v",
		w.sc.Name, w.seed, w.sc.About, w.sc.Nodes, w.sc.Clients, w.sc.TTL, w.sc.NodeTimeout))
	for _, e := range evs {
		r.Trace = append(r.Trace, stamp(e.at)+"  "+e.text)
	}
	r.TraceHash = hashTrace(r.Trace)
	return r
}

// checkTokens counts the fenced resource's refusals, checks that a fenced
// resource's accepted history is serial, and checks the token contract over
// every pair of grants; it returns its findings. w.mu is held.
func (w *world) checkTokens(r *Result) []event {
	var findings []event
	at := func(t time.Time) time.Duration { return t.Sub(w.start) }

	ops := slices.Clone(w.ops)
	slices.SortStableFunc(ops, func(a, b resourceOp) int { return a.at.Compare(b.at) })
	var top uint64
	for _, o := range ops {
		if o.refused {
			r.Stale++
			continue
		}
		if w.sc.Fenced && o.token < top {
			r.Unserial++
			findings = append(findings, event{at(o.at), true, fmt.Sprintf(
				"NOT SERIAL: the resource accepted c%d's token %d after token %d", o.client, o.token, top)})
		}
		top = max(top, o.token)
	}

	// Per grant B, in the order Lock returned: the earlier grant with its
	// token, if any; else the grant with the largest token above B's among
	// those that returned before B's attempt started (a violation); else
	// among those that returned before B did (an inversion).
	for ib, b := range w.holds {
		dup, viol, inv := -1, -1, -1
		for ia, a := range w.holds {
			switch {
			case ia == ib:
			case a.token == b.token:
				if ia < ib && dup < 0 {
					dup = ia
				}
			case a.token > b.token && a.acq.Before(b.attempt):
				if viol < 0 || a.token > w.holds[viol].token {
					viol = ia
				}
			case a.token > b.token && a.acq.Before(b.acq):
				if inv < 0 || a.token > w.holds[inv].token {
					inv = ia
				}
			}
		}
		grant := fmt.Sprintf("c%d's grant (hold #%d, token %d, attempt started at %s)", b.client, ib, b.token, stamp(at(b.attempt)))
		switch {
		case dup >= 0:
			a := w.holds[dup]
			r.TokenViolations++
			findings = append(findings, event{at(b.acq), true, fmt.Sprintf(
				"TOKEN VIOLATION: %s has the token of c%d's (hold #%d, returned at %s)", grant, a.client, dup, stamp(at(a.acq)))})
		case viol >= 0:
			a := w.holds[viol]
			r.TokenViolations++
			r.Inversions++
			findings = append(findings, event{at(b.acq), true, fmt.Sprintf(
				"TOKEN VIOLATION: %s is below c%d's (hold #%d, token %d, returned at %s)", grant, a.client, viol, a.token, stamp(at(a.acq)))})
		case inv >= 0:
			a := w.holds[inv]
			r.Inversions++
			findings = append(findings, event{at(b.acq), true, fmt.Sprintf(
				"token inversion (attempts overlapped; for information): %s is below c%d's (hold #%d, token %d, returned at %s)", grant, a.client, inv, a.token, stamp(at(a.acq)))})
		}
	}
	return findings
}
