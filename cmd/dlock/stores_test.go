//go:build unix

package main

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests of this file run dlock against a real PostgreSQL server and a
// real etcd server: DLOCK_POSTGRES_URLS (comma-separated postgres:// URLs)
// and DLOCK_ETCD_ENDPOINTS (comma-separated http://host:port client URLs of
// one cluster). Each test skips when its variable is empty, or fails when
// DLOCK_REQUIRE_POSTGRES=1 / DLOCK_REQUIRE_ETCD=1.

// postgresNode returns the first URL of DLOCK_POSTGRES_URLS.
func postgresNode(t *testing.T) string {
	t.Helper()
	for u := range strings.SplitSeq(os.Getenv("DLOCK_POSTGRES_URLS"), ",") {
		if u = strings.TrimSpace(u); u != "" {
			return u
		}
	}
	if os.Getenv("DLOCK_REQUIRE_POSTGRES") == "1" {
		t.Fatal("DLOCK_POSTGRES_URLS is empty but DLOCK_REQUIRE_POSTGRES=1: start a server with scripts/postgres.sh (make test does)")
	}
	t.Skip("DLOCK_POSTGRES_URLS is empty; set it to comma-separated postgres:// URLs of running servers")
	return ""
}

// etcdNode returns the etcd:// URL of the cluster of DLOCK_ETCD_ENDPOINTS.
func etcdNode(t *testing.T) string {
	t.Helper()
	var hosts []string
	for e := range strings.SplitSeq(os.Getenv("DLOCK_ETCD_ENDPOINTS"), ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		u, err := url.Parse(e)
		if err != nil || u.Scheme != "http" || u.Host == "" {
			t.Fatalf("DLOCK_ETCD_ENDPOINTS: %q: want http://host:port", e)
		}
		hosts = append(hosts, u.Host)
	}
	if len(hosts) == 0 {
		if os.Getenv("DLOCK_REQUIRE_ETCD") == "1" {
			t.Fatal("DLOCK_ETCD_ENDPOINTS is empty but DLOCK_REQUIRE_ETCD=1: start a server with scripts/etcd.sh (make test does)")
		}
		t.Skip("DLOCK_ETCD_ENDPOINTS is empty; set it to the http://host:port client URLs of a running etcd")
	}
	return "etcd://" + strings.Join(hosts, ",")
}

// stores are the single-node configurations under test.
var stores = []struct {
	name string
	node func(t *testing.T) string
}{
	{"postgres", postgresNode},
	{"etcd", etcdNode},
}

// statusOf runs dlock status on node and checks its one row: held with
// value's prefix, or not held.
func statusOf(t *testing.T, node, key, when string, wantHeld bool, value string) {
	t.Helper()
	code, stdout, stderr := runDlock(t, []string{"DLOCK_NODES=" + node}, "status", key)
	want := exitNotHeld
	if wantHeld {
		want = exitOK
	}
	if code != want {
		t.Errorf("%s: status exit %d, want %d; stdout:\n%s\nstderr:\n%s", when, code, want, stdout, stderr)
	}
	var rows [][]string
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, node) {
			rows = append(rows, strings.Fields(l))
		}
	}
	if len(rows) != 1 || len(rows[0]) != 5 {
		t.Fatalf("%s: want one row NODE HELD VALUE TTL FENCING for %s:\n%s", when, node, stdout)
	}
	r := rows[0]
	if wantHeld {
		if r[1] != "yes" || r[2] != value[:valuePrefixLen]+"…" {
			t.Errorf("%s: row %q: want held with value %s…", when, r, value[:valuePrefixLen])
		}
		if ttl, err := time.ParseDuration(r[3]); err != nil || ttl <= 0 || ttl > 31*time.Second {
			t.Errorf("%s: row %q: TTL %q, want in (0, 31s]", when, r, r[3])
		}
	} else if r[1] != "no" {
		t.Errorf("%s: row %q: want not held", when, r)
	}
}

func TestStores_run_exit_code_and_release(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			node := st.node(t)
			key := uniqueKey(t)
			env := []string{"DLOCK_NODES=" + node}
			code, stdout, stderr := runDlock(t, env, "run", "--fencing", key, "--",
				"sh", "-c", `echo "token=$DLOCK_TOKEN key=$DLOCK_KEY"; exit 7`)
			if code != 7 {
				t.Fatalf("dlock run: exit %d, want the child's 7; stderr:\n%s", code, stderr)
			}
			if want := "token=1 key=" + key + "\n"; stdout != want {
				t.Errorf("child stdout = %q, want %q", stdout, want)
			}
			if stderr != "" {
				t.Errorf("stderr = %q, want nothing at the default log level", stderr)
			}
			statusOf(t, node, key, "after", false, "")
			// A second run acquires at once, with the next token.
			code, stdout, stderr = runDlock(t, env, "run", "--wait", "0", "--fencing", key, "--",
				"sh", "-c", `echo "token=$DLOCK_TOKEN"`)
			if code != 0 || stdout != "token=2\n" {
				t.Errorf("second run: exit %d, stdout %q; want 0 and token=2; stderr:\n%s", code, stdout, stderr)
			}
		})
	}
}

func TestStores_status_before_during_and_after_a_run(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			node := st.node(t)
			key := uniqueKey(t)
			env := []string{"DLOCK_NODES=" + node}
			statusOf(t, node, key, "before", false, "")

			events := filepath.Join(t.TempDir(), "events")
			done := events + ".done"
			p := startDlock(t, append(env, "DLOCK_TEST_CHILD=hold", "EVENTS="+events, "DONE_FILE="+done),
				"run", "--ttl", "30s", key, "--", childCmd(t))
			ready := waitEvent(t, events, "ready", 10*time.Second)
			t.Cleanup(func() { _ = syscall.Kill(atoi(ready[1]), syscall.SIGKILL) })
			value := waitEvent(t, events, "env", time.Second)[2]
			statusOf(t, node, key, "during", true, value)

			// Another run cannot take it meanwhile.
			code, _, stderr := runDlock(t, env, "run", "--wait", "0", key, "--", "true")
			if code != exitNotAcquired {
				t.Errorf("contender: exit %d, want %d; stderr:\n%s", code, exitNotAcquired, stderr)
			}

			if err := os.WriteFile(done, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if code := p.wait(t, 10*time.Second); code != 0 {
				t.Fatalf("dlock run: exit %d; stderr:\n%s", code, p.stderr)
			}
			statusOf(t, node, key, "after", false, "")
		})
	}
}

func TestStores_bad_URLs_exit_64_without_the_password(t *testing.T) {
	const secret = "s3cr3t-pw"
	marker := filepath.Join(t.TempDir(), "ran")
	for _, tc := range []struct{ nodes, want string }{
		{"postgres://u:" + secret + "@127.0.0.1:port/db", "bad URL"},
		{"postgres://u:" + secret + "@127.0.0.1:1/db?sslmode=bogus", "sslmode"},
		{"postgresql://u:" + secret + "@127.0.0.1:1/db?pool_max_conns=x&password=" + secret, "pool_max_conns"},
		{"postgres://127.0.0.1:1/db?sslmode=bogus&password=" + secret, "sslmode"},
		{"postgres://u:" + secret + "@127.0.0.1:1/db,postgres://u:" + secret + "@127.0.0.1:1/other", "the same store as node 1"},
		{"etcd://u:" + secret + "@127.0.0.1:1/path", "unexpected path"},
		{"etcd://u:" + secret + "@127.0.0.1:1?x=1", "no query"},
		{"etcd://:" + secret + "@127.0.0.1:1", "needs both user and password"},
		{"etcd://u:" + secret + "@127.0.0.1:port", "bad URL"},
		{"etcds://u:" + secret + "@127.0.0.1:1,127.0.0.1:2,etcd://127.0.0.1:2,127.0.0.1:1", "the same store as node 1"},
	} {
		for _, args := range [][]string{{"run", "k", "--", "touch", marker}, {"status", "k"}} {
			code, stdout, stderr := runDlock(t, []string{"DLOCK_NODES=" + tc.nodes}, args...)
			if code != exitUsage {
				t.Errorf("%s %s: exit %d, want %d; stderr:\n%s", args[0], tc.nodes, code, exitUsage, stderr)
			}
			if first, _, _ := strings.Cut(stderr, "\n"); !strings.Contains(first, tc.want) {
				t.Errorf("%s %s: first line of stderr = %q, want it to contain %q", args[0], tc.nodes, first, tc.want)
			}
			if strings.Contains(stdout+stderr, secret) {
				t.Errorf("%s %s: the password was printed:\n%s%s", args[0], tc.nodes, stdout, stderr)
			}
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("COMMAND ran despite a bad URL")
	}
}

func TestStores_unreachable_nodes_fail_without_the_password(t *testing.T) {
	const secret = "s3cr3t-pw"
	nodes := "postgres://u:" + secret + "@127.0.0.1:" + strconv.Itoa(freePort(t)) + "/db?sslmode=disable," +
		"etcd://u:" + secret + "@127.0.0.1:" + strconv.Itoa(freePort(t)) + ",127.0.0.1:" + strconv.Itoa(freePort(t))
	code, stdout, stderr := runDlock(t, []string{"DLOCK_NODES=" + nodes}, "status", "--timeout", "1s", "--log-level", "debug", "k")
	if code != exitUnknown {
		t.Errorf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, exitUnknown, stdout, stderr)
	}
	if n := len(regexp.MustCompile(`(?m)^\S+\s+error: `).FindAllString(stdout, -1)); n != 2 {
		t.Errorf("%d node errors shown, want 2 (the etcd URL is one node):\n%s", n, stdout)
	}
	if strings.Contains(stdout+stderr, secret) {
		t.Errorf("the password was printed:\n%s%s", stdout, stderr)
	}
}

func TestSplitNodes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"redis://a:1,redis://b:2", []string{"redis://a:1", "redis://b:2"}},
		{"etcd://a:1,b:2,c:3,redis://d:4", []string{"etcd://a:1,b:2,c:3", "redis://d:4"}},
		{"etcd://a:1/,b:2", []string{"etcd://a:1/", "b:2"}},
		{"postgres://u:p@a:1,b:2/db?sslmode=disable, redis://c:3", []string{"postgres://u:p@a:1,b:2/db?sslmode=disable", "redis://c:3"}},
		{"redis://a:1,b:2", []string{"redis://a:1", "b:2"}},
		{"etcd://a:1,,b:2", []string{"etcd://a:1", "", "b:2"}},
	} {
		got := splitNodes(tc.in)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
			t.Errorf("splitNodes(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:pw@h:1/db?sslmode=disable", "postgres://u:xxxxx@h:1/db?sslmode=disable"},
		{"postgres://h:1/db?password=pw&sslmode=disable", "postgres://h:1/db?password=xxxxx&sslmode=disable"},
		{"postgres://h:1/db?sslpassword=pw", "postgres://h:1/db?sslpassword=xxxxx"},
		{"etcd://u:pw@a:1,b:2", "etcd://u:xxxxx@a:1,b:2"},
	} {
		u, err := url.Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := redactURL(u); got != tc.want {
			t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got, want := redactRaw("postgres://h:port/db?password=pw&x=1"), "postgres://h:port/db?password=xxxxx&x=1"; got != want {
		t.Errorf("redactRaw = %q, want %q", got, want)
	}
}
