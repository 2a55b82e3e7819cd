// Command dlocksim runs dlock's deterministic simulation: every scenario
// class over a range of seeds, printing a table of acquisitions, operations,
// faults, mutual-exclusion violations (overlaps), stale operations refused
// by a fenced resource, token violations, token inversions and liveness
// failures per class, and exiting 0 only when every class shows what it is
// expected to (see package sim's documentation, "The checker").
//
// Usage:
//
//	dlocksim [-class name[,name…]] [-seed n | -seeds k -first-seed s] [-trace] [-v]
//
// With -seed, only that seed runs; with -trace, each run's full event trace
// (one line per event, in virtual time) and its summary are printed first;
// with -v, each run's summary line.
// The same flags print the same bytes in every process; wall-clock timing
// goes to standard error.
//
// Each run is a testing/synctest bubble, which needs a *testing.T, so the
// command hosts its runs in an in-process test (testing.Main).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/charconstpointer/dlock/sim"
)

// DefaultSeeds is the number of seeds per class of a plain run.
const DefaultSeeds = 30

// optInt is an integer flag that an empty value (as make passes for an unset
// variable) leaves unset.
type optInt struct {
	v   int64
	set bool
}

func (o *optInt) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.FormatInt(o.v, 10)
}

func (o *optInt) Set(s string) error {
	if s == "" {
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return err
	}
	o.v, o.set = v, true
	return nil
}

// optBool is a boolean flag that accepts an empty value as false.
type optBool bool

func (o *optBool) String() string { return strconv.FormatBool(bool(o != nil && bool(*o))) }

func (o *optBool) Set(s string) error {
	if s == "" {
		*o = false
		return nil
	}
	v, err := strconv.ParseBool(s)
	*o = optBool(v)
	return err
}

func (o *optBool) IsBoolFlag() bool { return true }

var (
	class                 = flag.String("class", "", "run only these classes, comma-separated (default: all)")
	seed, seeds, firstSed optInt
	trace, verbose        optBool
)

func main() {
	flag.Var(&seed, "seed", "run only this seed")
	flag.Var(&seeds, "seeds", "number of seeds per class (default "+strconv.Itoa(DefaultSeeds)+")")
	flag.Var(&firstSed, "first-seed", "first seed (default 1)")
	flag.Var(&trace, "trace", "print each run's event trace and summary")
	flag.Var(&verbose, "v", "print each run's summary line (with its trace hash)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: dlocksim [-class name[,name...]] [-seed n | -seeds k -first-seed s] [-trace] [-v]\nclasses:")
		for _, c := range sim.Classes() {
			fmt.Fprintf(flag.CommandLine.Output(), " %s", c.Name)
		}
		fmt.Fprintln(flag.CommandLine.Output())
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	classes := sim.Classes()
	if *class != "" {
		classes = nil
		for name := range strings.SplitSeq(*class, ",") {
			sc, ok := sim.Lookup(strings.TrimSpace(name))
			if !ok {
				fmt.Fprintf(os.Stderr, "dlocksim: unknown class %q\n", name)
				flag.Usage()
				os.Exit(2)
			}
			classes = append(classes, sc)
		}
	}
	first, n := int64(1), DefaultSeeds
	if firstSed.set {
		first = firstSed.v
	}
	if seeds.set {
		if seeds.v < 1 {
			fmt.Fprintln(os.Stderr, "dlocksim: -seeds must be ≥ 1")
			os.Exit(2)
		}
		n = int(seeds.v)
	}
	if seed.set {
		first, n = seed.v, 1
	}
	jobs := sim.Jobs(classes, first, n)

	// testing.Main parses no flags of its own once flag.Parse has run; it
	// hosts the runs as one test, which exits the process itself.
	testing.Main(func(string, string) (bool, error) { return true, nil },
		[]testing.InternalTest{{Name: "dlocksim", F: func(t *testing.T) { os.Exit(run(t, jobs)) }}}, nil, nil)
}

// run makes the jobs and prints traces, summaries and the table; it returns
// the exit code.
func run(t *testing.T, jobs []sim.Job) int {
	start := time.Now()
	results := sim.RunMany(t, jobs, bool(trace))
	if t.Failed() {
		fmt.Fprintln(os.Stderr, "dlocksim: a run failed (see above)")
		return 2
	}
	wall := time.Since(start)
	var b strings.Builder
	for _, r := range results {
		if trace {
			for _, l := range r.Trace {
				b.WriteString(l)
				b.WriteByte('\n')
			}
		}
		if trace || verbose || len(jobs) == 1 {
			b.WriteString(r.Summary())
			b.WriteByte('\n')
		}
	}
	if trace || verbose || len(jobs) == 1 {
		b.WriteByte('\n')
	}
	os.Stdout.WriteString(b.String())
	reports := sim.Aggregate(results)
	ok := sim.WriteTable(os.Stdout, reports)
	var simulated float64
	for _, c := range reports {
		simulated += c.Simulated
	}
	fmt.Fprintf(os.Stderr, "dlocksim: %d runs, %.0f simulated seconds in %.1fs wall (%.0f simulated s per wall s, GOMAXPROCS=%d)\n",
		len(results), simulated, wall.Seconds(), simulated/wall.Seconds(), runtime.GOMAXPROCS(0))
	if !ok {
		return 1
	}
	return 0
}
