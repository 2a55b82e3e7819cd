package etcd_test

import (
	"testing"
	"time"

	"github.com/charconstpointer/dlock/internal/leaktest"
)

// TestMain fails the package when any test leaves a goroutine running: a
// closed etcd client ends its goroutines, and a Redlock's node workers exit
// 50ms after their last call. Leaks are looked for until none remain or 15
// seconds have passed.
func TestMain(m *testing.M) { leaktest.VerifyTestMain(m, 15*time.Second) }
