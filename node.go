package dlock

import (
	"context"
	"time"
)

// Node is one independent store that holds a lock's key, the seam between
// the Redlock algorithm and a backend. RedisNode adapts a go-redis client;
// the simulation and tests provide their own.
//
// Implementations must be safe for concurrent use and should return
// promptly once ctx is done. ok=false means the key is held by another value
// (or, for Extend and Release, is no longer held by this value); it is not
// an error. An error means the outcome on the node is unknown.
type Node interface {
	// Acquire sets key to value with the given time to live, only if key is
	// not set.
	Acquire(ctx context.Context, key, value string, ttl time.Duration) (ok bool, err error)
	// Extend resets the time to live of key to ttl, only if key holds value.
	Extend(ctx context.Context, key, value string, ttl time.Duration) (ok bool, err error)
	// Release deletes key, only if it holds value.
	Release(ctx context.Context, key, value string) (ok bool, err error)
}
