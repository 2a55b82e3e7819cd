package dlocktest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine running. A
// Redlock's node workers exit 50ms after their last call, within goleak's
// retries.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
