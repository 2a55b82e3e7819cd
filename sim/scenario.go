package sim

import (
	"fmt"
	"time"
)

// Expect is what a scenario class must show over its seeds.
type Expect int

const (
	// Safe classes must show no mutual-exclusion violation and no liveness
	// failure.
	Safe Expect = iota
	// Unsafe classes must show at least one violation over the default
	// seeds: they run configurations outside Redlock's assumptions, and
	// prove that the checker catches what goes wrong there.
	Unsafe
)

// String returns "safe" or "UNSAFE".
func (e Expect) String() string {
	if e == Unsafe {
		return "UNSAFE"
	}
	return "safe"
}

// TokenExpect is what a scenario class must show of its fencing tokens.
// Every class takes tokens (dlock.WithFencing), so token order is checked
// in every class; see Result.TokenViolations for what breaks it.
type TokenExpect int

const (
	// TokensSafe classes must show no token violation: the contract of
	// dlock.WithFencing covers them (no node loses its counters, or the
	// restart guard is on).
	TokensSafe TokenExpect = iota
	// TokensUnsafe classes must show at least one token violation: nodes
	// lose their counters without the restart guard, outside the contract,
	// and the class proves that the checker sees tokens go backwards.
	TokensUnsafe
	// TokensAny classes are outside the contract too (a node loses its
	// counters, no guard), but need not show a violation: their token
	// violations are reported for information.
	TokensAny
)

// String returns "safe", "UNSAFE" or "any".
func (e TokenExpect) String() string {
	switch e {
	case TokensUnsafe:
		return "UNSAFE"
	case TokensAny:
		return "any"
	}
	return "safe"
}

// CrashMode says how nodes crash in a scenario.
type CrashMode int

const (
	// NoCrash: nodes never crash.
	NoCrash CrashMode = iota
	// MinorityCrash: from time to time a random minority of nodes crashes
	// together and each restarts after RestartDelay.
	MinorityCrash
	// HolderRestart: from time to time a node that holds a live key
	// crashes (losing its memory unless persistent) and restarts after
	// RestartDelay; with a delay of at least the TTL only one node is down
	// at a time.
	HolderRestart
)

// Scenario is one class of simulated runs: the world's shape, its faults,
// and what the checker must find. Every random quantity is drawn per seed.
type Scenario struct {
	Name   string
	Expect Expect      // overlapping holds
	Tokens TokenExpect // token order
	About  string      // one line: what happens

	// Fenced makes the resource refuse an operation whose token is smaller
	// than the largest it accepted; otherwise it accepts every operation
	// (and still records its token). A fenced class's verdict is its
	// tokens': its holds may overlap (Expect), but the resource's accepted
	// history must stay serial.
	Fenced bool
	// Guard is every client's dlock.WithRestartGuard (0: off).
	Guard time.Duration

	Nodes, Clients int

	// Lock settings of every client.
	TTL           time.Duration
	NodeTimeout   time.Duration
	RetryInterval time.Duration

	// Client behaviour: think before each Lock, then a few resource
	// operations separated by OpGap; with probability HoldToExpiry the
	// holder keeps operating until its validity check fails.
	ThinkMin, ThinkMax time.Duration
	OpGapMin, OpGapMax time.Duration
	OpsMax             int
	HoldToExpiry       float64

	// Network: one-way latency is uniform in [LatencyMin, LatencyMax); with
	// probability TailProb (in the fault window) it is instead Pareto with
	// scale TailMin and shape 0.8, capped at TailMax.
	// DropProb is the chance that one message (request or reply) is lost:
	// its call fails; a lost request is retransmitted (see doc.go).
	LatencyMin, LatencyMax time.Duration
	TailProb               float64
	TailMin, TailMax       time.Duration
	DropProb               float64

	// Partitions cut a random set of clients from a random set of nodes,
	// one partition at a time, each for PartitionMin..PartitionMax.
	Partitions                 bool
	PartitionMin, PartitionMax time.Duration

	// Crashes.
	Crash                         CrashMode
	RestartDelayMin, RestartDelay time.Duration // restart after [min, max)
	PersistProb                   float64       // chance that a node keeps its data across a crash
	FaultGapMin, FaultGapMax      time.Duration // between crash or jump events

	// ClockJump makes a node that holds a live key jump forward by
	// JumpMin..JumpMax, every FaultGapMin..FaultGapMax.
	ClockJump        bool
	JumpMin, JumpMax time.Duration

	// PauseProb is the chance that a holder stops for PauseMin..PauseMax
	// between its validity check and its resource operation.
	PauseProb          float64
	PauseMin, PauseMax time.Duration

	// NodeRate and ClientRate bound the clock rate error (|rate| ≤ bound);
	// NodeOffset and ClientOffset bound the clocks' offsets.
	NodeRate, ClientRate     float64
	NodeOffset, ClientOffset time.Duration

	// fixedNodeRate and fixedClientRate, when set (by tests), give every
	// node or client exactly that rate.
	fixedNodeRate, fixedClientRate *float64

	// Faults start only within FaultWindow; the last one heals by
	// FaultWindow+FaultTail. After the last fault heals every client must
	// acquire the lock within Liveness; the run ends FaultWindow+FaultTail+
	// Liveness after it started.
	FaultWindow, FaultTail, Liveness time.Duration
}

// Duration is the simulated length of one run of s.
func (s *Scenario) Duration() time.Duration { return s.FaultWindow + s.FaultTail + s.Liveness }

func (s *Scenario) validate() error {
	switch {
	case s.Nodes < 1 || s.Nodes > maxNodes:
		return fmt.Errorf("sim: %s: Nodes = %d: must be in [1, %d]", s.Name, s.Nodes, maxNodes)
	case s.Clients < 1 || s.Clients > maxClients:
		return fmt.Errorf("sim: %s: Clients = %d: must be in [1, %d]", s.Name, s.Clients, maxClients)
	case s.TTL <= 0 || s.NodeTimeout <= 0:
		return fmt.Errorf("sim: %s: TTL and NodeTimeout must be > 0", s.Name)
	}
	return nil
}

// base is the calm world every class starts from: 5 nodes, 5 clients, a
// 2s TTL, 50ms node timeout, millisecond latency.
func base(name string, expect Expect, about string) Scenario {
	return Scenario{
		Name: name, Expect: expect, About: about,
		Nodes: 5, Clients: 5,
		TTL: 2 * time.Second, NodeTimeout: 50 * time.Millisecond, RetryInterval: 100 * time.Millisecond,
		ThinkMin: 100 * time.Millisecond, ThinkMax: 1500 * time.Millisecond,
		OpGapMin: 20 * time.Millisecond, OpGapMax: 250 * time.Millisecond,
		OpsMax: 4, HoldToExpiry: 0.15,
		LatencyMin: 200 * time.Microsecond, LatencyMax: 2 * time.Millisecond,
		FaultWindow: 20 * time.Second, FaultTail: 4 * time.Second, Liveness: 16 * time.Second,
	}
}

// Classes returns the scenario classes, in the order of the report.
func Classes() []Scenario {
	calm := base("calm", Safe, "no faults")

	latency := base("latency", Safe, "heavy-tailed latency beyond the node timeout, 2% of messages dropped")
	latency.TailProb, latency.TailMin, latency.TailMax, latency.DropProb = 0.1, 5*time.Millisecond, 400*time.Millisecond, 0.02

	partition := base("partition", Safe, "client sets cut from node sets, then healed")
	partition.Partitions, partition.PartitionMin, partition.PartitionMax = true, 300*time.Millisecond, 3*time.Second

	minority := base("minority-crash", Safe, "a minority crashes, restarts after >= TTL (some nodes persist)")
	minority.Crash, minority.PersistProb = MinorityCrash, 0.3
	minority.RestartDelayMin, minority.RestartDelay = minority.TTL, minority.TTL+time.Second
	minority.FaultGapMin, minority.FaultGapMax = 500*time.Millisecond, 2*time.Second

	nodelay := base("restart-nodelay", Unsafe, "a node holding a key restarts at once, empty")
	nodelay.Crash = HolderRestart
	nodelay.RestartDelayMin, nodelay.RestartDelay = 100*time.Microsecond, 2*time.Millisecond
	nodelay.FaultGapMin, nodelay.FaultGapMax = 200*time.Millisecond, time.Second

	delayed := nodelay
	delayed.Name, delayed.Expect, delayed.About = "restart-delayed", Safe, "the same, restart delayed >= TTL"
	delayed.RestartDelayMin, delayed.RestartDelay = delayed.TTL, delayed.TTL+500*time.Millisecond

	jump := base("clock-jump", Unsafe, "a node holding a key jumps its clock forward by more than the TTL")
	jump.ClockJump, jump.JumpMin, jump.JumpMax = true, jump.TTL+time.Millisecond, 2*jump.TTL
	jump.FaultGapMin, jump.FaultGapMax = 200*time.Millisecond, time.Second

	pause := base("pause", Unsafe, "a holder pauses past its validity between check and operation")
	pause.PauseProb, pause.PauseMin, pause.PauseMax = 0.1, pause.TTL+100*time.Millisecond, pause.TTL+900*time.Millisecond

	drift := base("drift", Safe, "node and client clocks drift within the DriftFactor (±0.4% each), offsets ±1h")
	drift.NodeRate, drift.ClientRate = 0.004, 0.004
	drift.NodeOffset, drift.ClientOffset = time.Hour, time.Hour
	drift.HoldToExpiry = 0.5

	// Nodes that lose their counters without the restart guard are outside
	// the token contract.
	minority.Tokens, nodelay.Tokens, delayed.Tokens = TokensAny, TokensAny, TokensAny

	// The fenced twins: the same worlds, their resource refusing stale
	// tokens.
	pauseFenced := pause
	pauseFenced.Name, pauseFenced.Fenced = "pause-fenced", true
	pauseFenced.About = "pause, the resource refusing stale tokens"

	jumpFenced := jump
	jumpFenced.Name, jumpFenced.Fenced = "clock-jump-fenced", true
	jumpFenced.About = "clock-jump, the resource refusing stale tokens"

	nodelayFenced := nodelay
	nodelayFenced.Name, nodelayFenced.Fenced = "restart-nodelay-fenced", true
	nodelayFenced.About = "restart-nodelay, the resource refusing stale tokens, no restart guard"
	// Without the guard a restarted node writes no marker and its counters
	// start again at 0: tokens go backwards (outside the contract), and
	// this class proves that the checker sees it.
	nodelayFenced.Tokens = TokensUnsafe

	guarded := nodelay
	guarded.Name, guarded.Expect, guarded.Tokens, guarded.Fenced = "restart-guarded", Safe, TokensSafe, true
	guarded.Guard = guarded.TTL + time.Second
	guarded.About = "restart-nodelay with WithRestartGuard(TTL+1s), the resource refusing stale tokens"

	return []Scenario{calm, latency, partition, minority, nodelay, delayed, jump, pause, drift,
		pauseFenced, jumpFenced, nodelayFenced, guarded}
}

// Lookup returns the class named name.
func Lookup(name string) (Scenario, bool) {
	for _, s := range Classes() {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}
