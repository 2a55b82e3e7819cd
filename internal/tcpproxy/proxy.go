// Package tcpproxy is a TCP proxy for tests and benchmarks that stands
// between a client and one server and misbehaves on request: it adds latency
// per direction, cuts and heals the link, and drops connections.
//
// Latency is latency, not bandwidth: a chunk read at time t is written on at
// t+delay, so pipelined traffic is not serialized by the delay, and bytes keep
// their order. A cut link is a blackhole: connections stay open, new ones are
// accepted, and nothing passes until Heal; bytes sent meanwhile are held (as
// TCP would retransmit them) and delivered after Heal.
//
// The proxy uses real time and real sockets; keep it out of synctest bubbles.
package tcpproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

const (
	readBuf   = 32 << 10 // bytes read at once
	queueSize = 1024     // chunks in flight per direction before reads stop
)

// Proxy forwards connections accepted on Addr to a target address.
// Its methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	up     time.Duration // client -> target
	down   time.Duration // target -> client
	cutCh  chan struct{} // non-nil while cut; closed by Heal
	conns  map[*conn]struct{}
	closed bool
}

// New starts a proxy to target (host:port) listening on 127.0.0.1 with a
// port chosen by the kernel. It returns the listener's error, if any.
// The caller must Close the proxy.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target: target,
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[*conn]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address clients dial instead of the target (127.0.0.1:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetDelay sets the latency added to data going up (client to target) and
// down (target to client). It applies to chunks read from then on, on current
// and new connections; negative values count as 0.
func (p *Proxy) SetDelay(up, down time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up, p.down = max(up, 0), max(down, 0)
}

// Cut stops all forwarding until Heal: connections stay open, new ones are
// accepted but not connected on to the target, and no byte passes either way.
// Cutting a cut proxy does nothing.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cutCh == nil {
		p.cutCh = make(chan struct{})
	}
}

// Heal undoes Cut: held bytes and stalled connections go on.
// Healing a proxy that is not cut does nothing.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cutCh != nil {
		close(p.cutCh)
		p.cutCh = nil
	}
}

// CloseConns closes every current connection on both sides (clients see
// their connection closed). New connections are accepted as before.
func (p *Proxy) CloseConns() {
	p.mu.Lock()
	cs := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	for _, c := range cs {
		c.close()
	}
}

// Close stops the listener, closes every connection and waits until all of
// the proxy's goroutines have returned. It returns the listener's close
// error, if any; closing twice returns nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	p.CloseConns()
	p.wg.Wait()
	return err
}

// gate blocks while the proxy is cut. It returns false when stop closes
// first (stop closes when the connection or the proxy is closed).
func (p *Proxy) gate(stop <-chan struct{}) bool {
	for {
		p.mu.Lock()
		ch := p.cutCh
		p.mu.Unlock()
		if ch == nil {
			return true
		}
		select {
		case <-ch:
		case <-stop:
			return false
		}
	}
}

func (p *Proxy) delay(up bool) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if up {
		return p.up
	}
	return p.down
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // listener closed
		}
		ctx, cancel := context.WithCancel(p.ctx)
		c := &conn{p: p, client: nc, ctx: ctx, cancel: cancel, stop: ctx.Done()}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			nc.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go c.run()
	}
}

// conn is one proxied connection.
type conn struct {
	p      *Proxy
	client net.Conn
	ctx    context.Context // cancelled by close or by the proxy's Close
	cancel context.CancelFunc
	stop   <-chan struct{} // ctx.Done()

	mu     sync.Mutex
	server net.Conn // nil until dialed
	closed bool
	once   sync.Once
}

func (c *conn) close() {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		srv := c.server
		c.mu.Unlock()
		c.cancel()
		c.client.Close()
		if srv != nil {
			srv.Close()
		}
	})
}

func (c *conn) run() {
	defer c.p.wg.Done()
	defer func() {
		c.close()
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
	}()

	// A cut link stalls the connection to the target too.
	if !c.p.gate(c.stop) {
		return
	}
	var d net.Dialer
	srv, err := d.DialContext(c.ctx, "tcp", c.p.target)
	if err != nil {
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		srv.Close()
		return
	}
	c.server = srv
	c.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.pipe(c.client, srv, true) }()
	go func() { defer wg.Done(); c.pipe(srv, c.client, false) }()
	wg.Wait()
}

// chunk is data read at one instant, due to be written at due. A nil data
// with eof set marks the end of the stream.
type chunk struct {
	data []byte
	due  time.Time
	eof  bool
}

// pipe copies src to dst, holding each chunk for the direction's delay and
// while the proxy is cut. It returns once both its goroutines are done.
func (c *conn) pipe(src, dst net.Conn, up bool) {
	q := make(chan chunk, queueSize)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // reader
		defer wg.Done()
		buf := make([]byte, readBuf)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				ch := chunk{data: append([]byte(nil), buf[:n]...), due: time.Now().Add(c.p.delay(up))}
				select {
				case q <- ch:
				case <-c.stop:
					return
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					// Reset or closed: nothing more will pass either way.
					c.close()
					return
				}
				select {
				case q <- chunk{eof: true, due: time.Now().Add(c.p.delay(up))}:
				case <-c.stop:
				}
				return
			}
		}
	}()

	c.write(q, dst)
	wg.Wait()
}

// write sends queued chunks to dst in order, each no earlier than its due
// time and only while the link is not cut.
func (c *conn) write(q <-chan chunk, dst net.Conn) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var ch chunk
		select {
		case ch = <-q:
		case <-c.stop:
			return
		}
		if wait := time.Until(ch.due); wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-timer.C:
			case <-c.stop:
				return
			}
		}
		if !c.p.gate(c.stop) {
			return
		}
		if ch.eof {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				if cw.CloseWrite() == nil {
					return
				}
			}
			c.close()
			return
		}
		if _, err := dst.Write(ch.data); err != nil {
			c.close()
			return
		}
	}
}
