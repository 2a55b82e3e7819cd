package postgres

import (
	"os"
	"strings"
	"testing"
)

// TestExample runs the package's Example against the first configured
// server and checks what it printed.
func TestExample(t *testing.T) {
	urls := serverURLs(t, 1)
	t.Setenv("DATABASE_URL", urls[0])
	out := captureStdout(t, RunExample)
	if want := "held: reports/daily\n"; out != want {
		t.Errorf("Example printed %q; want %q", out, want)
	}
}

// RunExample is Example of the external test package postgres_test, set by
// its init (test builds only).
var RunExample func()

// captureStdout runs f with os.Stdout going to a file, and returns what f
// wrote.
func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	if f == nil {
		t.Fatal("Example is not registered")
	}
	tmp, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Close()
	saved := os.Stdout
	os.Stdout = tmp
	func() {
		defer func() { os.Stdout = saved }()
		f()
	}()
	b, err := os.ReadFile(tmp.Name())
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}
