package dlock_test

import (
	"testing"
	"time"

	"github.com/charconstpointer/dlock/internal/leaktest"
)

// TestMain fails the package when any test leaves a goroutine running.
//
// Calls that a test started in the background (a release sent after Lock or
// Release returned, say to a server the test has since closed) end within
// the client's own timeouts, and a node's worker goroutine 50ms after its
// last call. So leaks are looked for until none remain or 15 seconds have
// passed: a goroutine still there then has outlived every bound dlock sets.
func TestMain(m *testing.M) { leaktest.VerifyTestMain(m, 15*time.Second) }
