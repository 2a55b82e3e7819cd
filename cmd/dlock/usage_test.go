//go:build unix

package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestUsage_errors_exit_64(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	const node = "redis://127.0.0.1:1" // never contacted: usage is checked first
	for _, tc := range []struct {
		name  string
		nodes string // DLOCK_NODES
		args  []string
		want  string // in the first line of stderr
	}{
		{"no command", node, nil, "missing command"},
		{"unknown command", node, []string{"lock", "k"}, `unknown command "lock"`},
		{"run: missing KEY", node, []string{"run"}, "missing KEY"},
		{"run: missing --", node, []string{"run", "k"}, `missing "--" and COMMAND`},
		{"run: COMMAND without --", node, []string{"run", "k", "touch", marker}, `expected "--" after KEY "k", got "touch"`},
		{"run: flag after KEY", node, []string{"run", "k", "--ttl", "1s", "--", "touch", marker}, `expected "--" after KEY "k", got "--ttl"`},
		{"run: missing COMMAND", node, []string{"run", "k", "--"}, "missing COMMAND"},
		{"run: empty KEY", node, []string{"run", "", "--", "touch", marker}, "KEY must not be empty"},
		{"run: unknown flag", node, []string{"run", "--bogus", "k", "--", "touch", marker}, "flag provided but not defined: -bogus"},
		{"run: bad --ttl", node, []string{"run", "--ttl", "soon", "k", "--", "touch", marker}, `invalid value "soon" for flag -ttl`},
		{"run: zero --ttl", node, []string{"run", "--ttl=0s", "k", "--", "touch", marker}, "--ttl 0s: must be > 0"},
		{"run: --ttl within the drift", node, []string{"run", "--ttl", "1ms", "k", "--", "touch", marker}, "TTL"},
		{"run: negative --wait", node, []string{"run", "--wait", "-1s", "k", "--", "touch", marker}, "must be ≥ 0"},
		{"run: negative --grace", node, []string{"run", "--grace", "-1s", "k", "--", "touch", marker}, "--grace -1s: must be ≥ 0"},
		{"run: bad --log-level", node, []string{"run", "--log-level", "loud", "k", "--", "touch", marker}, "log-level"},
		{"run: no nodes", "", []string{"run", "k", "--", "touch", marker}, "no nodes: set --nodes or DLOCK_NODES"},
		{"run: unsupported scheme", "http://127.0.0.1:1", []string{"run", "k", "--", "touch", marker}, `unsupported scheme "http"`},
		{"run: missing scheme", "127.0.0.1:6379", []string{"run", "k", "--", "touch", marker}, "node 1"},
		{"run: empty URL", node + ",", []string{"run", "k", "--", "touch", marker}, "node 2: empty URL"},
		{"run: bad port", "redis://127.0.0.1:port", []string{"run", "k", "--", "touch", marker}, "bad URL"},
		{"run: bad DB", "redis://127.0.0.1:1/db", []string{"run", "k", "--", "touch", marker}, "invalid database number"},
		{"run: same node twice", node + "," + node + "/2", []string{"run", "k", "--", "touch", marker}, "the same store as node 1"},
		{"run: --nodes overrides", "", []string{"run", "--nodes", "http://x", "k", "--", "touch", marker}, `unsupported scheme "http"`},
		{"status: missing KEY", node, []string{"status"}, "missing KEY"},
		{"status: two KEYs", node, []string{"status", "a", "b"}, "expected one KEY"},
		{"status: bad URL", "redis://127.0.0.1:port", []string{"status", "k"}, "bad URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runDlock(t, []string{"DLOCK_NODES=" + tc.nodes}, tc.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr)
			}
			first, _, _ := strings.Cut(stderr, "\n")
			if !strings.Contains(first, tc.want) {
				t.Errorf("first line of stderr = %q, want it to contain %q", first, tc.want)
			}
			if !strings.Contains(stderr, "usage: dlock") {
				t.Errorf("stderr lacks the usage:\n%s", stderr)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") > 5 {
				t.Errorf("stderr is more than a reason and the usage:\n%s", stderr)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("COMMAND ran despite bad usage")
			}
		})
	}
}

func TestUsage_password_never_printed(t *testing.T) {
	const secret = "s3cr3t-pw"
	for _, url := range []string{
		"redis://user:" + secret + "@127.0.0.1:port",                              // url.Parse fails
		"http://user:" + secret + "@127.0.0.1:1",                                  // unsupported scheme
		"redis://user:" + secret + "@127.0.0.1:1/?bogus=1",                        // go-redis rejects the option
		"redis://user:" + secret + "@127.0.0.1:1/x",                               // bad DB
		"rediss://:" + secret + "@127.0.0.1:1,redis://:x@[::1",                    // the second is bad
		"redis://:" + secret + "@127.0.0.1:1,redis://:" + secret + "@127.0.0.1:1", // duplicate
	} {
		for _, args := range [][]string{{"run", "k", "--", "true"}, {"status", "k"}} {
			code, stdout, stderr := runDlock(t, []string{"DLOCK_NODES=" + url}, args...)
			if code != exitUsage {
				t.Errorf("%s %s: exit %d, want %d; stderr:\n%s", args[0], url, code, exitUsage, stderr)
			}
			if strings.Contains(stderr+stdout, secret) {
				t.Errorf("%s %s: the password was printed:\n%s", args[0], url, stderr)
			}
		}
	}
	// Nor in --help, where --nodes's default is shown.
	_, stdout, stderr := runDlock(t, []string{"DLOCK_NODES=redis://:" + secret + "@127.0.0.1:1"}, "run", "--help")
	if strings.Contains(stdout+stderr, secret) {
		t.Errorf("run --help printed the password from DLOCK_NODES:\n%s", stdout)
	}
}

func TestHelp_lists_every_flag_with_its_default(t *testing.T) {
	for _, tc := range []struct {
		cmd   string
		flags map[string]string // flag → its default as shown
	}{
		{"run", map[string]string{
			"nodes": "$DLOCK_NODES", "prefix": `""`, "log-level": "WARN",
			"ttl": "10s", "wait": "forever: until acquired", "grace": "5s", "fencing": "false",
		}},
		{"status", map[string]string{
			"nodes": "$DLOCK_NODES", "prefix": `""`, "log-level": "WARN", "timeout": "2s",
		}},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			code, stdout, stderr := runDlock(t, nil, tc.cmd, "--help")
			if code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", code, stderr)
			}
			listed := regexp.MustCompile(`(?m)^  --([a-z-]+)`).FindAllStringSubmatch(stdout, -1)
			if len(listed) != len(tc.flags) {
				t.Errorf("--help lists %d flags, want %d:\n%s", len(listed), len(tc.flags), stdout)
			}
			for name, def := range tc.flags {
				re := regexp.MustCompile(`(?m)^  --` + regexp.QuoteMeta(name) + `\b.*\n.*\(default ` + regexp.QuoteMeta(def) + `\)$`)
				if !re.MatchString(stdout) {
					t.Errorf("--help does not list --%s with (default %s):\n%s", name, def, stdout)
				}
			}
			if tc.cmd == "run" && !strings.Contains(stdout, "128+N") {
				t.Errorf("run --help does not explain exit codes of a child killed by a signal:\n%s", stdout)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, stdout, stderr := runDlock(t, nil, "--version")
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if !regexp.MustCompile(`^dlock (\(devel\)|v\S+) \(go\S+\)\n$`).MatchString(stdout) {
		t.Errorf("--version printed %q, want \"dlock VERSION (goX.Y)\"", stdout)
	}
}
