package sim

import (
	"fmt"
	"io"
	"strings"
	"testing"
)

// Job is one run to make: a class and a seed.
type Job struct {
	Scenario Scenario
	Seed     int64
}

// Jobs returns the runs of seeds first … first+n-1 for each class.
func Jobs(classes []Scenario, first int64, n int) []Job {
	var js []Job
	for _, sc := range classes {
		for s := range int64(n) {
			js = append(js, Job{sc, first + s})
		}
	}
	return js
}

// RunMany runs the jobs as parallel subtests of t (one synctest bubble each)
// and returns their results in the order of jobs. Traces are dropped unless
// keepTraces is set; their hashes are kept.
func RunMany(t *testing.T, jobs []Job, keepTraces bool) []*Result {
	t.Helper()
	res := make([]*Result, len(jobs))
	t.Run("runs", func(t *testing.T) {
		for i, j := range jobs {
			t.Run(fmt.Sprintf("%s/seed=%d", j.Scenario.Name, j.Seed), func(t *testing.T) {
				t.Parallel()
				r := Run(t, j.Scenario, j.Seed)
				if !keepTraces {
					r.Trace = nil
				}
				res[i] = r
			})
		}
	})
	return res
}

// ClassReport aggregates the runs of one class.
type ClassReport struct {
	Class            string
	Expect           Expect
	Tokens           TokenExpect
	Fenced           bool
	Seeds            int
	Acquisitions     int
	Operations       int
	Faults           int
	Violations       int
	LivenessFailures int
	Stale            int
	TokenViolations  int
	Inversions       int
	Unserial         int
	Simulated        float64 // seconds
	// First is the first run that contradicts the expectation: the first
	// Broken one (see Result.Broken); or, when none is and the class lacks
	// what it must show, its first run.
	First *Result
}

// Verdict is what the class showed, in the form of ExpectString; see
// Result.Verdict.
func (c *ClassReport) Verdict() string {
	return verdict(c.Violations, c.TokenViolations+c.Unserial, c.LivenessFailures, mustStayLive(c.Expect, c.Tokens, c.Fenced))
}

// ExpectString is what the class must show, such as "UNSAFE, tokens safe".
func (c *ClassReport) ExpectString() string { return expectString(c.Expect, c.Tokens) }

// Mismatches lists how the class contradicts its expectation; none when it
// matches.
//
// Holds: a class safe for holds must show no violation; one UNSAFE for
// holds at least one (it runs outside Redlock's assumptions, and proves the
// checker sees it). Tokens: TokensSafe no token violation, TokensUnsafe at
// least one, TokensAny either. A fenced class's resource must keep its
// accepted history serial and, where holds overlapped, must have refused
// stale operations. A class safe for holds, or fenced with safe tokens (its
// verdict is its tokens'), must show no liveness failure.
func (c *ClassReport) Mismatches() []string {
	var m []string
	switch {
	case c.Expect == Safe && c.Violations > 0:
		m = append(m, fmt.Sprintf("%d overlapping hold(s)", c.Violations))
	case c.Expect == Unsafe && c.Violations == 0:
		m = append(m, "no overlapping hold")
	}
	switch {
	case c.Tokens == TokensSafe && c.TokenViolations > 0:
		m = append(m, fmt.Sprintf("%d token violation(s)", c.TokenViolations))
	case c.Tokens == TokensUnsafe && c.TokenViolations == 0:
		m = append(m, "no token violation")
	}
	if c.Unserial > 0 {
		m = append(m, fmt.Sprintf("%d unserial accepted operation(s)", c.Unserial))
	}
	if c.Fenced && c.Violations > 0 && c.Stale == 0 {
		m = append(m, "holds overlapped, but no stale operation refused")
	}
	if mustStayLive(c.Expect, c.Tokens, c.Fenced) && c.LivenessFailures > 0 {
		m = append(m, fmt.Sprintf("%d liveness failure(s)", c.LivenessFailures))
	}
	return m
}

// Match reports whether the class showed what it was expected to (no
// Mismatches).
func (c *ClassReport) Match() bool { return len(c.Mismatches()) == 0 }

// Aggregate groups results by class, in the order classes first appear.
func Aggregate(results []*Result) []*ClassReport {
	var out []*ClassReport
	by := map[string]*ClassReport{}
	firsts := map[string]*Result{}
	for _, r := range results {
		if r == nil { // a run that failed its test
			continue
		}
		c := by[r.Class]
		if c == nil {
			c = &ClassReport{Class: r.Class, Expect: r.Expect, Tokens: r.Tokens, Fenced: r.Fenced}
			by[r.Class] = c
			firsts[r.Class] = r
			out = append(out, c)
		}
		c.Seeds++
		c.Acquisitions += r.Acquisitions
		c.Operations += r.Operations
		c.Faults += r.FaultTotal()
		c.Violations += r.Violations
		c.LivenessFailures += r.LivenessFailures
		c.Stale += r.Stale
		c.TokenViolations += r.TokenViolations
		c.Inversions += r.Inversions
		c.Unserial += r.Unserial
		c.Simulated += r.Simulated.Seconds()
		if c.First == nil && r.Broken() {
			c.First = r
		}
	}
	for _, c := range out {
		if c.First == nil && !c.Match() {
			c.First = firsts[c.Class]
		}
	}
	return out
}

// WriteTable writes the per-class table and, for each class whose verdict
// does not match, why and the command that replays its first offending
// seed. It reports whether every class matched.
func WriteTable(w io.Writer, reports []*ClassReport) bool {
	const row = "%-22s %5s %6s %6s %6s %8s %6s %6s %6s %5s  %-22s %-28s %s\n"
	fmt.Fprintf(w, row, "class", "seeds", "acq", "ops", "faults", "overlaps", "stale", "tokvio", "invers", "stuck", "expected", "verdict", "result")
	ok := true
	var replays []string
	for _, c := range reports {
		res := "ok"
		if m := c.Mismatches(); len(m) > 0 {
			res, ok = "MISMATCH", false
			line := fmt.Sprintf("%s: expected %s, got %s", c.Class, c.ExpectString(), strings.Join(m, ", "))
			if c.First != nil {
				line += "; replay: " + c.First.ReplayCommand()
			}
			replays = append(replays, line)
		}
		stale := "-"
		if c.Fenced {
			stale = fmt.Sprint(c.Stale)
		}
		fmt.Fprintf(w, row, c.Class, fmt.Sprint(c.Seeds), fmt.Sprint(c.Acquisitions), fmt.Sprint(c.Operations), fmt.Sprint(c.Faults),
			fmt.Sprint(c.Violations), stale, fmt.Sprint(c.TokenViolations), fmt.Sprint(c.Inversions), fmt.Sprint(c.LivenessFailures),
			c.ExpectString(), c.Verdict(), res)
	}
	fmt.Fprintln(w, "overlaps: operations inside another client's hold; stale: operations the fenced resource refused (-: it refuses none);")
	fmt.Fprintln(w, "tokvio: token violations; invers: later grants with smaller tokens, attempts overlapping (information); stuck: liveness failures.")
	if ok {
		fmt.Fprintf(w, "all %d classes as expected\n", len(reports))
	} else {
		fmt.Fprintln(w, "MISMATCH:", strings.Join(replays, "\n          "))
	}
	return ok
}
