//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/charconstpointer/dlock"
	"github.com/redis/go-redis/v9"
)

// needInspector skips the test when RedisNode cannot report what it holds.
func needInspector(t *testing.T, addr string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	if _, ok := dlock.RedisNode(c).(dlock.Inspector); !ok {
		t.Skip("RedisNode does not implement dlock.Inspector yet; dlock status reports every node as failed until it does")
	}
}

// statusRows returns the table rows of dlock status, one per node.
func statusRows(t *testing.T, stdout string) [][]string {
	t.Helper()
	var rows [][]string
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if strings.HasPrefix(l, "redis://") {
			rows = append(rows, strings.Fields(l))
		}
	}
	return rows
}

func TestStatus_before_during_and_after_a_run(t *testing.T) {
	addrs := redisAddrs(t)
	needInspector(t, addrs[0])
	key := uniqueKey(t)
	env := []string{nodesEnv(addrs)}

	check := func(when string, wantCode int, wantHeld bool, value string) {
		t.Helper()
		code, stdout, stderr := runDlock(t, env, "status", key)
		if code != wantCode {
			t.Errorf("%s: exit %d, want %d; stdout:\n%s\nstderr:\n%s", when, code, wantCode, stdout, stderr)
		}
		rows := statusRows(t, stdout)
		if len(rows) != len(addrs) {
			t.Fatalf("%s: %d node rows, want %d:\n%s", when, len(rows), len(addrs), stdout)
		}
		for _, r := range rows {
			if len(r) != 5 {
				t.Errorf("%s: row %q: want NODE HELD VALUE TTL FENCING", when, r)
				continue
			}
			if wantHeld {
				if r[1] != "yes" || r[2] != value[:valuePrefixLen]+"…" {
					t.Errorf("%s: row %q: want held with value %s…", when, r, value[:valuePrefixLen])
				}
				ttl, err := time.ParseDuration(r[3])
				if err != nil || ttl <= 0 || ttl > 30*time.Second {
					t.Errorf("%s: row %q: TTL %q, want in (0, 30s]", when, r, r[3])
				}
			} else if r[1] != "no" {
				t.Errorf("%s: row %q: want not held", when, r)
			}
		}
		if value != "" && strings.Contains(stdout+stderr, value) {
			t.Errorf("%s: status printed the whole value", when)
		}
		summary := fmt.Sprintf("%d of %d nodes hold", map[bool]int{true: len(addrs), false: 0}[wantHeld], len(addrs))
		if !strings.Contains(stdout, summary) {
			t.Errorf("%s: stdout lacks %q:\n%s", when, summary, stdout)
		}
	}

	check("before", exitNotHeld, false, "")

	events := filepath.Join(t.TempDir(), "events")
	done := events + ".done"
	p := startDlock(t, append(env, "DLOCK_TEST_CHILD=hold", "EVENTS="+events, "DONE_FILE="+done),
		"run", "--ttl", "30s", key, "--", childCmd(t))
	ready := waitEvent(t, events, "ready", 10*time.Second)
	t.Cleanup(func() { _ = syscall.Kill(atoi(ready[1]), syscall.SIGKILL) })
	value := waitEvent(t, events, "env", time.Second)[2]
	check("during", exitOK, true, value)

	if err := os.WriteFile(done, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("dlock run: exit %d; stderr:\n%s", code, p.stderr)
	}
	check("after", exitNotHeld, false, "")
}

func TestStatus_minority_of_holders_is_not_held(t *testing.T) {
	addrs := redisAddrs(t)
	needInspector(t, addrs[0])
	key := uniqueKey(t)
	// One node holds the key: a minority, as after a failed attempt.
	c := redis.NewClient(&redis.Options{Addr: addrs[0]})
	defer c.Close()
	if err := c.Set(t.Context(), key, "0123456789abcdef0123456789abcdef", 30*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Del(t.Context(), key) })
	code, stdout, stderr := runDlock(t, []string{nodesEnv(addrs)}, "status", key)
	if code != exitNotHeld {
		t.Errorf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, exitNotHeld, stdout, stderr)
	}
	if !regexp.MustCompile(`(?m)^not held: 1 of \d+ nodes hold`).MatchString(stdout) {
		t.Errorf("stdout:\n%s\nwant a \"not held: 1 of N\" summary", stdout)
	}
}

func TestStatus_unreachable_nodes_exit_2(t *testing.T) {
	var urls []string
	for range 3 {
		urls = append(urls, fmt.Sprintf("redis://127.0.0.1:%d", freePort(t)))
	}
	code, stdout, stderr := runDlock(t, []string{"DLOCK_NODES=" + strings.Join(urls, ",")},
		"status", "--timeout", "1s", uniqueKey(t))
	if code != exitUnknown {
		t.Errorf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, exitUnknown, stdout, stderr)
	}
	if n := strings.Count(stdout, "error:"); n != 3 {
		t.Errorf("%d node errors shown, want 3:\n%s", n, stdout)
	}
}

func atoi(s string) int {
	var n int
	_, _ = fmt.Sscan(s, &n)
	return n
}
