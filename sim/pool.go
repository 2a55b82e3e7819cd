package sim

import (
	"slices"
	"time"
)

// pool is client c's pool of connections to node n, as go-redis keeps one
// per client. A call takes the lowest-numbered idle connection, or opens a
// new one when none is idle. A connection carries one call at a time
// (request, then reply), so its messages stay in order in each direction;
// calls on different connections are not ordered, and a later call can
// overtake an earlier one. A call whose reply is lost, or whose context ends
// before its reply, closes its connection: its request still travels and is
// applied at the node, but nothing waits for the reply.
type pool struct {
	idle   []int // idle connections, ascending
	opened int   // connections opened so far; the next one is numbered opened

	// reqs and resps are the arrival instants booked by messages still in
	// flight to the node and back. Two messages of the pool never arrive at
	// the same instant: a message whose instant is booked arrives one slot
	// period (slotMod) later, so that the node (or the client) sees them one
	// after the other in an order the scheduler does not choose.
	reqs, resps []time.Time
}

// A request whose message is lost (dropped, or cut by a partition) is not
// gone: TCP retransmits it, rto after it was sent, then after twice as long,
// and so on, maxRetrans times, even after go-redis closed the connection on
// a read timeout. A copy that gets through is applied at the node, late,
// unless the node crashed since the request was sent (the restarted node
// resets the old connection). The call itself still fails as before.
const (
	rto        = 200 * time.Millisecond // Linux's minimum TCP retransmission timeout
	maxRetrans = 6
)

// take returns the connection for a new call: the lowest-numbered idle one,
// or a new one.
func (p *pool) take() int {
	if len(p.idle) > 0 {
		k := p.idle[0]
		p.idle = p.idle[1:]
		return k
	}
	p.opened++
	return p.opened - 1
}

// put makes connection k idle again, once its reply reached the client.
func (p *pool) put(k int) {
	i, _ := slices.BinarySearch(p.idle, k)
	p.idle = slices.Insert(p.idle, i, k)
}

// book reserves the arrival instant t (or the first free one after it in
// the same slot) in booked, forgetting instants before now, and returns it.
func book(booked *[]time.Time, now, t time.Time) time.Time {
	*booked = slices.DeleteFunc(*booked, func(b time.Time) bool { return b.Before(now) })
	for slices.ContainsFunc(*booked, t.Equal) {
		t = t.Add(slotMod)
	}
	*booked = append(*booked, t)
	return t
}

// exchange is one call on one connection: what the caller and the
// goroutine carrying its messages share, under world.mu.
type exchange struct {
	conn int
	// replyAt is when the call's reply (or, if a message was lost, its
	// errNoReply) reaches the client; zero until the request has arrived.
	replyAt time.Time
	// abandoned is when the caller's context ended before the reply, zero
	// while it waits.
	abandoned time.Time
}
