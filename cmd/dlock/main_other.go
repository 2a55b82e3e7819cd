//go:build !unix

package main

import (
	"fmt"
	"os"
)

// dlock needs process groups and POSIX signals to stop a command when its
// lock is lost; it does not run elsewhere.
func main() {
	fmt.Fprintln(os.Stderr, "dlock: this platform is not supported (dlock needs Unix process groups and signals)")
	os.Exit(70)
}
