// Command benchreport turns the raw output of the dlock benchmarks (go test
// -bench, several -count runs) into BENCHMARKS.md: per scenario a table of
// medians with ranges, the ratios dlock/peer within the same run, and the
// issue's targets, met or missed.
//
//	go run ./cmd/benchreport -raw out/raw.txt -benchstat out/benchstat.txt -cmd '...' > ../BENCHMARKS.md
//
// The machine description comes from the environment: BENCH_NPROC,
// BENCH_CPU, BENCH_GO, BENCH_REDIS, BENCH_DATE, BENCH_LOAD_BEFORE,
// BENCH_LOAD_AFTER.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// row identifies one sub-benchmark: a library on a node count.
type row struct {
	lib   string
	nodes int
}

// samples holds, per scenario and row, every value of every unit.
type samples map[string]map[row]map[string][]float64

var procSuffix = regexp.MustCompile(`-\d+$`)

// parse reads raw benchmark output. Besides the samples it returns the
// failures and benchmark logs (--- FAIL / --- BENCH blocks), one string each.
func parse(r io.Reader) (samples, []string, error) {
	s := samples{}
	var notes []string
	inBlock := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "--- FAIL:") || strings.HasPrefix(line, "--- BENCH:"):
			inBlock = true
			notes = append(notes, strings.TrimSpace(line))
			continue
		case inBlock && strings.HasPrefix(line, "    "):
			// Each log line is cut at 300 bytes (a node error can nest its
			// predecessors), so that the lines after a long one still show.
			if n := &notes[len(notes)-1]; len(*n) < 3000 {
				l := strings.TrimSpace(line)
				if len(l) > 300 {
					l = strings.ToValidUTF8(l[:300], "") + " …"
				}
				*n += "\n" + l
			}
			continue
		default:
			inBlock = false
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		parts := strings.Split(procSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), ""), "/")
		var rw row
		for _, p := range parts[1:] {
			k, v, _ := strings.Cut(p, "=")
			switch k {
			case "lib":
				rw.lib = v
			case "nodes":
				rw.nodes, _ = strconv.Atoi(v)
			}
		}
		sc := parts[0]
		if s[sc] == nil {
			s[sc] = map[row]map[string][]float64{}
		}
		if s[sc][rw] == nil {
			s[sc][rw] = map[string][]float64{}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			s[sc][rw][f[i+1]] = append(s[sc][rw][f[i+1]], v)
		}
	}
	return s, notes, sc.Err()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	ys := slices.Clone(xs)
	slices.Sort(ys)
	n := len(ys)
	if n%2 == 1 {
		return ys[n/2]
	}
	return (ys[n/2-1] + ys[n/2]) / 2
}

func num(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "–"
	case a == 0:
		return "0"
	case a >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

// cell is "median (min–max)", or the median alone when all runs agree.
func cell(xs []float64) string {
	if len(xs) == 0 {
		return "–"
	}
	lo, hi := slices.Min(xs), slices.Max(xs)
	if len(xs) == 1 || num(lo) == num(hi) {
		return num(median(xs))
	}
	return fmt.Sprintf("%s (%s–%s)", num(median(xs)), num(lo), num(hi))
}

var libOrder = []string{"dlock", fenced, defaults, "redsync", "redsync-ff", "floor", "redislock"}

// fenced is dlock with WithFencing (scenario 1 only). It is dlock, not a
// peer: the dlock/peer tables leave it out, and the Fencing section compares
// it with dlock.
const fenced = "dlock-fenced"

// defaults is dlock with its own default retry options (scenario 3 only);
// like fenced, it is dlock, not a peer.
const defaults = "dlock-defaults"

func rows(m map[row]map[string][]float64) []row {
	var rs []row
	for r := range m {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b row) int {
		if a.nodes != b.nodes {
			return a.nodes - b.nodes
		}
		return slices.Index(libOrder, a.lib) - slices.Index(libOrder, b.lib)
	})
	return rs
}

type col struct{ unit, title string }

// header prints a markdown table's header: lead and the columns' titles,
// then leadRule and a right-aligned rule per column.
func header(w io.Writer, lead, leadRule string, cols []col) {
	fmt.Fprint(w, lead)
	for _, c := range cols {
		fmt.Fprintf(w, " %s |", c.title)
	}
	fmt.Fprint(w, "\n"+leadRule)
	for range cols {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
}

func table(w io.Writer, m map[row]map[string][]float64, cols []col) {
	header(w, "| library | nodes |", "|---|---:|", cols)
	for _, r := range rows(m) {
		fmt.Fprintf(w, "| %s | %d |", r.lib, r.nodes)
		for _, c := range cols {
			fmt.Fprintf(w, " %s |", cell(m[r][c.unit]))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

// med returns the median of unit for lib in scenario sc (any node count
// when nodes is 0).
func (s samples) med(sc, lib string, nodes int, unit string) float64 {
	for r, m := range s[sc] {
		if r.lib == lib && (nodes == 0 || r.nodes == nodes) {
			return median(m[unit])
		}
	}
	return math.NaN()
}

// ratios prints dlock/peer for the given units, each peer on the same node
// count as dlock (redislock: its single node).
func ratios(w io.Writer, s samples, sc string, nodes int, cols []col) {
	var peers []string
	for _, peer := range libOrder[1:] {
		pn := nodes
		if peer == "redislock" {
			pn = 1
		}
		if peer != fenced && peer != defaults && !math.IsNaN(s.med(sc, peer, pn, cols[0].unit)) {
			peers = append(peers, peer)
		}
	}
	if len(peers) == 0 || math.IsNaN(s.med(sc, "dlock", nodes, cols[0].unit)) {
		return // a run limited to dlock (-test.bench): nothing to compare
	}
	header(w, "| dlock / peer |", "|---|", cols)
	for _, peer := range peers {
		pn := nodes
		if peer == "redislock" {
			pn = 1
		}
		name := peer
		if pn != nodes {
			name = fmt.Sprintf("%s (%d node vs dlock on %d)", peer, pn, nodes)
		}
		fmt.Fprintf(w, "| %s |", name)
		for _, c := range cols {
			fmt.Fprintf(w, " %s |", ratio(s.med(sc, "dlock", nodes, c.unit), s.med(sc, peer, pn, c.unit)))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) {
		return "–"
	}
	if b == 0 {
		if a == 0 {
			return "= (both 0)"
		}
		return fmt.Sprintf("%s vs 0", num(a))
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func main() {
	raw := flag.String("raw", "out/raw.txt", "raw go test -bench output")
	bstat := flag.String("benchstat", "", "benchstat output to include")
	cmd := flag.String("cmd", "", "the command that produced the raw output")
	notesFile := flag.String("notes", "", "hand-written analysis (markdown) to include after the targets")
	notRunNote = flag.String("not-run", "", "what to say under a scenario this run did not measure")
	flag.Parse()
	f, err := os.Open(*raw)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s, notes, err := parse(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	report(w, s, *cmd, *bstat, *notesFile)
	failures(w, notes)
}

func runs(s samples) int {
	n := 0
	for _, m := range s {
		for _, u := range m {
			n = max(n, len(u["ns/op"]))
		}
	}
	return n
}

var (
	latCols = []col{{"ops/s", "ops/s"}, {"p50-us", "p50 µs"}, {"p99-us", "p99 µs"}, {"allocs/op", "allocs/op"}, {"B/op", "B/op"}}
	s3Cols  = []col{{"acq/s", "acquisitions/s"}, {"handoff-p50-us", "handoff p50 µs"}, {"handoff-p99-us", "handoff p99 µs"},
		{"jain", "fairness (Jain)"}, {"min-share-%", "min share %"}, {"max-share-x", "busiest / fair share"},
		{"wait-p50-us", "wait p50 µs"}, {"wait-max-us", "longest wait µs"}, {"overlaps", "overlaps"}, {"errors", "errors"}}
	s7Cols = []col{{"ops/s", "ops/s"}, {"p50-us", "p50 µs"}, {"inflight-max", "in flight, max"}, {"inflight-end", "in flight at the end"},
		{"drain-ms", "drain ms"}, {"pool-timeouts", "pool timeouts"}, {"keys-left", "keys left"}, {"allocs/op", "allocs/op"}}
	s4Cols = []col{{"ops/s", "ops/s"}, {"p50-us", "p50 µs"}, {"p99-us", "p99 µs"}, {"keys-left", "keys left"},
		{"keys-left-slow", "on slow nodes"}, {"keys-left/1k-ops", "keys left / 1k ops"}, {"allocs/op", "allocs/op"}}
	s6Cols = []col{{"B/lock", "heap B/lock"}, {"goroutines/lock", "goroutines/lock"}, {"cpu-us/lock/s", "CPU µs/lock/s"},
		{"allocs/lock/s", "allocs/lock/s"}, {"lost", "locks lost"}}
)

func report(w io.Writer, s samples, cmd, bstat, notes string) {
	env := func(k string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return "unknown"
	}
	fmt.Fprintf(w, `# Benchmarks: dlock vs redsync, redislock and a floor

Generated by `+"`bench/run.sh`"+` (`+"`make bench`"+`) on %s. Do not edit by hand; rerun it.

- Command: `+"`%s`"+`
- Machine: %s CPUs (`+"`nproc`"+`), %s
- Go: %s; Redis: %s
- Load average (1, 5, 15 min) before / after the run: %s / %s. The machine may be shared;
  absolute numbers move with its load, ratios within one run much less.
- Runs: %d of every scenario below, one after another, so the libraries interleave. Each cell is the **median (min–max)** over the runs;
  ratios are ratios of medians from this same run.

## Setup

All nodes are independent `+"`redis-server`"+` processes on 127.0.0.1 of this machine (no
persistence), started by `+"`scripts/redis-nodes.sh`"+`; they share the CPUs with the benchmark,
so absolute numbers are lower than on dedicated hosts, but every library pays the same.
Every library gets a fresh set of go-redis v9 clients with go-redis's defaults
(PoolSize 10 per CPU, `+"`ContextTimeoutEnabled: false`"+`), warmed up (connections dialled,
scripts loaded) before timing.

| library | what runs | configuration |
|---|---|---|
| dlock | this repository, `+"`dlock.New(dlock.RedisNodes(...), dlock.WithDefaults(...))`"+`, `+"`LockContext(ctx, key, \"\")`"+`, `+"`ReleaseContext`"+` | TTL 10s, RetryInterval 5ms, RetryJitter 5ms, RetryLimit 32 (scenario 3: -1, until ctx ends), DriftFactor 0.01 and NodeTimeout TTL×0.05 = 500ms (defaults); scenario 6: RefreshInterval 2s |
| redsync | go-redsync/redsync v4.18.1, goredis v9 pool, `+"`NewMutex`"+` per lock, `+"`LockContext`"+`, `+"`UnlockContext`"+` | WithExpiry 10s, WithTries 33 (scenario 3: MaxInt32, until ctx ends), WithRetryDelayFunc 5ms + [0,5ms); drift 0.01 and timeout factor 0.05 (defaults) |
| redsync-ff | as redsync, plus `+"`WithFailFast(true)`"+` (returns at quorum) | as redsync |
| floor | plain go-redis: `+"`SET key value NX PX`"+` fanned out to all nodes in goroutines, returns at quorum; release = compare-and-delete script fanned out, returns at quorum; no validity check, no timeouts, no cleanup | TTL 10s, same retry interval/jitter/limit |
| redislock | bsm/redislock v0.9.4, single node by design, `+"`Obtain`"+`, `+"`Release`"+` | TTL 10s, RetryStrategy 5ms + [0,5ms) (its retries are bounded by time: Obtain's ctx gets a TTL deadline) |

Scenario 6 refreshes peers the way their users must: one goroutine per lock with a 2s ticker
calling `+"`ExtendContext`"+` (redsync), `+"`Refresh`"+` (redislock) or a fanned-out compare-and-pexpire
(floor). allocs/op and B/op include one allocation for the benchmark's fresh key string.

`, env("BENCH_DATE"), cmd, env("BENCH_NPROC"), env("BENCH_CPU"), env("BENCH_GO"), env("BENCH_REDIS"), env("BENCH_LOAD_BEFORE"), env("BENCH_LOAD_AFTER"), runs(s))

	targets(w, s)
	if notes != "" {
		if b, err := os.ReadFile(notes); err == nil {
			w.Write(b)
			fmt.Fprintln(w)
		}
	}

	if m := s["S1Uncontended"]; m != nil {
		fmt.Fprintln(w, "## 1. Uncontended Lock+Release, 1 goroutine, fresh key each time")
		fmt.Fprintln(w)
		table(w, m, latCols)
		ratios(w, s, "S1Uncontended", 5, []col{{"ops/s", "ops/s (>1: dlock faster)"}, {"p50-us", "p50 (<1: dlock faster)"}, {"p99-us", "p99"}, {"allocs/op", "allocs/op"}, {"B/op", "B/op"}})
	}
	if m := s["S2Parallel"]; m != nil {
		fmt.Fprintln(w, "## 2. 64 goroutines on distinct keys")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "ops/s is the aggregate; latency is per operation, including the wait for a free pooled connection.")
		fmt.Fprintln(w)
		table(w, m, latCols)
		ratios(w, s, "S2Parallel", 5, []col{{"ops/s", "ops/s (>1: dlock faster)"}, {"p99-us", "p99 (<1: dlock faster)"}, {"allocs/op", "allocs/op"}})
	}
	fmt.Fprintln(w, "## 3. Contention: 8 workers on one key, hold ~1ms, pause 5ms after Release")
	fmt.Fprintln(w)
	if m := s["S3Contended"]; m == nil {
		notRun(w, *notRunNote)
	} else {
		fmt.Fprintln(w, "Handoff: from one worker calling Release to another worker's Lock returning. Fairness: Jain's index over the 8 workers' acquisition counts (1 = equal shares). Overlaps: acquisitions while another worker still believed it held the lock (must be 0). Waiters poll (5ms + [0,5ms) between attempts) in every library; dlock's waiters also retry at once when a node announces the key's release on `dlock:released` (wake-on-release), and the nodes grant a free key to the longest waiter. dlock-defaults is dlock with its own default retry options (100ms + [0,50ms) between attempts), as a user who sets nothing gets them. Busiest / fair share: the most acquisitions of any worker over the mean (1 = equal). Wait: one Lock call, from its start to the lock; longest: of any worker in the run.")
		fmt.Fprintln(w)
		table(w, m, s3Cols)
		ratios(w, s, "S3Contended", 5, []col{{"acq/s", "acquisitions/s (>1: dlock more)"}, {"handoff-p50-us", "handoff p50 (<1: dlock faster)"}, {"handoff-p99-us", "handoff p99"}})
	}
	if m := s["S4SlowMinority"]; m != nil {
		fmt.Fprintln(w, "## 4. Slow minority: 2 of 5 nodes behind a TCP proxy adding 5ms each way")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Scenario 1's loop. Keys left: the run's keys still present on the nodes after the run, counted once the count stops changing (1s, then every 500ms, at most 5s; the TTL is 10s). A key left blocks that key for up to the TTL.")
		fmt.Fprintln(w)
		table(w, m, s4Cols)
		fmt.Fprintln(w, "Scenario 4 p50 / scenario 1 p50 (same library, same run; the slow nodes should not set the pace):")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| library | S4 p50 / S1 p50 |")
		fmt.Fprintln(w, "|---|---:|")
		for _, l := range libOrder {
			if v := s.med("S4SlowMinority", l, 5, "p50-us"); !math.IsNaN(v) {
				fmt.Fprintf(w, "| %s | %s |\n", l, ratio(v, s.med("S1Uncontended", l, 5, "p50-us")))
			}
		}
		fmt.Fprintln(w)
		ratios(w, s, "S4SlowMinority", 5, []col{{"ops/s", "ops/s (>1: dlock faster)"}, {"p50-us", "p50 (<1: dlock faster)"}, {"keys-left", "keys left"}})
	}
	if m := s["S5NodeCount"]; m != nil {
		fmt.Fprintln(w, "## 5. Node count: scenario 1 on 1, 3, 5, 7 nodes")
		fmt.Fprintln(w)
		table(w, m, latCols)
		fmt.Fprintln(w, "dlock / peer, ops/s (>1: dlock faster):")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| nodes | dlock/redsync | dlock/redsync-ff | dlock/floor | dlock/redislock (1 node) |")
		fmt.Fprintln(w, "|---:|---:|---:|---:|---:|")
		for _, n := range []int{1, 3, 5, 7} {
			d := s.med("S5NodeCount", "dlock", n, "ops/s")
			if math.IsNaN(d) {
				continue
			}
			fmt.Fprintf(w, "| %d | %s | %s | %s | %s |\n", n,
				ratio(d, s.med("S5NodeCount", "redsync", n, "ops/s")),
				ratio(d, s.med("S5NodeCount", "redsync-ff", n, "ops/s")),
				ratio(d, s.med("S5NodeCount", "floor", n, "ops/s")),
				ratio(d, s.med("S5NodeCount", "redislock", 1, "ops/s")))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "## 6. Holding many locks with auto-refresh (TTL 10s, refresh every 2s)")
	fmt.Fprintln(w)
	if m := s["S6Held"]; m == nil {
		notRun(w, *notRunNote)
	} else {
		fmt.Fprintln(w, "Heap: live heap after GC with all locks held, minus before, per lock. CPU: user+system CPU of the benchmark process (not the redis-servers) over one refresh period, per lock per second. Lost: locks whose refresh failed.")
		fmt.Fprintln(w)
		table(w, m, s6Cols)
		ratios(w, s, "S6Held", 5, []col{{"B/lock", "heap B/lock (<1: dlock smaller)"}, {"cpu-us/lock/s", "CPU/lock/s (<1: dlock cheaper)"}})
	}
	fmt.Fprintln(w, "## 7. One slow node: 1 of 5 nodes behind a TCP proxy adding 5ms each way")
	fmt.Fprintln(w)
	if m := s["S7SlowNode"]; m == nil {
		notRun(w, *notRunNote)
	} else {
		fmt.Fprintln(w, "Scenario 1's loop (one goroutine, fresh keys back to back). In flight: commands inside the slow node's go-redis client (from the call to its reply, including the wait for a pooled connection), sampled every millisecond during the run; at the end: when the loop stopped. Drain: from the end of the loop until none is left. Pool timeouts: calls to the slow node that waited PoolTimeout for a connection and failed. Keys left: as in scenario 4. dlock bounds the calls in flight per node (WithMaxInFlight, default 4× the client's pool size: 80 here); the benchmark logs the largest count of each 100ms window (see the logs at the end).")
		fmt.Fprintln(w)
		table(w, m, s7Cols)
		ratios(w, s, "S7SlowNode", 5, []col{{"ops/s", "ops/s (>1: dlock faster)"}, {"inflight-max", "in flight, max"}, {"drain-ms", "drain"}})
	}
	fencing(w, s)
	if bstat != "" {
		if b, err := os.ReadFile(bstat); err == nil {
			fmt.Fprintln(w, "## benchstat")
			fmt.Fprintln(w)
			fmt.Fprintln(w, "`benchstat -col /lib` over the same raw output: medians with 95% confidence intervals, each peer compared with dlock (the first column).")
			fmt.Fprintln(w)
			fmt.Fprintln(w, "<details><summary>benchstat output</summary>")
			fmt.Fprintln(w)
			fmt.Fprintln(w, "```")
			w.Write(b)
			fmt.Fprintln(w, "```")
			fmt.Fprintln(w)
			fmt.Fprintln(w, "</details>")
		}
	}
}

// notRunNote says why a scenario has no numbers (-not-run).
var notRunNote *string

// notRun stands for a scenario that this run did not measure (a BENCH
// regexp that left it out), so that the document keeps its sections.
func notRun(w io.Writer, why string) {
	fmt.Fprint(w, "Not measured in this run")
	if why != "" {
		fmt.Fprint(w, ": ", why)
	}
	fmt.Fprintln(w, ".")
	fmt.Fprintln(w)
}

// targets prints the targets with the measured values.
func targets(w io.Writer, s samples) {
	type check struct {
		what, value string
		ok          bool
		known       bool
	}
	var cs []check
	add := func(what string, a, b float64, format string, ok func(float64, float64) bool) {
		c := check{what: what, value: "not measured"}
		if !math.IsNaN(a) && !math.IsNaN(b) {
			c.known, c.ok, c.value = true, ok(a, b), fmt.Sprintf(format, a, b)
		}
		cs = append(cs, c)
	}
	d1 := s.med("S1Uncontended", "dlock", 5, "ops/s")
	add("S1 throughput ≥ 1.5× redsync (default)", d1, s.med("S1Uncontended", "redsync", 5, "ops/s"),
		"%.0f vs %.0f ops/s", func(a, b float64) bool { return a >= 1.5*b })
	if r := d1 / s.med("S1Uncontended", "redsync", 5, "ops/s"); !math.IsNaN(r) {
		cs[len(cs)-1].value += fmt.Sprintf(" = %.2f×", r)
	}
	add("S1 throughput ≥ 0.95× floor", d1, s.med("S1Uncontended", "floor", 5, "ops/s"),
		"%.0f vs %.0f ops/s", func(a, b float64) bool { return a >= 0.95*b })
	if r := d1 / s.med("S1Uncontended", "floor", 5, "ops/s"); !math.IsNaN(r) {
		cs[len(cs)-1].value += fmt.Sprintf(" = %.2f×", r)
	}
	add("S1 allocs/op below redsync's", s.med("S1Uncontended", "dlock", 5, "allocs/op"), s.med("S1Uncontended", "redsync", 5, "allocs/op"),
		"%.0f vs %.0f", func(a, b float64) bool { return a < b })
	add("S4 p50 within 1.5× of S1 p50", s.med("S4SlowMinority", "dlock", 5, "p50-us"), s.med("S1Uncontended", "dlock", 5, "p50-us"),
		"%.0f vs %.0f µs", func(a, b float64) bool { return a <= 1.5*b })
	if r := s.med("S4SlowMinority", "dlock", 5, "p50-us") / s.med("S1Uncontended", "dlock", 5, "p50-us"); !math.IsNaN(r) {
		cs[len(cs)-1].value += fmt.Sprintf(" = %.2f×", r)
	}
	add("S4 zero keys left", s.med("S4SlowMinority", "dlock", 5, "keys-left"), 0,
		"median %.0f keys (target %.0f)", func(a, b float64) bool { return a == 0 })
	if xs := s["S4SlowMinority"][row{"dlock", 5}]["keys-left"]; len(xs) > 0 {
		cs[len(cs)-1].value += fmt.Sprintf("; max %.0f", slices.Max(xs))
		cs[len(cs)-1].ok = slices.Max(xs) == 0
	}
	add("S1 fenced p50 ≤ 1.4× unfenced p50 (issue 8)", s.med("S1Uncontended", fenced, 5, "p50-us"), s.med("S1Uncontended", "dlock", 5, "p50-us"),
		"%.0f vs %.0f µs", func(a, b float64) bool { return a <= 1.4*b })
	if r := s.med("S1Uncontended", fenced, 5, "p50-us") / s.med("S1Uncontended", "dlock", 5, "p50-us"); !math.IsNaN(r) {
		cs[len(cs)-1].value += fmt.Sprintf(" = %.2f×", r)
	}
	add("S3 handoff p50 below redsync's", s.med("S3Contended", "dlock", 5, "handoff-p50-us"), s.med("S3Contended", "redsync", 5, "handoff-p50-us"),
		"%.0f vs %.0f µs", func(a, b float64) bool { return a < b })

	// Issue 10: contention, with dlock's default retry options.
	add("S3 handoff p50 ≤ 0.5 ms (dlock-defaults; issue 10)", s.med("S3Contended", defaults, 5, "handoff-p50-us"), 500,
		"%.0f µs (target %.0f)", func(a, b float64) bool { return a <= b })
	add("S3 handoff p99 ≤ 2 ms (dlock-defaults)", s.med("S3Contended", defaults, 5, "handoff-p99-us"), 2000,
		"%.0f µs (target %.0f)", func(a, b float64) bool { return a <= b })
	add("S3 busiest worker ≤ 1.5× the fair share (dlock-defaults)", s.med("S3Contended", defaults, 5, "max-share-x"), 1.5,
		"%.3f× (target %.1f×)", func(a, b float64) bool { return a <= b })
	add("S3 longest wait ≤ 10× the median wait (dlock-defaults)", s.med("S3Contended", defaults, 5, "wait-max-us"), s.med("S3Contended", defaults, 5, "wait-p50-us"),
		"%.0f vs %.0f µs", func(a, b float64) bool { return a <= 10*b })
	if r := s.med("S3Contended", defaults, 5, "wait-max-us") / s.med("S3Contended", defaults, 5, "wait-p50-us"); !math.IsNaN(r) {
		cs[len(cs)-1].value += fmt.Sprintf(" = %.1f×", r)
	}
	add("S7 calls in flight to the slow node ≤ the bound (80)", s.med("S7SlowNode", "dlock", 5, "inflight-max"), 80,
		"median of the runs' maxima %.0f (bound %.0f)", func(a, b float64) bool { return a <= b })
	if xs := s["S7SlowNode"][row{"dlock", 5}]["inflight-max"]; len(xs) > 0 {
		cs[len(cs)-1].value += fmt.Sprintf("; max %.0f", slices.Max(xs))
		cs[len(cs)-1].ok = slices.Max(xs) <= 80
	}
	add("S7 drain < 1 s, no pool timeouts, 0 keys left", s.med("S7SlowNode", "dlock", 5, "drain-ms"), s.med("S7SlowNode", "dlock", 5, "pool-timeouts")+s.med("S7SlowNode", "dlock", 5, "keys-left"),
		"drain %.0f ms; pool timeouts + keys left %.0f", func(a, b float64) bool { return a < 1000 && b == 0 })
	add("S1 ops/s ratio to redsync no lower than before the fair queue (1.35×)", d1/s.med("S1Uncontended", "redsync", 5, "ops/s"), 1.35,
		"%.2f× (before: %.2f×)", func(a, b float64) bool { return a >= b })

	fmt.Fprintln(w, "## Targets (issues 4, 8 and 10), dlock in this run")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | measured (medians) | met? |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, c := range cs {
		verdict := "–"
		if c.known {
			verdict = "**missed**"
			if c.ok {
				verdict = "yes"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", c.what, c.value, verdict)
	}
	fmt.Fprintln(w)
}

// fencing prints scenario 1 with and without fencing: the rows, the ratios
// of medians, the same ratio run by run (dlock and dlock-fenced run one
// after the other in every run), and what the counters say about the
// second (fence) round.
func fencing(w io.Writer, s samples) {
	const sc = "S1Uncontended"
	un, fe := s[sc][row{"dlock", 5}], s[sc][row{fenced, 5}]
	if un == nil || fe == nil {
		return
	}
	fmt.Fprintln(w, "## Fencing: scenario 1 with and without WithFencing (issue 8)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Scenario 1's loop (1 goroutine, Lock+Release on a fresh key, 5 nodes), dlock as configured above, and "+
		"dlock-fenced: the same plus `WithFencing()` (every Lock takes a token; the benchmark checks `Token() != 0`). "+
		"The two run one after the other in every run. A fenced grant is the fencing script (`EVALSHA`, which advances "+
		"the key's counter and returns it) instead of `SET NX PX`; a second round to the granting nodes runs only when "+
		"their counters disagree.")
	fmt.Fprintln(w)
	table(w, map[row]map[string][]float64{{"dlock", 5}: un, {fenced, 5}: fe}, latCols)
	cols := []col{{"ops/s", "ops/s (<1: fenced slower)"}, {"p50-us", "p50 (>1: fenced slower)"}, {"p99-us", "p99"}, {"allocs/op", "allocs/op"}, {"B/op", "B/op"}}
	header(w, "| ratio |", "|---|", cols)
	fmt.Fprint(w, "| dlock-fenced / dlock, ratio of medians |")
	for _, c := range cols {
		fmt.Fprintf(w, " %s |", ratio(median(fe[c.unit]), median(un[c.unit])))
	}
	fmt.Fprintln(w)
	// Run by run: the i-th sample of each row comes from the i-th run when
	// both rows have one sample per run.
	if n := len(un["p50-us"]); n > 0 && n == len(fe["p50-us"]) && n == len(un["p99-us"]) && n == len(fe["p99-us"]) &&
		n == len(un["ops/s"]) && n == len(fe["ops/s"]) {
		fmt.Fprint(w, "| dlock-fenced / dlock, run by run: median (min–max) |")
		for _, c := range cols {
			if len(un[c.unit]) != n || len(fe[c.unit]) != n {
				fmt.Fprint(w, " – |")
				continue
			}
			rs := make([]float64, n)
			for i := range rs {
				rs[i] = fe[c.unit][i] / un[c.unit][i]
			}
			fmt.Fprintf(w, " %.2f× (%.2f–%.2f×) |", median(rs), slices.Min(rs), slices.Max(rs))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	if r := s.med(sc, "redsync", 5, "p50-us"); !math.IsNaN(r) {
		fmt.Fprintf(w, "dlock-fenced / redsync (unfenced, 5 nodes), same run: ops/s %s, p50 %s, p99 %s.\n\n",
			ratio(median(fe["ops/s"]), s.med(sc, "redsync", 5, "ops/s")), ratio(median(fe["p50-us"]), r),
			ratio(median(fe["p99-us"]), s.med(sc, "redsync", 5, "p99-us")))
	}
	keys, above, missing := fe["fenced-keys"], fe["keys-counter>1"], fe["keys-counter-missing"]
	if len(keys) == 0 || len(above) != len(keys) || len(missing) != len(keys) {
		return
	}
	var k, a, m float64
	for i := range keys {
		k, a, m = k+keys[i], a+above[i], m+missing[i]
	}
	fmt.Fprintf(w, "**The second (fence) round.** After each run of dlock-fenced the benchmark reads the run's fencing "+
		"counters on all 5 nodes (timed and warm-up keys), then deletes them: a counter has no TTL, so every fresh key "+
		"leaves one on each node that granted it. Every key is fresh, so a grant returns 1; the fence round runs only "+
		"when the granting nodes' counters disagree, which needs a counter of 2 or more, and counters never decrease. "+
		"So the keys with a counter above 1 on some node bound the fence rounds from above, and none means none ran. "+
		"Over the %d runs: %.0f keys; a counter above 1: %.0f (%s); no counter on some node (the acquire never ran "+
		"there, so that node took no part in the token): %.0f (%s).\n\n", len(keys), k, a, pct(a, k), m, pct(m, k))
}

func pct(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f%%", 100*a/b)
}

// failures lists the failed benchmarks and the benchmarks' own log lines,
// each distinct message once with the number of runs it appeared in.
func failures(w io.Writer, notes []string) {
	if len(notes) == 0 {
		return
	}
	count := map[string]int{}
	var order []string
	for _, n := range notes {
		if count[n] == 0 {
			order = append(order, n)
		}
		count[n]++
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "## Failures and benchmark logs")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "A failed sub-benchmark has no numbers in that run; its row above is over the runs that passed.")
	fmt.Fprintln(w)
	for _, n := range order {
		fmt.Fprintf(w, "- %d run(s):\n\n  ```\n  %s\n  ```\n", count[n], strings.ReplaceAll(n, "\n", "\n  "))
	}
}
