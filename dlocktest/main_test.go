package dlocktest_test

import (
	"testing"
	"time"

	"github.com/charconstpointer/dlock/internal/leaktest"
)

// TestMain fails the package when a goroutine outlives the tests. A
// Redlock's node workers exit 50ms after their last call, and a release
// sent after Release returned (to a node that had not answered yet, or once
// more after a call whose outcome was unknown) ends within a node timeout;
// so leaks are looked for until none remain or 10 seconds have passed.
func TestMain(m *testing.M) { leaktest.VerifyTestMain(m, 10*time.Second) }
