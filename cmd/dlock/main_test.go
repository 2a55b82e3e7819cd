//go:build unix

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The tests build the dlock binary once and run it as a user would. The
// test binary doubles as a child command: with DLOCK_TEST_CHILD set it runs
// one of the child modes below instead of the tests.

var dlockBin string // path of the dlock binary under test

func TestMain(m *testing.M) {
	if mode := os.Getenv("DLOCK_TEST_CHILD"); mode != "" {
		os.Exit(childMain(mode))
	}
	dir, err := os.MkdirTemp("", "dlock-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "dlock tests: temp dir:", err)
		os.Exit(2)
	}
	dlockBin = filepath.Join(dir, "dlock")
	args := []string{"build", "-o", dlockBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "dlock tests: go build:", err)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// childMain runs the test binary as a child of dlock.
//
//	spans: appends "start NAME T" to $SPAN_FILE, sleeps $SPAN_SLEEP, appends
//	       "end NAME T" (T in Unix nanoseconds).
//	hold:  appends "ready PID", "env KEY VALUE TOKEN" to $EVENTS; then on
//	       SIGINT/SIGTERM/SIGHUP appends "sig NAME T" and, unless
//	       $IGNORE_SIGNALS=1, sleeps $SIG_DELAY, appends "exit T" and exits
//	       $SIG_EXIT. Exits 0 when $DONE_FILE appears.
//
// Every mode ends itself after a minute, so that no test leaves it behind.
func childMain(mode string) int {
	go func() {
		time.Sleep(time.Minute)
		os.Exit(99)
	}()
	switch mode {
	case "spans":
		name, file := os.Getenv("SPAN_NAME"), os.Getenv("SPAN_FILE")
		d, _ := time.ParseDuration(os.Getenv("SPAN_SLEEP"))
		appendLine(file, "start %s %d", name, time.Now().UnixNano())
		time.Sleep(d)
		appendLine(file, "end %s %d", name, time.Now().UnixNano())
		return 0
	case "hold":
		events := os.Getenv("EVENTS")
		sigs := make(chan os.Signal, 4)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		tok, ok := os.LookupEnv("DLOCK_TOKEN")
		if !ok {
			tok = "unset"
		}
		appendLine(events, "ready %d", os.Getpid())
		appendLine(events, "env %s %s %s", os.Getenv("DLOCK_KEY"), os.Getenv("DLOCK_VALUE"), tok)
		delay, _ := time.ParseDuration(os.Getenv("SIG_DELAY"))
		code, _ := strconv.Atoi(os.Getenv("SIG_EXIT"))
		tick := time.NewTicker(10 * time.Millisecond)
		for {
			select {
			case s := <-sigs:
				appendLine(events, "sig %s %d", sigName(s), time.Now().UnixNano())
				if os.Getenv("IGNORE_SIGNALS") == "1" {
					continue
				}
				time.Sleep(delay)
				appendLine(events, "exit %d", time.Now().UnixNano())
				return code
			case <-tick.C:
				if _, err := os.Stat(os.Getenv("DONE_FILE")); err == nil {
					return 0
				}
			}
		}
	}
	fmt.Fprintln(os.Stderr, "unknown DLOCK_TEST_CHILD mode", mode)
	return 98
}

func appendLine(file, format string, args ...any) {
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(97)
	}
	fmt.Fprintf(f, format+"\n", args...)
	f.Close()
}

// readLines returns the lines of file, nil when it does not exist.
func readLines(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// event returns the fields of the first line of file that starts with
// name, or nil.
func event(t *testing.T, file, name string) []string {
	t.Helper()
	for _, l := range readLines(t, file) {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return f
		}
	}
	return nil
}

// waitEvent waits up to d for an event in file.
func waitEvent(t *testing.T, file, name string, d time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if f := event(t, file, name); f != nil {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q event in %s after %v; lines: %q", name, file, d, readLines(t, file))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func nanos(t *testing.T, s string) time.Time {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("bad time %q: %v", s, err)
	}
	return time.Unix(0, n)
}

// proc is a running dlock.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *bytes.Buffer
	start          time.Time
	done           chan struct{}
	end            time.Time // when Wait returned
}

// startDlock starts dlock with args and the extra environment entries.
// Cleanup stops it (SIGTERM, then SIGKILL) if the test did not wait for it.
func startDlock(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{stdout: new(bytes.Buffer), stderr: new(bytes.Buffer), done: make(chan struct{})}
	p.cmd = exec.Command(dlockBin, args...)
	// A -race binary sleeps a second at exit unless told not to; dlock and
	// the test binary as its child are built with -race under go test -race.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	p.cmd.Env = append(os.Environ(), append([]string{"GORACE=" + gorace}, env...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start dlock: %v", err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.end = time.Now()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits up to d for dlock to exit and returns its exit code.
func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("dlock still running after %v; stderr:\n%s", d, p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// runDlock runs dlock to the end (at most 20s) and returns its exit code,
// stdout and stderr.
func runDlock(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := startDlock(t, env, args...)
	code = p.wait(t, 20*time.Second)
	return code, p.stdout.String(), p.stderr.String()
}

// childCmd returns the path of the test binary, which runs a child mode
// when DLOCK_TEST_CHILD is set.
func childCmd(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// uniqueKey returns a key no other test uses.
func uniqueKey(t *testing.T) string {
	return fmt.Sprintf("dlock-cli-test/%s/%d", t.Name(), time.Now().UnixNano())
}

// redisAddrs returns the addresses of the shared redis nodes from
// DLOCK_REDIS_ADDRS. It skips the test when there are none, or fails it
// when DLOCK_REQUIRE_REDIS=1.
func redisAddrs(t *testing.T) []string {
	t.Helper()
	var addrs []string
	for a := range strings.SplitSeq(os.Getenv("DLOCK_REDIS_ADDRS"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		if os.Getenv("DLOCK_REQUIRE_REDIS") == "1" {
			t.Fatal("DLOCK_REDIS_ADDRS is empty but DLOCK_REQUIRE_REDIS=1: start nodes with scripts/redis-nodes.sh (make test does)")
		}
		t.Skip("DLOCK_REDIS_ADDRS is empty; set it to comma-separated host:port of redis-server nodes")
	}
	return addrs
}

// nodesEnv returns the DLOCK_NODES entry for addrs.
func nodesEnv(addrs []string) string {
	urls := make([]string, len(addrs))
	for i, a := range addrs {
		urls[i] = "redis://" + a
	}
	return "DLOCK_NODES=" + strings.Join(urls, ",")
}

// valuesOn returns what key holds on each node ("" when not set).
func valuesOn(t *testing.T, addrs []string, key string) []string {
	t.Helper()
	vals := make([]string, len(addrs))
	for i, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a, MaxRetries: -1})
		v, err := c.Get(t.Context(), key).Result()
		c.Close()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("GET %q on %s: %v", key, a, err)
		}
		vals[i] = v
	}
	return vals
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// redisServer is a redis-server process this test owns and may kill.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// kill stops the server at once (SIGKILL) and waits for it.
func (s *redisServer) kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// startRedis starts n redis-server processes of the test's own, stopped in
// Cleanup. It skips (or fails, with DLOCK_REQUIRE_REDIS=1) without
// redis-server on PATH.
func startRedis(t *testing.T, n int) []*redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("DLOCK_REQUIRE_REDIS") == "1" {
			t.Fatal("redis-server not on PATH but DLOCK_REQUIRE_REDIS=1")
		}
		t.Skip("redis-server not on PATH")
	}
	var servers []*redisServer
	for range n {
		var s *redisServer
		for attempt := 0; s == nil; attempt++ {
			if attempt == 10 {
				t.Fatal("could not start redis-server after 10 attempts")
			}
			s = tryRedis(t, bin, freePort(t))
		}
		servers = append(servers, s)
	}
	return servers
}

func tryRedis(t *testing.T, bin string, port int) *redisServer {
	t.Helper()
	s := &redisServer{addr: fmt.Sprintf("127.0.0.1:%d", port), done: make(chan struct{})}
	s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", t.TempDir())
	var out bytes.Buffer
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(s.kill)
	c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
	defer c.Close()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		select {
		case <-s.done: // port taken, most likely
			return nil
		default:
		}
		if c.Ping(t.Context()).Err() == nil {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.kill()
	t.Logf("redis-server on %s did not answer; output:\n%s", s.addr, out.String())
	return nil
}

func addrsOf(servers []*redisServer) []string {
	a := make([]string, len(servers))
	for i, s := range servers {
		a[i] = s.addr
	}
	return a
}

// processGone reports whether pid no longer exists.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
