package sim

import (
	"encoding/binary"
	"time"
)

// Every random choice in a run is a pure function of the seed and of what the
// choice is about (which client, node, operation, instant), computed with
// hashOf. Nothing draws from a shared generator, so the order in which the Go
// scheduler runs goroutines cannot change a choice.

// Domain tags keep the hashes of different kinds of choice independent.
const (
	tagReqLatency uint64 = iota + 1
	tagRespLatency
	tagReqDrop
	tagRespDrop
	tagThink
	tagOps
	tagToExpiry
	tagGap
	tagPause
	tagPauseLen
	tagRand
	tagClientClock
	tagNodeClock
	tagFault
	tagPartition
	tagPersist
	tagTail
	tagRetrans
)

// mix64 is the splitmix64 finaliser: a bijective, well-mixing step.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// hashOf folds vals into one 64-bit hash.
func hashOf(vals ...uint64) uint64 {
	h := uint64(0x243f6a8885a308d3)
	for _, v := range vals {
		h = mix64(h ^ v)
	}
	return h
}

// strHash is FNV-1a of s.
func strHash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// unit maps h to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// between maps h to a duration in [lo, hi).
func between(h uint64, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(unit(h)*float64(hi-lo))
}

// pick maps h to an integer in [0, n).
func pick(h uint64, n int) int { return int(h % uint64(n)) }

// seededReader is a deterministic byte stream (splitmix64 in counter mode),
// one per simulated client, given to dlock.WithRand for lock values and
// retry jitter.
type seededReader struct {
	state uint64
	buf   [8]byte
	left  int
}

func newSeededReader(seed uint64) *seededReader { return &seededReader{state: seed} }

// Read fills p and never fails.
func (r *seededReader) Read(p []byte) (int, error) {
	for i := range p {
		if r.left == 0 {
			r.state += 0x9e3779b97f4a7c15
			binary.LittleEndian.PutUint64(r.buf[:], mix64(r.state))
			r.left = 8
		}
		p[i] = r.buf[8-r.left]
		r.left--
	}
	return len(p), nil
}

// Instants are split into slots (the nanoseconds modulo slotMod), one slot
// per kind of actor: a request of client c with operation o reaches a node
// only in slot slotReq(c, o), its reply reaches the client only in slot
// slotResp(c, n, o), client c acts only in slotClient(c), the fault
// injector only in slotFault. Two different actors therefore never wake at
// the same instant, and the order of goroutines woken together (which the
// Go scheduler chooses) cannot change the outcome of a run. The layout:
// requests in [0, 128), replies in [128, 1024), clients in [1024, 1040),
// then the fault injector, give-ups and the end of the run (TestSlots
// checks that no two slots meet).
const (
	slotMod     = 2048
	maxClients  = 16
	maxNodes    = 8
	slotsPerReq = 8 // ≥ numOps
	slotRespLo  = maxClients * slotsPerReq
	slotClient0 = slotRespLo + maxClients*maxNodes*int(numOps)
	slotFault   = slotClient0 + maxClients
	slotGiveUp  = slotFault + 1
	slotEnd     = slotFault + 2
)

func slotReq(c int, o op) int { return c*slotsPerReq + int(o) }

func slotResp(c, n int, o op) int { return slotRespLo + (c*maxNodes+n)*int(numOps) + int(o) }

func slotClient(c int) int { return slotClient0 + c }

// atSlot returns the first instant at or after t that lies in slot.
func atSlot(t time.Time, slot int) time.Time {
	r := int(t.UnixNano() % slotMod)
	if r < 0 {
		r += slotMod
	}
	return t.Add(time.Duration((slot - r + slotMod) % slotMod))
}

// sleepUntil sleeps until t, which inside a synctest bubble is exact.
func sleepUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		time.Sleep(d)
	}
}
