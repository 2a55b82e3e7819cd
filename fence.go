package dlock

import (
	"context"
	"fmt"
)

// fence takes the fencing token of an attempt whose acquire round t won.
//
// Each node that granted the attempt advanced the key's counter and
// returned it. The token is the largest of those counters. The granted
// nodes whose counter already equals it need nothing more; when they are a
// majority (the common case: nodes that saw the same history agree), the
// token is taken in the acquire round alone. Otherwise a second round
// raises the counter to the token on the other granted nodes, where the
// attempt's value still holds the key, and the token is taken once a
// majority holds it. The package documentation gives the argument that
// tokens so taken only grow.
func (r *Redlock) fence(ctx context.Context, key, value string, p params, ln lanes, t *tally) (uint64, error) {
	var token uint64
	for i, rep := range t.replies {
		if t.seen[i] && rep.ok && rep.counter > token {
			token = rep.counter
		}
	}
	if token == 0 {
		return 0, t.join(fmt.Errorf("%w: %s: fencing: the granting nodes returned no counter", ErrNotAcquired, quoteKey(key)))
	}
	n := len(r.nodes)
	at, need := make([]bool, n), make([]bool, n)
	count := 0
	for i, rep := range t.replies {
		switch {
		case !t.seen[i] || !rep.ok:
		case rep.counter == token:
			at[i] = true
			count++
		default:
			need[i] = true
		}
	}
	if count >= r.quorum {
		return token, nil
	}
	ft, _ := r.fanout(ctx, round{
		lanes:   ln,
		only:    need,
		preset:  at,
		callCtx: ctx,
		decide:  p.nodeTimeout,
		budget:  p.nodeTimeout,
		op:      opFence,
		key:     p.nodeKey,
		value:   value,
		ext:     true,
		token:   token,
	})
	if ft.ctxErr != nil {
		return 0, ft.join(notAcquiredCtx(key, ft.ctxErr))
	}
	if !ft.won() {
		return 0, ft.join(fmt.Errorf("%w: %s: fencing: token %d held by %d of %d nodes, fewer than the quorum %d",
			ErrNotAcquired, quoteKey(key), token, ft.ok, n, r.quorum))
	}
	return token, nil
}
