//go:build unix

package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/charconstpointer/dlock"
)

// fullNode is a Node with every capability dlock uses: the PostgreSQL and
// etcd nodes have them all.
type fullNode interface {
	dlock.Fencer
	dlock.Inspector
	dlock.TTLGranularity
}

// lazyNode is a node whose setup needs the server (postgres.NewNode creates
// its table; an etcd client with a user authenticates when created). The
// setup runs on the node's first call, with that call's context, and again
// on the next call when it failed: a node that is down when dlock starts is
// a failed node, as an unreachable Redis node is, not a usage error.
type lazyNode struct {
	sem  chan struct{} // one setup at a time
	n    atomic.Pointer[fullNode]
	gran time.Duration // the node's TTLGranularity, known before setup
	init func(ctx context.Context) (fullNode, error)
}

var (
	_ dlock.Fencer         = (*lazyNode)(nil)
	_ dlock.Inspector      = (*lazyNode)(nil)
	_ dlock.TTLGranularity = (*lazyNode)(nil)
)

func newLazyNode(gran time.Duration, init func(ctx context.Context) (fullNode, error)) *lazyNode {
	return &lazyNode{sem: make(chan struct{}, 1), gran: gran, init: init}
}

// get returns the node, setting it up first if need be.
func (l *lazyNode) get(ctx context.Context) (fullNode, error) {
	if p := l.n.Load(); p != nil {
		return *p, nil
	}
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	defer func() { <-l.sem }()
	if p := l.n.Load(); p != nil {
		return *p, nil
	}
	n, err := l.init(ctx)
	if err != nil {
		return nil, err
	}
	l.n.Store(&n)
	return n, nil
}

// Acquire implements dlock.Node.
func (l *lazyNode) Acquire(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	n, err := l.get(ctx)
	if err != nil {
		return false, err
	}
	return n.Acquire(ctx, key, value, ttl)
}

// Extend implements dlock.Node.
func (l *lazyNode) Extend(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	n, err := l.get(ctx)
	if err != nil {
		return false, err
	}
	return n.Extend(ctx, key, value, ttl)
}

// Release implements dlock.Node.
func (l *lazyNode) Release(ctx context.Context, key, value string) (bool, error) {
	n, err := l.get(ctx)
	if err != nil {
		return false, err
	}
	return n.Release(ctx, key, value)
}

// AcquireFenced implements dlock.Fencer.
func (l *lazyNode) AcquireFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	n, err := l.get(ctx)
	if err != nil {
		return dlock.Reply{}, err
	}
	return n.AcquireFenced(ctx, req)
}

// ExtendFenced implements dlock.Fencer.
func (l *lazyNode) ExtendFenced(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	n, err := l.get(ctx)
	if err != nil {
		return dlock.Reply{}, err
	}
	return n.ExtendFenced(ctx, req)
}

// Fence implements dlock.Fencer.
func (l *lazyNode) Fence(ctx context.Context, req dlock.Request) (dlock.Reply, error) {
	n, err := l.get(ctx)
	if err != nil {
		return dlock.Reply{}, err
	}
	return n.Fence(ctx, req)
}

// Inspect implements dlock.Inspector.
func (l *lazyNode) Inspect(ctx context.Context, key string) (dlock.KeyState, error) {
	n, err := l.get(ctx)
	if err != nil {
		return dlock.KeyState{}, err
	}
	return n.Inspect(ctx, key)
}

// TTLGranularity implements dlock.TTLGranularity.
func (l *lazyNode) TTLGranularity() time.Duration { return l.gran }
