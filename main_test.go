package dlock_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package when any test leaves a goroutine running.
//
// Calls that a test started in the background (a release sent after Lock or
// Release returned, say to a server the test has since closed) end within
// the client's own timeouts, and a node's worker goroutine 50ms after its
// last call. So leaks are looked for until none remain or 15 seconds have
// passed: a goroutine still there then has outlived every bound dlock sets.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		err := goleak.Find()
		for deadline := time.Now().Add(15 * time.Second); err != nil && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
