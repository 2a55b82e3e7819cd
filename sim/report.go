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
	Seeds            int
	Acquisitions     int
	Operations       int
	Faults           int
	Violations       int
	LivenessFailures int
	Simulated        float64 // seconds
	// First is the first run that contradicts the expectation: for a safe
	// class the first with a violation or a liveness failure; for an unsafe
	// class without any violation, its first run.
	First *Result
}

// Verdict is what the class showed: "UNSAFE" with a violation, "stuck" with
// none but a liveness failure, else "safe".
func (c *ClassReport) Verdict() string { return verdict(c.Violations, c.LivenessFailures) }

// Match reports whether the class showed what it was expected to: an
// unsafe class at least one violation; a safe class no violation and no
// liveness failure.
func (c *ClassReport) Match() bool {
	if c.Expect == Unsafe {
		return c.Violations > 0
	}
	return c.Violations == 0 && c.LivenessFailures == 0
}

// Aggregate groups results by class, in the order classes first appear.
func Aggregate(results []*Result) []*ClassReport {
	var out []*ClassReport
	by := map[string]*ClassReport{}
	for _, r := range results {
		if r == nil { // a run that failed its test
			continue
		}
		c := by[r.Class]
		if c == nil {
			c = &ClassReport{Class: r.Class, Expect: r.Expect}
			by[r.Class] = c
			out = append(out, c)
		}
		c.Seeds++
		c.Acquisitions += r.Acquisitions
		c.Operations += r.Operations
		c.Faults += r.FaultTotal()
		c.Violations += r.Violations
		c.LivenessFailures += r.LivenessFailures
		c.Simulated += r.Simulated.Seconds()
		if c.First == nil && r.Offends() && (r.Expect == Safe || c.Seeds == 1) {
			c.First = r
		}
	}
	for _, c := range out {
		if c.Expect == Unsafe && c.Violations > 0 {
			c.First = nil
		}
	}
	return out
}

// WriteTable writes the per-class table and, for each class whose verdict
// does not match, the command that replays its first offending seed. It
// reports whether every class matched.
func WriteTable(w io.Writer, reports []*ClassReport) bool {
	fmt.Fprintf(w, "%-16s %5s %12s %10s %7s %10s %8s %8s %7s %s\n",
		"class", "seeds", "acquisitions", "operations", "faults", "violations", "liveness", "expected", "verdict", "result")
	ok := true
	var replays []string
	for _, c := range reports {
		res := "ok"
		if !c.Match() {
			res, ok = "MISMATCH", false
			if c.First != nil {
				replays = append(replays, fmt.Sprintf("%s: expected %s, got %s; replay: %s", c.Class, c.Expect, c.Verdict(), c.First.ReplayCommand()))
			}
		}
		fmt.Fprintf(w, "%-16s %5d %12d %10d %7d %10d %8d %8s %7s %s\n",
			c.Class, c.Seeds, c.Acquisitions, c.Operations, c.Faults, c.Violations, c.LivenessFailures, c.Expect, c.Verdict(), res)
	}
	if ok {
		fmt.Fprintf(w, "all %d classes as expected\n", len(reports))
	} else {
		fmt.Fprintln(w, "MISMATCH:", strings.Join(replays, "\n          "))
	}
	return ok
}
