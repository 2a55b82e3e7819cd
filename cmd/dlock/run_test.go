//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/charconstpointer/dlock"
	"github.com/redis/go-redis/v9"
)

// noKeyLeft fails the test when key is still set on any node.
func noKeyLeft(t *testing.T, addrs []string, key string) {
	t.Helper()
	for i, v := range valuesOn(t, addrs, key) {
		if v != "" {
			t.Errorf("key %q left on node %s after dlock exited (value %.8s…)", key, addrs[i], v)
		}
	}
}

// holdKey takes key with the dlock library, as another holder would, and
// releases it in Cleanup.
func holdKey(t *testing.T, addrs []string, key string) *dlock.Lock {
	t.Helper()
	clients := make([]redis.UniversalClient, len(addrs))
	for i, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		t.Cleanup(func() { c.Close() })
		clients[i] = c
	}
	rl, err := dlock.New(dlock.RedisNodes(clients...))
	if err != nil {
		t.Fatal(err)
	}
	lock, err := rl.LockContext(t.Context(), key, "", dlock.WithTTL(30*time.Second))
	if err != nil {
		t.Fatalf("hold %q: %v", key, err)
	}
	t.Cleanup(func() { _ = lock.Release() })
	return lock
}

func TestRun_contenders_never_overlap(t *testing.T) {
	addrs := redisAddrs(t)
	key := uniqueKey(t)
	spans := filepath.Join(t.TempDir(), "spans")
	const n = 3
	var ps []*proc
	for i := range n {
		env := []string{nodesEnv(addrs), "DLOCK_TEST_CHILD=spans", "SPAN_FILE=" + spans,
			fmt.Sprintf("SPAN_NAME=c%d", i), "SPAN_SLEEP=300ms"}
		ps = append(ps, startDlock(t, env, "run", "--ttl", "2s", key, "--", childCmd(t)))
	}
	for i, p := range ps {
		if code := p.wait(t, 30*time.Second); code != 0 {
			t.Errorf("dlock %d: exit %d, want 0; stderr:\n%s", i, code, p.stderr)
		}
	}

	type span struct {
		name       string
		start, end time.Time
	}
	byName := map[string]*span{}
	for _, l := range readLines(t, spans) {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("bad span line %q", l)
		}
		s := byName[f[1]]
		if s == nil {
			s = &span{name: f[1]}
			byName[f[1]] = s
		}
		switch f[0] {
		case "start":
			s.start = nanos(t, f[2])
		case "end":
			s.end = nanos(t, f[2])
		}
	}
	if len(byName) != n {
		t.Fatalf("%d children ran, want %d; lines: %q", len(byName), n, readLines(t, spans))
	}
	var all []*span
	for _, s := range byName {
		if s.start.IsZero() || s.end.IsZero() {
			t.Fatalf("child %s did not run to the end: %+v", s.name, s)
		}
		all = append(all, s)
	}
	slices.SortFunc(all, func(a, b *span) int { return a.start.Compare(b.start) })
	for i := 1; i < len(all); i++ {
		if a, b := all[i-1], all[i]; b.start.Before(a.end) {
			t.Errorf("children overlap: %s ran %s–%s, %s started at %s", a.name,
				a.start.Format(time.StampMicro), a.end.Format(time.StampMicro), b.name, b.start.Format(time.StampMicro))
		}
	}
	noKeyLeft(t, addrs, key)
}

func TestRun_not_acquired_exits_75(t *testing.T) {
	addrs := redisAddrs(t)
	key := uniqueKey(t)
	holder := holdKey(t, addrs, key)
	env := []string{nodesEnv(addrs)}

	t.Run("wait 0", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "ran")
		start := time.Now()
		code, _, stderr := runDlock(t, env, "run", "--wait", "0", key, "--", "touch", marker)
		if code != exitNotAcquired {
			t.Errorf("exit %d, want %d; stderr:\n%s", code, exitNotAcquired, stderr)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("--wait 0 took %v: it must make one attempt", d)
		}
		if !strings.Contains(stderr, "lock not acquired") {
			t.Errorf("stderr does not say the lock was not acquired:\n%s", stderr)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Error("the child ran although the lock was not acquired")
		}
	})
	t.Run("wait 300ms", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "ran")
		start := time.Now()
		code, _, stderr := runDlock(t, env, "run", "--wait=300ms", key, "--", "touch", marker)
		d := time.Since(start)
		if code != exitNotAcquired {
			t.Errorf("exit %d, want %d; stderr:\n%s", code, exitNotAcquired, stderr)
		}
		if d < 300*time.Millisecond || d > 5*time.Second {
			t.Errorf("dlock gave up after %v, want about --wait 300ms", d)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Error("the child ran although the lock was not acquired")
		}
	})
	t.Run("SIGTERM while waiting", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "ran")
		p := startDlock(t, env, "run", key, "--", "touch", marker)
		time.Sleep(300 * time.Millisecond)
		if !p.running() {
			t.Fatalf("dlock exited while the key was held (want it waiting); stderr:\n%s", p.stderr)
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t, 5*time.Second); code != 128+int(syscall.SIGTERM) {
			t.Errorf("exit %d, want %d; stderr:\n%s", code, 128+int(syscall.SIGTERM), p.stderr)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Error("the child ran although dlock was interrupted while waiting")
		}
	})
	// The failed attempts must not have touched the holder's key.
	for i, v := range valuesOn(t, addrs, key) {
		if v != holder.Value() {
			t.Errorf("node %s: key holds %.8q, want the holder's value %.8q", addrs[i], v, holder.Value())
		}
	}
}

func TestRun_exit_code_passes_through(t *testing.T) {
	addrs := redisAddrs(t)
	env := []string{nodesEnv(addrs)}
	for _, tc := range []struct {
		name, script string
		want         int
	}{
		{"exit 0", "exit 0", 0},
		{"exit 3", "exit 3", 3},
		{"killed by SIGTERM", "kill -TERM $$", 128 + int(syscall.SIGTERM)},
		{"killed by SIGKILL", "kill -KILL $$", 128 + int(syscall.SIGKILL)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := uniqueKey(t)
			code, _, stderr := runDlock(t, env, "run", "--ttl", "5s", key, "--", "sh", "-c", tc.script)
			if code != tc.want {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.want, stderr)
			}
			noKeyLeft(t, addrs, key)
		})
	}
	t.Run("command not found", func(t *testing.T) {
		key := uniqueKey(t)
		code, _, stderr := runDlock(t, env, "run", key, "--", "/nonexistent/dlock-test-command")
		if code != exitNotFound {
			t.Errorf("exit %d, want %d; stderr:\n%s", code, exitNotFound, stderr)
		}
		noKeyLeft(t, addrs, key)
	})
}

func TestRun_child_env_and_stdout(t *testing.T) {
	addrs := redisAddrs(t)
	key := uniqueKey(t)
	// Inherited lock variables (an outer dlock's) must not reach the child.
	env := []string{nodesEnv(addrs), "DLOCK_KEY=outer", "DLOCK_VALUE=outer", "DLOCK_TOKEN=7"}
	p := startDlock(t, env, "run", "--log-level", "debug", key, "--", "sh", "-c",
		`printf '%s|%s|%s\n' "$DLOCK_KEY" "$DLOCK_VALUE" "${DLOCK_TOKEN-unset}"; sleep 0.5`)
	// While the child runs, a majority of nodes hold the key.
	var seen []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && p.running(); {
		vals := valuesOn(t, addrs, key)
		if n := len(slices.DeleteFunc(slices.Clone(vals), func(v string) bool { return v == "" })); n > len(addrs)/2 {
			seen = vals
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr)
	}
	out := p.stdout.String()
	m := regexp.MustCompile(`^(.*)\|([0-9a-f]{32})\|(.*)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("stdout = %q, want only the child's line KEY|VALUE|unset (dlock's own messages belong on stderr)", out)
	}
	if m[1] != key {
		t.Errorf("DLOCK_KEY = %q, want %q", m[1], key)
	}
	if m[3] != "unset" {
		t.Errorf("DLOCK_TOKEN = %q without --fencing, want it unset", m[3])
	}
	if seen == nil {
		t.Fatal("never saw the key on a majority of nodes while the child ran")
	}
	for i, v := range seen {
		if v != "" && v != m[2] {
			t.Errorf("node %s held %.8q, want DLOCK_VALUE %.8q", addrs[i], v, m[2])
		}
	}
	if !strings.Contains(p.stderr.String(), "acquired the lock") {
		t.Errorf("--log-level debug: stderr lacks dlock's progress messages:\n%s", p.stderr)
	}
	noKeyLeft(t, addrs, key)
}

func TestRun_fencing_token(t *testing.T) {
	addrs := redisAddrs(t)
	key := uniqueKey(t)
	c := redis.NewClient(&redis.Options{Addr: addrs[0]})
	defer c.Close()
	_, fencer := dlock.RedisNode(c).(dlock.Fencer)
	env := []string{nodesEnv(addrs)}
	var tokens []uint64
	for range 2 {
		code, stdout, stderr := runDlock(t, env, "run", "--fencing", key, "--", "sh", "-c", `echo "${DLOCK_TOKEN-unset}"`)
		if !fencer && code == exitUsage {
			// A library whose nodes cannot fence rejects --fencing up front.
			if !strings.Contains(stderr, "encing") {
				t.Errorf("--fencing rejected without saying why:\n%s", stderr)
			}
			t.Skip("RedisNode does not implement dlock.Fencer yet; --fencing is rejected as it should be")
		}
		if code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, stderr)
		}
		tok, err := strconv.ParseUint(strings.TrimSpace(stdout), 10, 64)
		if err != nil {
			t.Fatalf("with --fencing, DLOCK_TOKEN = %q, want a number", strings.TrimSpace(stdout))
		}
		tokens = append(tokens, tok)
	}
	if !fencer {
		t.Skipf("RedisNode does not implement dlock.Fencer yet: tokens %v cannot be checked", tokens)
	}
	if tokens[0] == 0 || tokens[1] <= tokens[0] {
		t.Errorf("tokens %v: want positive and increasing from one lock to the next", tokens)
	}
}

func TestRun_majority_killed(t *testing.T) {
	const ttl, grace = time.Second, 500 * time.Millisecond
	for _, tc := range []struct {
		name   string
		ignore bool // the child ignores SIGTERM
	}{
		{"child ignores SIGTERM", true},
		{"child exits on SIGTERM", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			servers := startRedis(t, 3)
			addrs := addrsOf(servers)
			events := filepath.Join(t.TempDir(), "events")
			ignore := "0"
			if tc.ignore {
				ignore = "1"
			}
			env := []string{nodesEnv(addrs), "DLOCK_TEST_CHILD=hold", "EVENTS=" + events,
				"IGNORE_SIGNALS=" + ignore, "SIG_DELAY=50ms", "SIG_EXIT=0", "DONE_FILE=" + events + ".done"}
			p := startDlock(t, env, "run", "--log-level=debug", "--ttl", ttl.String(), "--grace", grace.String(), uniqueKey(t), "--", childCmd(t))
			ready := waitEvent(t, events, "ready", 10*time.Second)
			pid, _ := strconv.Atoi(ready[1])
			t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

			// The lock outlives its TTL while refreshed.
			time.Sleep(ttl + ttl/2)
			if !p.running() {
				t.Fatalf("dlock exited before the nodes were killed; stderr:\n%s", p.stderr)
			}
			killed := time.Now()
			servers[0].kill()
			servers[1].kill()

			code := p.wait(t, 10*time.Second)
			took := p.end.Sub(killed)
			if code != exitLost {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, exitLost, p.stderr)
			}
			if limit := ttl + grace + 500*time.Millisecond; took > limit {
				t.Errorf("dlock exited %v after a majority was killed, want within TTL + grace (+ slack) = %v", took, limit)
			}
			sig := event(t, events, "sig")
			if sig == nil || sig[1] != "SIGTERM" {
				t.Fatalf("the child did not get SIGTERM; events %q", readLines(t, events))
			}
			termAt := nanos(t, sig[2])
			if !processGone(pid) {
				t.Errorf("the child (pid %d) is still running after dlock exited", pid)
			}
			if tc.ignore {
				if event(t, events, "exit") != nil {
					t.Errorf("the child exited on its own; it should have been killed")
				}
				if d := p.end.Sub(termAt); d < grace-50*time.Millisecond {
					t.Errorf("SIGKILL came %v after SIGTERM, want --grace %v", d, grace)
				}
			} else {
				if event(t, events, "exit") == nil {
					t.Errorf("the child did not exit on SIGTERM; events %q", readLines(t, events))
				}
				if d := p.end.Sub(termAt); d > grace {
					t.Errorf("dlock exited %v after SIGTERM although the child exited at once; want no wait for --grace", d)
				}
			}
			if !strings.Contains(p.stderr.String(), "lock lost") {
				t.Errorf("stderr does not say the lock was lost:\n%s", p.stderr)
			}
		})
	}
}

func TestRun_signals_forwarded(t *testing.T) {
	addrs := redisAddrs(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(sigName(sig), func(t *testing.T) {
			key := uniqueKey(t)
			events := filepath.Join(t.TempDir(), "events")
			env := []string{nodesEnv(addrs), "DLOCK_TEST_CHILD=hold", "EVENTS=" + events,
				"SIG_DELAY=200ms", "SIG_EXIT=7", "DONE_FILE=" + events + ".done"}
			// A long TTL: a key left behind would still be there when checked.
			p := startDlock(t, env, "run", "--ttl", "30s", key, "--", childCmd(t))
			ready := waitEvent(t, events, "ready", 10*time.Second)
			pid, _ := strconv.Atoi(ready[1])
			t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

			_ = p.cmd.Process.Signal(sig)
			code := p.wait(t, 10*time.Second)
			if code != 7 {
				t.Errorf("exit %d, want the child's 7; stderr:\n%s", code, p.stderr)
			}
			got := event(t, events, "sig")
			if got == nil || got[1] != sigName(sig) {
				t.Fatalf("the child did not receive %s; events %q", sigName(sig), readLines(t, events))
			}
			exit := event(t, events, "exit")
			if exit == nil {
				t.Fatalf("the child did not exit on its own; events %q", readLines(t, events))
			}
			if exitAt := nanos(t, exit[1]); p.end.Before(exitAt) {
				t.Errorf("dlock exited at %s, before its child (%s)", p.end.Format(time.StampMicro), exitAt.Format(time.StampMicro))
			}
			noKeyLeft(t, addrs, key)
		})
	}
}
