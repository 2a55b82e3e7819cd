package redistest

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A server keeps nothing across Stop and Start, comes back on its port, and
// takes extra arguments.
func TestServer(t *testing.T) {
	s := StartServer(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { c.Close() })
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}

	s.Stop()
	s.Stop() // twice: nothing happens
	if err := c.Ping(ctx).Err(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("PING to a stopped server = %v, want connection refused", err)
	}

	s.Start()
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		// The pooled connection died with the server; a new one is dialled.
		if _, err = c.Get(ctx, "k").Result(); err == nil || errors.Is(err, redis.Nil) {
			break
		}
	}
	if !errors.Is(err, redis.Nil) {
		t.Errorf("GET after a restart = %v, want redis.Nil (the server comes back empty)", err)
	}

	p := StartServer(t, "--requirepass", "secret")
	pc := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
	t.Cleanup(func() { pc.Close() })
	if err := pc.Set(ctx, "k", "v", 0).Err(); !redis.IsAuthError(err) {
		t.Errorf("SET without the password = %v, want NOAUTH", err)
	}
}

// Stop leaves no process behind: the process is gone once Stop returns.
func TestServer_Stop_waits(t *testing.T) {
	s := StartServer(t)
	s.mu.Lock()
	pid := s.cmd.Process.Pid
	s.mu.Unlock()
	s.Stop()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill(%d, 0) after Stop = %v, want ESRCH", pid, err)
	}
}

// Without redis-server on PATH the test is skipped (it would fail under
// DLOCK_REQUIRE_REDIS=1, which this test clears).
func TestStartServer_missing_binary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv(EnvRequire, "")
	var skipped bool
	// Skip ends the goroutine that calls it: run StartServer in a subtest
	// and look at its outcome once t.Run has returned.
	t.Run("inner", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		StartServer(t)
	})
	if !skipped {
		t.Error("StartServer without redis-server on PATH did not skip the test")
	}
}
