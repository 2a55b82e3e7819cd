package sim

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// planPartitions draws the run's partitions, one after another within the
// fault window. They are a pure function of the seed and time, so the
// network consults them without any goroutine driving them.
func (w *world) planPartitions() {
	sc := &w.sc
	if !sc.Partitions {
		return
	}
	t := w.start
	for k := uint64(0); ; k++ {
		from := atSlot(t.Add(between(w.h(tagPartition, k, 0), 200*time.Millisecond, 1500*time.Millisecond)), slotFault)
		if from.Sub(w.start) > sc.FaultWindow {
			return
		}
		to := atSlot(from.Add(between(w.h(tagPartition, k, 1), sc.PartitionMin, sc.PartitionMax)), slotFault)
		p := partition{from: from, to: to, clients: make([]bool, sc.Clients), nodes: make([]bool, sc.Nodes)}
		any := false
		for c := range sc.Clients {
			p.clients[c] = unit(w.h(tagPartition, k, 2, uint64(c))) < 0.5
			any = any || p.clients[c]
		}
		if !any {
			p.clients[pick(w.h(tagPartition, k, 3), sc.Clients)] = true
		}
		for _, n := range w.perm(sc.Nodes, tagPartition, k, 4)[:1+pick(w.h(tagPartition, k, 5), sc.Nodes)] {
			p.nodes[n] = true
		}
		w.partitions = append(w.partitions, p)
		w.fault(faultPartition, to)
		w.logAt(from, "partition: %s cut from %s until %s", set("c", p.clients), set("n", p.nodes), stamp(to.Sub(w.start)))
		w.logAt(to, "partition healed: %s and %s", set("c", p.clients), set("n", p.nodes))
		t = to
	}
}

// perm returns a permutation of [0, n) drawn from the seed and vals.
func (w *world) perm(n int, vals ...uint64) []int {
	p := make([]int, n)
	keys := make([]uint64, n)
	for i := range p {
		p[i] = i
		keys[i] = w.h(append(slices.Clone(vals), 1000+uint64(i))...)
	}
	slices.SortFunc(p, func(a, b int) int {
		switch {
		case keys[a] < keys[b]:
			return -1
		case keys[a] > keys[b]:
			return 1
		}
		return a - b
	})
	return p
}

// set formats the members of a set, such as c{0,2}.
func set(prefix string, in []bool) string {
	var b strings.Builder
	b.WriteString(prefix + "{")
	first := true
	for i, ok := range in {
		if ok {
			if !first {
				b.WriteByte(',')
			}
			first = false
			fmt.Fprint(&b, i)
		}
	}
	b.WriteString("}")
	return b.String()
}

// injectNodeFaults crashes, restarts and jumps nodes as the scenario says,
// in the fault slot, until the fault window closes. Crashes wait for their
// restarts before the next fault event.
func (w *world) injectNodeFaults() {
	sc := &w.sc
	t := w.start
	for k := uint64(0); ; k++ {
		t = atSlot(t.Add(between(w.h(tagFault, k, 0), sc.FaultGapMin, sc.FaultGapMax)), slotFault)
		if t.Sub(w.start) > sc.FaultWindow {
			return
		}
		sleepUntil(t)
		switch {
		case sc.Crash == MinorityCrash:
			size := 1 + pick(w.h(tagFault, k, 1), (sc.Nodes-1)/2)
			if sc.Nodes < 3 {
				return
			}
			type restart struct {
				at time.Time
				n  int
			}
			var rs []restart
			for _, n := range w.perm(sc.Nodes, tagFault, k, 2)[:size] {
				w.logf("%s", w.nodes[n].crash())
				at := atSlot(t.Add(between(w.h(tagFault, k, 3, uint64(n)), sc.RestartDelayMin, sc.RestartDelay)), slotFault)
				w.fault(faultCrash, at)
				rs = append(rs, restart{at, n})
			}
			slices.SortFunc(rs, func(a, b restart) int { return a.at.Compare(b.at)*10 + (a.n - b.n) })
			for _, r := range rs {
				sleepUntil(r.at)
				w.nodes[r.n].restart()
				w.logf("restart n%d", r.n)
			}
			t = time.Now()
		case sc.Crash == HolderRestart:
			n, v, ok := w.holder(t, k)
			if !ok {
				continue
			}
			w.logf("%s, it held v=%s", w.nodes[n].crash(), short(v))
			at := atSlot(t.Add(between(w.h(tagFault, k, 3), sc.RestartDelayMin, sc.RestartDelay)), slotFault)
			w.fault(faultCrash, at)
			sleepUntil(at)
			w.nodes[n].restart()
			w.logf("restart n%d after %v", n, at.Sub(t))
			t = at
		case sc.ClockJump:
			n, v, ok := w.holder(t, k)
			if !ok {
				continue
			}
			d := between(w.h(tagFault, k, 4), sc.JumpMin, sc.JumpMax)
			w.nodes[n].jump(d)
			w.fault(faultJump, t)
			w.logf("clock of n%d jumps forward by %v, it held v=%s", n, d, short(v))
		}
	}
}

// holder picks, from the seed, one up node that holds a live key at t.
func (w *world) holder(t time.Time, k uint64) (int, string, bool) {
	var ns []int
	var vs []string
	for _, nd := range w.nodes {
		if v, ok := nd.holding(t); ok {
			ns = append(ns, nd.id)
			vs = append(vs, v)
		}
	}
	if len(ns) == 0 {
		return 0, "", false
	}
	i := pick(w.h(tagFault, k, 5), len(ns))
	return ns[i], vs[i], true
}
