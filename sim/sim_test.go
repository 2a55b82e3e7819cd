package sim

import (
	"bufio"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestClasses runs a few seeds of every class and asserts its verdict. A
// fenced twin (pause-fenced, clock-jump-fenced, restart-nodelay-fenced)
// runs the same world as its unfenced class, seed for seed: only what the
// resource does with stale tokens differs, so every count but Stale must
// agree.
func TestClasses(t *testing.T) {
	const seeds = 3
	results := RunMany(t, Jobs(Classes(), 1, seeds), false)
	if t.Failed() {
		return
	}
	var b strings.Builder
	ok := WriteTable(&b, Aggregate(results))
	t.Logf("\n%s", b.String())
	if !ok {
		t.Errorf("some class did not show its expected verdict over seeds 1..%d", seeds)
	}
	by := map[string]*Result{}
	for _, r := range results {
		by[r.Class+"/"+strconv.FormatInt(r.Seed, 10)] = r
	}
	for _, twin := range []string{"pause", "clock-jump", "restart-nodelay"} {
		for seed := range int64(seeds) {
			s := "/" + strconv.FormatInt(seed+1, 10)
			a, f := by[twin+s], by[twin+"-fenced"+s]
			if a == nil || f == nil {
				t.Fatalf("%s seed %d: missing result", twin, seed+1)
			}
			if a.Stale != 0 {
				t.Errorf("%s seed %d: stale = %d in an unfenced class", twin, seed+1, a.Stale)
			}
			got := []int{f.Acquisitions, f.Operations, f.FaultTotal(), f.Violations, f.TokenViolations, f.Inversions, f.LivenessFailures}
			want := []int{a.Acquisitions, a.Operations, a.FaultTotal(), a.Violations, a.TokenViolations, a.Inversions, a.LivenessFailures}
			if !slices.Equal(got, want) {
				t.Errorf("%s-fenced seed %d differs from its twin:\n got %s\nwant %s", twin, seed+1, f.Summary(), a.Summary())
			}
		}
	}
}

// TestDeterminism runs two seeds of every class twice, all in parallel,
// once with GOMAXPROCS 1 and once with 2, and compares every trace hash and
// count: the Go scheduler must not change a run.
func TestDeterminism(t *testing.T) {
	classes := Classes()
	var jobs []Job
	for i := range 2 * len(classes) {
		jobs = append(jobs, Job{classes[i%len(classes)], int64(1000 + i)})
	}
	procs := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(procs)
	first := RunMany(t, jobs, false)
	runtime.GOMAXPROCS(2)
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
	for _, slot := range []int{0, 1, slotClient(0), slotMod - 1} {
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
		{Class: "pause-fenced", Seed: 1, Expect: Unsafe, Fenced: true, Violations: 2},
		{Class: "pause-fenced", Seed: 2, Expect: Unsafe, Fenced: true, Violations: 1, TokenViolations: 1},
		{Class: "clock-jump-fenced", Seed: 1, Expect: Unsafe, Fenced: true, Violations: 2},
		{Class: "restart-nodelay-fenced", Seed: 1, Expect: Unsafe, Tokens: TokensUnsafe, Fenced: true, Violations: 1, Stale: 1},
		{Class: "restart-guarded", Seed: 1, Expect: Safe, Fenced: true},
		{Class: "restart-guarded", Seed: 2, Expect: Safe, Fenced: true, LivenessFailures: 1},
		{Class: "minority-crash", Seed: 1, Expect: Safe, Tokens: TokensAny, TokenViolations: 3},
		{Class: "restart-nodelay", Seed: 1, Expect: Unsafe, Tokens: TokensAny, Violations: 1, LivenessFailures: 1},
	}
	var b strings.Builder
	if WriteTable(&b, Aggregate(results)) {
		t.Fatalf("WriteTable reported a match:\n%s", b.String())
	}
	for _, want := range []string{
		"calm: expected safe, tokens safe, got 1 overlapping hold(s); replay: make sim CLASS=calm SEED=2 TRACE=1",
		"pause: expected UNSAFE, tokens safe, got no overlapping hold; replay: make sim CLASS=pause SEED=1 TRACE=1",
		"pause-fenced: expected UNSAFE, tokens safe, got 1 token violation(s), holds overlapped, but no stale operation refused; replay: make sim CLASS=pause-fenced SEED=2 TRACE=1",
		"clock-jump-fenced: expected UNSAFE, tokens safe, got holds overlapped, but no stale operation refused; replay: make sim CLASS=clock-jump-fenced SEED=1 TRACE=1",
		"restart-nodelay-fenced: expected UNSAFE, tokens UNSAFE, got no token violation; replay: make sim CLASS=restart-nodelay-fenced SEED=1 TRACE=1",
		"restart-guarded: expected safe, tokens safe, got 1 liveness failure(s); replay: make sim CLASS=restart-guarded SEED=2 TRACE=1",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	for _, class := range []string{"minority-crash", "restart-nodelay"} {
		if !strings.Contains(b.String(), "\n"+class+" ") || strings.Contains(b.String(), class+": expected") {
			t.Errorf("%s: want a matching row:\n%s", class, b.String())
		}
	}
}

// TestSlots checks that the slot layout of hash.go gives every kind of
// actor slots of its own: no two slots meet, and all lie in [0, slotMod).
func TestSlots(t *testing.T) {
	owner := map[int]string{}
	claim := func(slot int, who string) {
		t.Helper()
		if slot < 0 || slot >= slotMod {
			t.Errorf("%s: slot %d outside [0, %d)", who, slot, slotMod)
		}
		if prev, ok := owner[slot]; ok {
			t.Errorf("slot %d: %s and %s", slot, prev, who)
		}
		owner[slot] = who
	}
	if numOps > slotsPerReq {
		t.Fatalf("numOps = %d > slotsPerReq = %d", numOps, slotsPerReq)
	}
	for c := range maxClients {
		for o := range numOps {
			claim(slotReq(c, o), "request c"+strconv.Itoa(c)+" "+o.String())
			for n := range maxNodes {
				claim(slotResp(c, n, o), "reply c"+strconv.Itoa(c)+" n"+strconv.Itoa(n)+" "+o.String())
			}
		}
		claim(slotClient(c), "client c"+strconv.Itoa(c))
	}
	claim(slotFault, "fault")
	claim(slotGiveUp, "give-up")
	claim(slotEnd, "end")
}
