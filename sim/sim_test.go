package sim

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestClasses runs a few seeds of every class and asserts its verdict.
func TestClasses(t *testing.T) {
	const seeds = 3
	results := RunMany(t, Jobs(Classes(), 1, seeds), false)
	var b strings.Builder
	ok := WriteTable(&b, Aggregate(results))
	t.Logf("\n%s", b.String())
	if !ok {
		t.Errorf("some class did not show its expected verdict over seeds 1..%d", seeds)
	}
}

// TestDeterminism runs 20 seeds twice, all in parallel, and compares every
// trace hash and count: the Go scheduler must not change a run.
func TestDeterminism(t *testing.T) {
	classes := Classes()
	var jobs []Job
	for i := range 20 {
		jobs = append(jobs, Job{classes[i%len(classes)], int64(1000 + i)})
	}
	first := RunMany(t, jobs, false)
	second := RunMany(t, jobs, false)
	if t.Failed() {
		return
	}
	for i := range jobs {
		a, b := first[i], second[i]
		if a == nil || b == nil {
			t.Fatalf("%s seed %d: missing result", jobs[i].Scenario.Name, jobs[i].Seed)
		}
		if got, want := b.Summary(), a.Summary(); got != want {
			t.Errorf("%s seed %d differs between runs:\n got %s\nwant %s\nreplay: %s",
				a.Class, a.Seed, got, want, a.ReplayCommand())
		}
	}
}

// TestSeedsFile replays every seed in testdata/seeds.txt: seeds that once
// found a bug, or that show an unsafe class's violation. Each must now show
// its class's expected verdict on its own.
func TestSeedsFile(t *testing.T) {
	f, err := os.Open("testdata/seeds.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var jobs []Job
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			t.Fatalf("seeds.txt:%d: want \"class seed\", got %q", line, sc.Text())
		}
		class, ok := Lookup(fields[0])
		if !ok {
			t.Fatalf("seeds.txt:%d: unknown class %q", line, fields[0])
		}
		seed, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			t.Fatalf("seeds.txt:%d: %v", line, err)
		}
		jobs = append(jobs, Job{class, seed})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(jobs) == 0 {
		t.Fatal("seeds.txt lists no seed")
	}
	results := RunMany(t, jobs, false)
	if t.Failed() {
		return
	}
	for _, r := range results {
		if r.Offends() {
			t.Errorf("%s\nexpected %s; replay: %s", r.Summary(), r.Expect, r.ReplayCommand())
		}
	}
}

// TestDriftBeyondFactor checks that the checker catches clocks that drift
// more than the DriftFactor allows: nodes 3% fast and clients 3% slow, with
// holders that work until their validity ends.
func TestDriftBeyondFactor(t *testing.T) {
	sc, _ := Lookup("drift")
	sc.Name = "drift-excess"
	sc.HoldToExpiry = 1
	sc.Clients = 3
	var jobs []Job
	for seed := range int64(3) {
		jobs = append(jobs, Job{sc, seed + 1})
	}
	// The world draws rates in [-bound, bound]; force the worst case.
	total := 0
	results := RunMany(t, jobsWithRates(jobs, 0.03, -0.03), false)
	if t.Failed() {
		return
	}
	for _, r := range results {
		total += r.Violations
	}
	if total == 0 {
		t.Errorf("no violation with clocks drifting 6%% apart; the checker cannot see drift")
	}
}

// jobsWithRates returns jobs whose scenarios fix node and client rates.
func jobsWithRates(jobs []Job, node, client float64) []Job {
	out := make([]Job, len(jobs))
	for i, j := range jobs {
		j.Scenario.fixedNodeRate, j.Scenario.fixedClientRate = &node, &client
		out[i] = j
	}
	return out
}

func TestSkew(t *testing.T) {
	epoch := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	s := skew{epoch: epoch, offset: time.Hour, rate: 0.01}
	tt := epoch.Add(10 * time.Second)
	l := s.local(tt)
	if got, want := l.Sub(epoch), time.Hour+10100*time.Millisecond; got != want {
		t.Errorf("local: got %v, want %v", got, want)
	}
	if got := s.trueAt(l); !got.Equal(tt) {
		t.Errorf("trueAt(local(t)): got %v, want %v", got, tt)
	}
	if got, want := s.trueDur(101*time.Millisecond), 100*time.Millisecond; got != want {
		t.Errorf("trueDur: got %v, want %v", got, want)
	}
}

func TestAtSlot(t *testing.T) {
	base := time.Unix(0, 5000)
	for _, slot := range []int{0, 1, 640, 1023} {
		got := atSlot(base, slot)
		if int(got.UnixNano()%slotMod) != slot || got.Before(base) || got.Sub(base) >= slotMod {
			t.Errorf("atSlot(%d, %d) = %d", base.UnixNano(), slot, got.UnixNano())
		}
	}
}

func TestSeededReader(t *testing.T) {
	a, b := newSeededReader(7), newSeededReader(7)
	x, y := make([]byte, 13), make([]byte, 13)
	a.Read(x[:5])
	a.Read(x[5:])
	b.Read(y)
	if string(x) != string(y) {
		t.Errorf("split reads differ from one read: %x vs %x", x, y)
	}
}

func TestWriteTableMismatch(t *testing.T) {
	results := []*Result{
		{Class: "calm", Seed: 1, Expect: Safe},
		{Class: "calm", Seed: 2, Expect: Safe, Violations: 1},
		{Class: "pause", Seed: 1, Expect: Unsafe},
		{Class: "pause", Seed: 2, Expect: Unsafe},
	}
	var b strings.Builder
	if WriteTable(&b, Aggregate(results)) {
		t.Fatalf("WriteTable reported a match:\n%s", b.String())
	}
	for _, want := range []string{"make sim CLASS=calm SEED=2 TRACE=1", "make sim CLASS=pause SEED=1 TRACE=1"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
