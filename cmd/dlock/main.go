//go:build unix

package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
)

// Exit codes. 64 and 75 are sysexits.h's EX_USAGE and EX_TEMPFAIL; 126 and
// 127 follow the shell.
const (
	exitOK          = 0
	exitNotHeld     = 1   // status: a majority does not hold the key
	exitUnknown     = 2   // status: not held on a majority, and a node failed
	exitUsage       = 64  // bad usage or invalid settings
	exitSoftware    = 70  // an internal failure (EX_SOFTWARE)
	exitNotAcquired = 75  // run: not acquired within --wait
	exitLost        = 76  // run: the lock was lost while the child ran
	exitCannotRun   = 126 // run: the command could not be started
	exitNotFound    = 127 // run: the command was not found
)

const topUsage = `usage: dlock run [flags] KEY -- COMMAND [ARGS...]
       dlock status [flags] KEY
       dlock --version

Run "dlock run --help" or "dlock status --help" for the flags and exit codes.
`

func main() {
	os.Exit(dispatch(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// dispatch runs the command line args and returns the exit code.
func dispatch(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "dlock: missing command (run or status)")
		fmt.Fprint(stderr, topUsage)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], getenv, stdout, stderr)
	case "status":
		return cmdStatus(args[1:], getenv, stdout, stderr)
	case "--version", "-version", "version":
		fmt.Fprintf(stdout, "dlock %s (%s)\n", version(), runtime.Version())
		return exitOK
	case "--help", "-help", "-h", "help":
		fmt.Fprint(stdout, "dlock runs a command under a distributed lock.\n\n"+topUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "dlock: unknown command %q (want run or status)\n", args[0])
	fmt.Fprint(stderr, topUsage)
	return exitUsage
}

// version returns the module version the binary was built from:
// "v1.2.3" for `go install ...@v1.2.3`, "(devel)" for a local build.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
