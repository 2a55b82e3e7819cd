package tcpproxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer starts a TCP server on 127.0.0.1 that writes back what it reads.
// It is stopped, with all its connections, in t.Cleanup.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads it back, failing after timeout.
func roundTrip(t *testing.T, c net.Conn, msg string, timeout time.Duration) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	if got, want := string(buf), msg; got != want {
		t.Fatalf("echo = %q, want %q", got, want)
	}
}

// expectSilence fails when anything arrives on c within d.
func expectSilence(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	n, err := c.Read(buf)
	if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read through a cut link: n=%d err=%v, want a timeout", n, err)
	}
}

func TestProxy_forwards(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, "hello", 5*time.Second)
	roundTrip(t, c, "again", 5*time.Second)
}

func TestProxy_SetDelay(t *testing.T) {
	const up, down = 60 * time.Millisecond, 40 * time.Millisecond
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, "warm", 5*time.Second)

	p.SetDelay(up, down)
	start := time.Now()
	roundTrip(t, c, "ping", 5*time.Second)
	if got, want := time.Since(start), up+down; got < want {
		t.Errorf("round trip took %v, want at least %v", got, want)
	}

	p.SetDelay(0, 0)
	roundTrip(t, c, "fast", 5*time.Second)
}

// Latency, not bandwidth: messages sent one after another overlap in flight
// and keep their order.
func TestProxy_SetDelay_pipelined(t *testing.T) {
	const (
		delay = 100 * time.Millisecond
		n     = 20
	)
	p := newProxy(t, echoServer(t))
	p.SetDelay(delay, delay)
	c := dial(t, p.Addr())
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := fmt.Fprintf(c, "msg %d\n", i); err != nil {
				errc <- err
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		errc <- nil
	}()
	r := bufio.NewReader(c)
	for i := range n {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if got, want := line, fmt.Sprintf("msg %d\n", i); got != want {
			t.Fatalf("line %d = %q, want %q", i, got, want)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if elapsed < 2*delay {
		t.Errorf("took %v, want at least %v", elapsed, 2*delay)
	}
	// Serialized, n round trips would take n*2*delay = 4s; overlapped, about
	// 2*delay + n*5ms = 0.3s. The bound is generous for slow machines.
	if limit := time.Duration(n) * 2 * delay / 2; elapsed > limit {
		t.Errorf("took %v, more than %v: the delay serializes traffic", elapsed, limit)
	}
}

func TestProxy_Cut_Heal(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, "before", 5*time.Second)

	p.Cut()
	p.Cut() // idempotent
	if _, err := io.WriteString(c, "held"); err != nil {
		t.Fatal(err)
	}
	expectSilence(t, c, 200*time.Millisecond)

	// A new connection is accepted but stalls.
	c2 := dial(t, p.Addr())
	if _, err := io.WriteString(c2, "stalled"); err != nil {
		t.Fatal(err)
	}
	expectSilence(t, c2, 200*time.Millisecond)

	p.Heal()
	p.Heal() // idempotent
	// Bytes held during the cut arrive after Heal, in order.
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("held"))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read held bytes after Heal: %v", err)
	}
	if got, want := string(buf), "held"; got != want {
		t.Fatalf("after Heal got %q, want %q", got, want)
	}
	roundTrip(t, c, "after", 5*time.Second)

	if err := c2.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf = make([]byte, len("stalled"))
	if _, err := io.ReadFull(c2, buf); err != nil {
		t.Fatalf("read on stalled connection after Heal: %v", err)
	}
	roundTrip(t, c2, "x", 5*time.Second)
}

func TestProxy_CloseConns(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, "hi", 5*time.Second)

	p.CloseConns()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after CloseConns: n=%d err=%v, want the connection closed", n, err)
	}

	c2 := dial(t, p.Addr())
	roundTrip(t, c2, "new", 5*time.Second)
}

// Closing a connection on one side closes it on the other once the data
// before it went through.
func TestProxy_halfClose(t *testing.T) {
	p := newProxy(t, echoServer(t))
	p.SetDelay(20*time.Millisecond, 20*time.Millisecond)
	c := dial(t, p.Addr())
	if _, err := io.WriteString(c, "last words"); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := "last words"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestProxy_Close(t *testing.T) {
	target := echoServer(t)
	p, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	roundTrip(t, c, "hi", 5*time.Second)
	p.Cut()
	dial(t, p.Addr()) // parked in the cut gate
	p.SetDelay(time.Hour, time.Hour)
	if _, err := io.WriteString(c, "queued"); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("dial after Close succeeded")
	}
	// TestMain's goleak check fails the run if a proxy goroutine is left.
}

func TestProxy_targetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close()

	p := newProxy(t, target)
	c := dial(t, p.Addr())
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read via proxy to a dead target: n=%d err=%v, want the connection closed", n, err)
	}
}

func TestProxy_concurrent(t *testing.T) {
	p := newProxy(t, echoServer(t))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			msg := fmt.Sprintf("client %d", i)
			for range 20 {
				if _, err := io.WriteString(c, msg); err != nil {
					errs <- err
					return
				}
				buf := make([]byte, len(msg))
				if _, err := io.ReadFull(c, buf); err != nil {
					errs <- err
					return
				}
				if string(buf) != msg {
					errs <- fmt.Errorf("got %q, want %q", buf, msg)
					return
				}
			}
		})
	}
	for range 20 {
		p.SetDelay(time.Millisecond, 2*time.Millisecond)
		p.Cut()
		time.Sleep(time.Millisecond)
		p.Heal()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
