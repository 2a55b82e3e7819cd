//go:build unix

package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/charconstpointer/dlock"
)

const statusHelp = `dlock status shows what each node holds for KEY.

usage: dlock status [flags] KEY

For each node: whether KEY is held, a short prefix of its value, the TTL it
has left by the node's clock, and its fencing counter where it has one. The
table goes to stdout.

Exit codes:
  0   a majority of the nodes hold KEY with one value
  1   they do not, and every node answered
  2   they do not, and a node failed: the answer is unknown
  64  bad usage
`

// valuePrefixLen is how much of a value status shows: enough to tell
// holders apart, never the whole value.
const valuePrefixLen = 8

// cmdStatus implements `dlock status` and returns its exit code.
func cmdStatus(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status")
	var c common
	c.register(fs)
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for each node's answer")
	if code, done := parseFlags(fs, args, statusHelp, stdout, stderr); done {
		return code
	}
	rest := fs.Args()
	switch {
	case len(rest) == 0:
		return usageError(fs, stderr, "missing KEY")
	case len(rest) > 1:
		return usageError(fs, stderr, "expected one KEY, got %d arguments (flags go before KEY)", len(rest))
	case rest[0] == "":
		return usageError(fs, stderr, "KEY must not be empty")
	case *timeout <= 0:
		return usageError(fs, stderr, "--timeout %v: must be > 0", *timeout)
	}
	key := rest[0]
	list, err := c.nodeList(getenv)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	log := newLogger(stderr, c.logLevel)
	nodes, err := openNodes(context.Background(), list)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer closeNodes(nodes)

	states := make([]dlock.KeyState, len(nodes))
	errs := make([]error, len(nodes))
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			in, ok := n.Node.(dlock.Inspector)
			if !ok {
				errs[i] = fmt.Errorf("this node type (%T) cannot report what it holds (no dlock.Inspector)", n.Node)
				return
			}
			states[i], errs[i] = in.Inspect(ctx, c.prefix+key)
		})
	}
	wg.Wait()

	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tHELD\tVALUE\tTTL\tFENCING")
	holders := map[string]int{}
	failed := 0
	for i, n := range nodes {
		st, err := states[i], errs[i]
		if err != nil {
			failed++
			log.Debug("node failed", "node", n.label, "err", err)
			fmt.Fprintf(tw, "%s\terror: %s\n", n.label, firstLine(err))
			continue
		}
		fence := "-"
		if st.HasCounter {
			fence = strconv.FormatUint(st.Counter, 10)
		}
		if !st.Held {
			fmt.Fprintf(tw, "%s\tno\t-\t-\t%s\n", n.label, fence)
			continue
		}
		holders[st.Value]++
		fmt.Fprintf(tw, "%s\tyes\t%s\t%s\t%s\n", n.label, valuePrefix(st.Value), st.TTL.Round(time.Millisecond), fence)
	}
	_ = tw.Flush()

	most := 0
	for _, c := range holders {
		most = max(most, c)
	}
	quorum := len(nodes)/2 + 1
	counts := fmt.Sprintf("%d of %d nodes hold %q with one value (quorum %d)", most, len(nodes), key, quorum)
	if len(holders) > 1 {
		counts += fmt.Sprintf("; %d different values", len(holders))
	}
	switch {
	case most >= quorum:
		fmt.Fprintf(stdout, "held: %s\n", counts)
		return exitOK
	case failed > 0:
		fmt.Fprintf(stdout, "unknown: %s; %d failed\n", counts, failed)
		return exitUnknown
	}
	fmt.Fprintf(stdout, "not held: %s\n", counts)
	return exitNotHeld
}

// valuePrefix returns the start of a lock value: at most valuePrefixLen
// bytes, and at most half of it, so that a short value is never shown whole.
func valuePrefix(v string) string {
	n := min(valuePrefixLen, len(v)/2)
	return v[:n] + "…"
}
