//go:build unix

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// common holds the flags that run and status share.
type common struct {
	nodes    string
	prefix   string
	logLevel slog.Level
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.nodes, "nodes", "",
		"comma-separated node `URLs`: redis://[user:password@]host:port[/db] or rediss:// (TLS); "+
			"postgres://[user:password@]host:port/db[?sslmode=...] (a libpq URL, also postgresql://); "+
			"etcd://[user:password@]host:port[,host:port...] (one etcd cluster) or etcds:// (TLS); "+
			"independent stores, a majority must agree")
	fs.StringVar(&c.prefix, "prefix", "", "`prefix` prepended to KEY on the nodes (as dlock.WithKeyPrefix)")
	fs.TextVar(&c.logLevel, "log-level", slog.LevelWarn,
		"`level` of the messages dlock writes to stderr: debug, info, warn or error")
}

// nodeList returns the node URLs from --nodes, else DLOCK_NODES.
func (c *common) nodeList(getenv func(string) string) (string, error) {
	list := strings.TrimSpace(c.nodes)
	if list == "" {
		list = strings.TrimSpace(getenv("DLOCK_NODES"))
	}
	if list == "" {
		return "", errors.New("no nodes: set --nodes or DLOCK_NODES")
	}
	return list, nil
}

// shownDefaults are the defaults --help shows where the flag's own default
// value would mislead.
var shownDefaults = map[string]string{
	"nodes": "$DLOCK_NODES",
	"wait":  "forever: until acquired",
}

// waitFlag is the value of --wait: unset means wait until acquired.
type waitFlag struct {
	d   time.Duration
	set bool
}

// String implements flag.Value.
func (w *waitFlag) String() string {
	if w == nil || !w.set {
		return "forever"
	}
	return w.d.String()
}

// Set implements flag.Value.
func (w *waitFlag) Set(s string) error {
	if s == "forever" {
		*w = waitFlag{}
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf(`want a duration such as 30s, 0 or "forever"`)
	}
	if d < 0 {
		return fmt.Errorf(`must be ≥ 0 (or "forever")`)
	}
	*w = waitFlag{d: d, set: true}
	return nil
}

// newFlagSet returns a flag set that reports errors to its caller instead of
// printing them.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("dlock "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args into fs. It returns done=true with the exit code
// when dlock must exit now: after --help (help on stdout, 0) or on a bad
// flag (the reason and the usage on stderr, 64).
func parseFlags(fs *flag.FlagSet, args []string, help string, stdout, stderr io.Writer) (code int, done bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, help)
		printFlags(stdout, fs)
		return exitOK, true
	}
	return usageError(fs, stderr, "%v", err), true
}

// usageError prints a one-line reason and the command's usage to stderr and
// returns exitUsage.
func usageError(fs *flag.FlagSet, stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fmt.Fprintf(stderr, "usage: %s\nRun \"%s --help\" for the flags.\n", synopsis[fs.Name()], fs.Name())
	return exitUsage
}

var synopsis = map[string]string{
	"dlock run":    "dlock run [flags] KEY -- COMMAND [ARGS...]",
	"dlock status": "dlock status [flags] KEY",
}

// printFlags lists every flag of fs with its default.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "\nFlags (--flag value or --flag=value):")
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		def, ok := shownDefaults[f.Name]
		if !ok {
			def = f.DefValue
			if def == "" {
				def = `""`
			}
		}
		if name != "" {
			name = " " + name
		}
		fmt.Fprintf(w, "  --%s%s\n    \t%s (default %s)\n", f.Name, name, usage, def)
	})
}
