package redistest

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a redis-server process of a test's own, listening on a loopback
// port that stays the same across Stop and Start. It keeps nothing on disk
// (no RDB snapshots, no AOF), so a server started again comes back empty,
// as a node restarted without persistence does.
//
// Its methods must be called from the test's goroutine (they may fail the
// test).
type Server struct {
	t    testing.TB
	bin  string
	port int
	args []string
	dir  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited; nil while stopped
	out    *lockedBuffer
}

// startAttempts is how many ports StartServer tries: a port found free may
// be taken by someone else before the server binds it.
const startAttempts = 5

// StartServer starts a redis-server of the test's own on a free loopback
// port, with args appended to its command line (such as "--requirepass",
// "secret" or "--replicaof", "127.0.0.1", "6379"), and waits until it
// answers. The server is stopped, and waited for, when the test ends.
//
// When redis-server is not on PATH, StartServer skips the test, or fails it
// under DLOCK_REQUIRE_REDIS=1.
func StartServer(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("redistest: redis-server not found, but %s=1: %v", EnvRequire, err)
		}
		t.Skipf("redistest: redis-server not found: %v", err)
	}
	s := &Server{t: t, bin: bin, args: args, dir: t.TempDir()}
	t.Cleanup(s.Stop)
	var last string
	for range startAttempts {
		if s.port, err = freePort(); err != nil {
			t.Fatalf("redistest: find a free port: %v", err)
		}
		if last = s.start(); last == "" {
			return s
		}
	}
	t.Fatalf("redistest: redis-server did not come up in %d attempts; the last: %s", startAttempts, last)
	return nil
}

// Addr returns the server's address, 127.0.0.1:PORT.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", s.Port()) }

// Port returns the server's port, as text (for --replicaof).
func (s *Server) Port() string { return strconv.Itoa(s.port) }

// Start starts a stopped server again on the same port, empty, and waits
// until it answers. It fails the test when the server does not come up.
// Starting a running server does nothing.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	running := s.exited != nil
	s.mu.Unlock()
	if running {
		return
	}
	// The port was just released; retry briefly in case something else
	// grabbed it for a moment.
	var last string
	for range startAttempts {
		if last = s.start(); last == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redistest: redis-server did not come back on port %d: %s", s.port, last)
}

// Stop kills the server with SIGKILL, as a crash would, and waits until
// the process has exited. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd, s.exited = nil, nil
	s.mu.Unlock()
	if exited == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Output returns what the running (or last) process wrote, for failure
// messages.
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// start runs the process on s.port and waits until it answers; it returns
// "" on success, else why it failed (the process is then stopped).
func (s *Server) start() string {
	args := append([]string{
		"--port", s.Port(), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", s.dir, "--logfile", "",
	}, s.args...)
	out := &lockedBuffer{}
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return "start: " + err.Error()
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited, s.out = cmd, exited, out
	s.mu.Unlock()

	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case <-exited:
			s.Stop()
			return "exited early:\n" + out.String()
		default:
		}
		if answers(s.Addr()) {
			return ""
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Stop()
	return "no answer to PING within 10s:\n" + out.String()
}

// answers reports whether a Redis server at addr replies to PING with
// anything (a server with a password replies NOAUTH, which counts).
func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return false
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && (strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-"))
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
