//go:build unix

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/charconstpointer/dlock"
)

const runHelp = `dlock run acquires a distributed lock on KEY, runs COMMAND while it holds
the lock, and releases the lock when COMMAND exits.

usage: dlock run [flags] KEY -- COMMAND [ARGS...]

COMMAND gets DLOCK_KEY, DLOCK_VALUE (the value stored on the nodes) and, with
--fencing, DLOCK_TOKEN in its environment, and runs in a process group of its
own. The lock is refreshed every ttl/3 while COMMAND runs. When the lock is
lost, COMMAND's process group gets SIGTERM, then SIGKILL after --grace.
SIGINT, SIGTERM and SIGHUP sent to dlock are forwarded to COMMAND's process
group; dlock releases the lock once COMMAND has exited. stdout belongs to
COMMAND; dlock writes its messages to stderr. COMMAND is not in the
terminal's foreground: it must not read from the terminal (it would stop).

Exit codes:
  COMMAND's own  COMMAND ran to the end; 128+N when it was killed by signal N
  64             bad usage or invalid settings; COMMAND was not started
  75             the lock was not acquired within --wait; COMMAND was not started
  76             the lock was lost while COMMAND ran; COMMAND was stopped
  126, 127       COMMAND could not be started (127: not found)
  128+N          dlock got signal N while waiting for the lock; COMMAND was not started
`

// runner is one `dlock run`.
type runner struct {
	fs      *flag.FlagSet
	stderr  io.Writer
	log     *slog.Logger
	nodes   []node
	prefix  string
	key     string
	argv    []string
	ttl     time.Duration
	wait    waitFlag
	grace   time.Duration
	fencing bool

	inflight atomic.Int64 // node calls in flight (track)
}

// cmdRun implements `dlock run` and returns its exit code.
func cmdRun(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run")
	var c common
	c.register(fs)
	r := runner{fs: fs, stderr: stderr}
	fs.DurationVar(&r.ttl, "ttl", dlock.DefaultTTL,
		"the lock's time to live on the nodes; refreshed every ttl/3 while COMMAND runs, so a lost lock is noticed within ttl")
	fs.Var(&r.wait, "wait", "how long to wait for the lock: a `duration`, 0 for a single attempt, or \"forever\"")
	fs.DurationVar(&r.grace, "grace", 5*time.Second, "how long COMMAND has between SIGTERM and SIGKILL when the lock is lost")
	fs.BoolVar(&r.fencing, "fencing", false,
		"take a fencing token and pass it to COMMAND as DLOCK_TOKEN (every node must support fencing)")
	if code, done := parseFlags(fs, args, runHelp, stdout, stderr); done {
		return code
	}
	rest := fs.Args()
	switch {
	case len(rest) == 0:
		return usageError(fs, stderr, "missing KEY")
	case rest[0] == "":
		return usageError(fs, stderr, "KEY must not be empty")
	case len(rest) == 1:
		return usageError(fs, stderr, "missing \"--\" and COMMAND after KEY %q", rest[0])
	case rest[1] != "--":
		return usageError(fs, stderr, "expected \"--\" after KEY %q, got %q (flags go before KEY)", rest[0], rest[1])
	case len(rest) == 2:
		return usageError(fs, stderr, "missing COMMAND after \"--\"")
	case r.ttl <= 0:
		return usageError(fs, stderr, "--ttl %v: must be > 0", r.ttl)
	case r.grace < 0:
		return usageError(fs, stderr, "--grace %v: must be ≥ 0", r.grace)
	}
	r.key, r.argv, r.prefix = rest[0], rest[2:], c.prefix
	list, err := c.nodeList(getenv)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	r.log = newLogger(stderr, c.logLevel)
	r.nodes, err = openNodes(context.Background(), list)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer closeNodes(r.nodes)
	return r.run()
}

// newLogger returns the logger of dlock's own messages, and routes
// go-redis's log lines to it at debug level.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	setRedisLogger(log)
	return log
}

// libLogger returns the logger for the dlock library: its attempts are
// logged at debug level, and its loss warnings repeat what dlock says, so it
// speaks only when --log-level is debug.
func libLogger(log *slog.Logger) *slog.Logger {
	if log.Enabled(context.Background(), slog.LevelDebug) {
		return log
	}
	return slog.New(slog.DiscardHandler)
}

// errInterrupted is the cause of an acquire cut short by a signal.
type errInterrupted struct{ sig os.Signal }

func (e *errInterrupted) Error() string { return "interrupted by " + sigName(e.sig) }

var errWaitOver = errors.New("--wait is over")

func (r *runner) run() int {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	nodes := make([]dlock.Node, len(r.nodes))
	for i, n := range r.nodes {
		nodes[i] = track(n.Node, &r.inflight)
	}
	rl, err := dlock.New(nodes, dlock.WithLogger(libLogger(r.log)), dlock.WithKeyPrefix(r.prefix))
	if err != nil {
		if errors.Is(err, dlock.ErrInvalidConfig) {
			return usageError(r.fs, r.stderr, "%v", err)
		}
		r.log.Error("cannot set up the lock", "err", err)
		return exitSoftware
	}
	lock, code := r.acquire(rl, sigs)
	if lock == nil {
		return code
	}
	return r.runChild(lock, sigs)
}

// acquire takes the lock as --wait says. It returns the lock, or nil and
// the exit code.
func (r *runner) acquire(rl *dlock.Redlock, sigs <-chan os.Signal) (*dlock.Lock, int) {
	opts := []dlock.LockOpt{dlock.WithTTL(r.ttl), dlock.WithRefreshInterval(r.ttl / 3)}
	if r.fencing {
		opts = append(opts, dlock.WithFencing())
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	if r.wait.set && r.wait.d > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeoutCause(ctx, r.wait.d, errWaitOver)
		defer stop()
	}

	// A signal while waiting ends the wait.
	var got os.Signal
	stop, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case s := <-sigs:
			got = s
			cancel(&errInterrupted{s})
		case <-stop:
		}
	}()

	start := time.Now()
	r.log.Info("acquiring the lock", "key", r.key, "nodes", len(r.nodes), "quorum", rl.Quorum(),
		"ttl", r.ttl, "wait", r.wait.String())
	var lock *dlock.Lock
	var err error
	if r.wait.set && r.wait.d == 0 {
		lock, err = rl.TryLock(ctx, r.key, "", opts...)
	} else {
		lock, err = rl.LockContext(ctx, r.key, "", append(opts, dlock.WithRetryLimit(-1))...)
	}
	close(stop)
	<-watched
	waited := time.Since(start).Round(time.Millisecond)

	if got != nil {
		if lock != nil {
			r.release(lock)
		}
		r.log.Warn("interrupted while waiting for the lock; COMMAND not started", "key", r.key, "signal", sigName(got))
		return nil, 128 + sigNum(got)
	}
	switch {
	case err == nil:
		r.log.Info("acquired the lock", "key", r.key, "waited", waited, "token", lock.Token())
		return lock, exitOK
	case errors.Is(err, dlock.ErrInvalidConfig):
		return nil, usageError(r.fs, r.stderr, "%v", err)
	case errors.Is(err, dlock.ErrNotAcquired):
		why := "held elsewhere or too many nodes failed"
		if r.wait.set && r.wait.d > 0 {
			why = "--wait " + r.wait.d.String() + " is over"
		}
		r.log.Warn("lock not acquired; COMMAND not started", "key", r.key, "waited", waited, "why", why,
			"err", firstLine(err))
		r.logNodeErrors(slog.LevelWarn, err)
		return nil, exitNotAcquired
	}
	r.log.Error("cannot acquire the lock", "key", r.key, "err", firstLine(err))
	r.logNodeErrors(slog.LevelError, err)
	return nil, exitSoftware
}

// runChild runs COMMAND under lock, then releases the lock, and returns
// dlock's exit code.
func (r *runner) runChild(lock *dlock.Lock, sigs <-chan os.Signal) int {
	select {
	case s := <-sigs: // between the acquire and now
		r.log.Warn("interrupted before COMMAND started; COMMAND not started", "key", r.key, "signal", sigName(s))
		r.release(lock)
		return 128 + sigNum(s)
	default:
	}
	cmd := exec.Command(r.argv[0], r.argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = childEnv(os.Environ(), lock.Key(), lock.Value(), lock.Token(), r.fencing)
	cmd.SysProcAttr = childSysProcAttr()
	// The parent-death signal (Linux) is tied to the thread that starts the
	// child: keep this goroutine on it until the child has been reaped.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		code := exitCannotRun
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			code = exitNotFound
		}
		r.log.Error("cannot start COMMAND", "command", r.argv[0], "err", err)
		r.release(lock)
		return code
	}
	pid := cmd.Process.Pid
	r.log.Info("started COMMAND", "command", r.argv[0], "pid", pid)
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the outcome is in cmd.ProcessState
		close(exited)
	}()

	poll := min(max(r.ttl/10, 10*time.Millisecond), time.Second)
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	lost := lock.Lost()
	var (
		isLost bool
		grace  *time.Timer
		graceC <-chan time.Time
	)
	onLost := func() {
		isLost, lost = true, nil
		r.log.Error("lock lost; stopping COMMAND", "key", r.key, "pid", pid, "grace", r.grace, "err", firstLine(lock.Err()))
		r.signalGroup(pid, syscall.SIGTERM)
		grace = time.NewTimer(r.grace)
		graceC = grace.C
	}
wait:
	for {
		select {
		case <-exited:
			break wait
		case s := <-sigs:
			if sig, ok := s.(syscall.Signal); ok {
				r.log.Info("forwarding signal to COMMAND", "signal", sigName(s), "pid", pid)
				r.signalGroup(pid, sig)
			}
		case <-lost:
			onLost()
		case <-ticker.C:
			if !isLost && !lock.Held() {
				onLost()
			}
		case <-graceC:
			graceC = nil
			r.log.Error("COMMAND outlived --grace; killing its process group", "pid", pid)
			r.signalGroup(pid, syscall.SIGKILL)
		}
	}
	status := describe(cmd.ProcessState)
	code := exitCode(cmd.ProcessState)

	if isLost {
		// The lock is gone: nothing of COMMAND's group may go on running.
		if graceC != nil {
			if groupAlive(pid) {
				<-graceC
				r.log.Error("COMMAND's process group outlived --grace; killing it", "pid", pid)
				r.signalGroup(pid, syscall.SIGKILL)
			} else {
				grace.Stop()
			}
		}
		r.log.Error("COMMAND stopped because the lock was lost", "key", r.key, "status", status)
		r.release(lock)
		return exitLost
	}
	if !lock.Held() {
		r.log.Error("the lock was lost before COMMAND exited", "key", r.key, "status", status, "err", firstLine(lock.Err()))
		r.release(lock)
		return exitLost
	}
	r.log.Info("COMMAND exited", "status", status, "code", code)
	r.release(lock)
	return code
}

// signalGroup sends sig to the process group of the child pid.
func (r *runner) signalGroup(pid int, sig syscall.Signal) {
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		r.log.Error("cannot signal COMMAND's process group", "pid", pid, "signal", sigName(sig), "err", err)
	}
}

// groupAlive reports whether the process group pid has members left.
func groupAlive(pid int) bool {
	return syscall.Kill(-pid, 0) == nil
}

// release releases the lock, then makes sure that every node answered a
// release: the library returns once a majority released, and finishes the
// others in the background, which an exiting process would cut short.
func (r *runner) release(lock *dlock.Lock) {
	ctx, cancel := context.WithTimeout(context.Background(), min(max(r.ttl, time.Second), 5*time.Second))
	err := lock.ReleaseContext(ctx)
	cancel()
	switch {
	case err == nil:
		r.log.Info("released the lock", "key", r.key)
	case errors.Is(err, dlock.ErrLockLost):
		r.log.Debug("release: the lock was no longer held", "key", r.key, "err", firstLine(err))
	default:
		r.log.Warn("release incomplete; the key expires on the nodes that failed after --ttl", "key", r.key,
			"err", firstLine(err))
		r.logNodeErrors(slog.LevelWarn, err)
	}

	// Wait for the calls the library left running, then make a second
	// compare-and-delete on every node, awaited: it deletes the key only
	// where it still holds this lock's value (a late acquire, a release cut
	// short). Each step is bounded as the library bounds a node call by
	// default (TTL/20, at least 10ms), so that dead or hung nodes delay
	// dlock's exit by no more than twice that.
	step := max(r.ttl/20, 10*time.Millisecond)
	ctx, cancel = context.WithTimeout(context.Background(), step)
	if !settle(ctx, &r.inflight) {
		r.log.Debug("release: node calls still running", "count", r.inflight.Load())
	}
	cancel()
	ctx, cancel = context.WithTimeout(context.Background(), step)
	defer cancel()
	var wg sync.WaitGroup
	for _, n := range r.nodes {
		wg.Go(func() {
			ok, err := n.Release(ctx, r.prefix+lock.Key(), lock.Value())
			switch {
			case err != nil:
				r.log.Debug("release sweep: node failed", "node", n.label, "err", err)
			case ok:
				r.log.Debug("release sweep: deleted the key", "node", n.label)
			}
		})
	}
	wg.Wait()
}

// logNodeErrors logs each node's failure joined into err, naming the node
// by its redacted URL.
func (r *runner) logNodeErrors(level slog.Level, err error) {
	for _, ne := range nodeErrors(err) {
		label := fmt.Sprintf("#%d", ne.Node)
		if ne.Node >= 0 && ne.Node < len(r.nodes) {
			label = r.nodes[ne.Node].label
		}
		r.log.Log(context.Background(), level, "node failed", "node", label, "err", ne.Err)
	}
}

// nodeErrors returns every *dlock.NodeError in err's tree.
func nodeErrors(err error) []*dlock.NodeError {
	var out []*dlock.NodeError
	var walk func(error)
	walk = func(err error) {
		if ne, ok := err.(*dlock.NodeError); ok {
			out = append(out, ne)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// childEnv returns the environment of COMMAND: dlock's own, without any
// DLOCK_KEY, DLOCK_VALUE or DLOCK_TOKEN it inherited, plus this lock's.
func childEnv(base []string, key, value string, token uint64, fencing bool) []string {
	env := make([]string, 0, len(base)+3)
	for _, kv := range base {
		switch name, _, _ := strings.Cut(kv, "="); name {
		case "DLOCK_KEY", "DLOCK_VALUE", "DLOCK_TOKEN":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "DLOCK_KEY="+key, "DLOCK_VALUE="+value)
	if fencing {
		env = append(env, "DLOCK_TOKEN="+strconv.FormatUint(token, 10))
	}
	return env
}

// exitCode returns the exit code that passes COMMAND's end on: its own
// exit code, or 128+N when signal N killed it.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return exitSoftware
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// describe says how COMMAND ended.
func describe(ps *os.ProcessState) string {
	if ps == nil {
		return "unknown"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by " + sigName(ws.Signal())
	}
	return "exit " + strconv.Itoa(ps.ExitCode())
}

func sigNum(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return int(n)
	}
	return 0
}

// sigName returns a signal's name, such as SIGTERM.
func sigName(s os.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGKILL:
		return "SIGKILL"
	}
	if n, ok := s.(syscall.Signal); ok {
		return "signal " + strconv.Itoa(int(n)) + " (" + n.String() + ")"
	}
	return s.String()
}

// firstLine returns the first line of err's message: joined errors put
// each node's failure on a line of its own, which logNodeErrors reports.
func firstLine(err error) string {
	if err == nil {
		return ""
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
