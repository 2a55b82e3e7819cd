// Package leaktest is the TestMain of the packages whose tests may leave
// goroutines that end on their own a little later: calls a Redlock finishes
// in the background after Lock or Release returned (within the client's or
// node's timeouts), a node's worker goroutine that exits 50ms after its last
// call, a closed client's goroutines. goleak.VerifyTestMain would report
// those at once; VerifyTestMain looks again until they are gone or a wait
// has passed.
//
// It is imported by tests only, in this module and in the modules of its
// subdirectories (postgres, etcd), which the internal rule allows.
package leaktest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// poll is how often Find looks for leaked goroutines again.
const poll = 50 * time.Millisecond

// Find looks for goroutines other than the caller's and the testing
// package's (goleak.Find with opts) until there are none or wait has
// passed; it returns goleak's error of the last look, nil when none were
// left.
func Find(wait time.Duration, opts ...goleak.Option) error {
	err := goleak.Find(opts...)
	for deadline := time.Now().Add(wait); err != nil && time.Now().Before(deadline); {
		time.Sleep(poll)
		err = goleak.Find(opts...)
	}
	return err
}

// VerifyTestMain runs the tests and, when they passed, fails the package
// (exit code 1) if goroutines are left after wait (see Find); it then exits
// with the tests' code. Call it from TestMain:
//
//	func TestMain(m *testing.M) { leaktest.VerifyTestMain(m, 15*time.Second) }
func VerifyTestMain(m *testing.M, wait time.Duration, opts ...goleak.Option) {
	code := m.Run()
	if code == 0 {
		if err := Find(wait, opts...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
