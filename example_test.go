package dlock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/dlocktest"
)

// exampleRedis starts n in-process Redis servers (miniredis) and returns a
// client for each, and a function that closes them all. In production each
// client points at an independent Redis master.
func exampleRedis(n int) ([]redis.UniversalClient, func()) {
	var (
		clients []redis.UniversalClient
		servers []*miniredis.Miniredis
	)
	for range n {
		s, err := miniredis.Run()
		if err != nil {
			log.Fatal(err)
		}
		servers = append(servers, s)
		// ContextTimeoutEnabled lets a call to a hung node end at dlock's
		// node timeout instead of the client's ReadTimeout.
		clients = append(clients, redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true}))
	}
	return clients, func() {
		for _, c := range clients {
			c.Close()
		}
		for _, s := range servers {
			s.Close()
		}
	}
}

func ExampleRedlock_Lock() {
	clients, closeAll := exampleRedis(3)
	defer closeAll()

	locker, err := dlock.New(dlock.RedisNodes(clients...))
	if err != nil {
		log.Fatal(err)
	}

	lock, err := locker.Lock("invoices:2024-06", "worker-1",
		dlock.WithTTL(30*time.Second), dlock.WithRetryLimit(10))
	if err != nil {
		log.Fatal(err)
	}
	defer lock.Release()

	// What is stored on the nodes begins with the given value and is unique
	// to the attempt that took the lock.
	fmt.Printf("%s is locked on %d nodes (quorum %d); stored by worker-1: %t\n",
		lock.Key(), len(clients), locker.Quorum(), strings.HasPrefix(lock.Value(), "worker-1."))
	// Output: invoices:2024-06 is locked on 3 nodes (quorum 2); stored by worker-1: true
}

func ExampleRedlock_LockContext() {
	clients, closeAll := exampleRedis(3)
	defer closeAll()

	locker, err := dlock.New(dlock.RedisNodes(clients...), dlock.WithKeyPrefix("myapp:"),
		dlock.WithNodeTimeout(100*time.Millisecond)) // in-process test servers: allow a slow CI machine
	if err != nil {
		log.Fatal(err)
	}

	// The job may take longer than the TTL: the lock refreshes itself every
	// RefreshInterval until it is released, and Lost closes if it cannot.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lock, err := locker.LockContext(ctx, "nightly-report", "",
		dlock.WithTTL(500*time.Millisecond), dlock.WithRefreshInterval(100*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer lock.Release()

	steps := time.NewTicker(250 * time.Millisecond)
	defer steps.Stop()
	for step := 1; step <= 3; step++ { // 750ms of work, longer than the TTL
		select {
		case <-lock.Lost():
			fmt.Println("lock lost: stop working")
			return
		case <-ctx.Done():
			fmt.Println("cancelled:", ctx.Err())
			return
		case <-steps.C:
		}
		// Both channels may be ready after a pause; select picks either.
		// Check Held right before each use of the resource.
		if !lock.Held() {
			fmt.Println("lock lost:", lock.Err())
			return
		}
		fmt.Println("step", step, "done")
	}

	if err := lock.Release(); err != nil {
		log.Fatal(err)
	}
	<-lock.Lost() // closed by Release too
	fmt.Println("released")
	// Output:
	// step 1 done
	// step 2 done
	// step 3 done
	// released
}

func ExampleRedlock_TryLock() {
	clients, closeAll := exampleRedis(3)
	defer closeAll()

	locker, err := dlock.New(dlock.RedisNodes(clients...))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	holder, err := locker.TryLock(ctx, "printer", "alice")
	if err != nil {
		log.Fatal(err)
	}
	defer holder.Release()

	// One attempt, no retries: the key is held by alice.
	_, err = locker.TryLock(ctx, "printer", "bob")
	fmt.Println("bob got the lock:", err == nil)
	fmt.Println("busy:", errors.Is(err, dlock.ErrNotAcquired))
	// Output:
	// bob got the lock: false
	// busy: true
}

func ExampleNew() {
	clients, closeAll := exampleRedis(5)
	defer closeAll()

	// A bad option is reported by New, naming the field and the value,
	// before any node is contacted.
	_, err := dlock.New(dlock.RedisNodes(clients...),
		dlock.WithDefaults(dlock.WithTTL(10*time.Second), dlock.WithRefreshInterval(time.Minute)))
	fmt.Println(errors.Is(err, dlock.ErrInvalidConfig))
	fmt.Println(err)

	_, err = dlock.New(nil)
	fmt.Println(err)

	locker, err := dlock.New(dlock.RedisNodes(clients...), dlock.WithNodeTimeout(50*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("quorum:", locker.Quorum())
	// Output:
	// true
	// defaults: dlock: invalid config: RefreshInterval = 1m0s: must be < TTL minus the drift allowance (9.898s), or the lock expires before its first refresh
	// dlock: invalid config: nodes = []: need at least one node
	// quorum: 3
}

// fencedStore is a resource that checks fencing tokens: it remembers the
// largest token it accepted and refuses smaller ones.
type fencedStore struct {
	mu      sync.Mutex
	largest uint64
	data    []string
}

func (s *fencedStore) Write(token uint64, data string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token < s.largest {
		return fmt.Errorf("refused: token %d is older than %d", token, s.largest)
	}
	s.largest = token
	s.data = append(s.data, data)
	return nil
}

func ExampleLock_Token() {
	// Three in-memory nodes, and locks that live 100ms.
	var nodes []dlock.Node
	for range 3 {
		nodes = append(nodes, dlocktest.NewMemoryNode(nil))
	}
	locker, err := dlock.New(nodes,
		dlock.WithDefaults(dlock.WithFencing(), dlock.WithTTL(100*time.Millisecond)))
	if err != nil {
		log.Fatal(err)
	}
	store := &fencedStore{}

	a, err := locker.Lock("report", "a")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("a holds the lock:", a.Held())
	// a checked Held, then paused (a GC, a stopped VM) past its validity.
	time.Sleep(150 * time.Millisecond)

	b, err := locker.Lock("report", "b")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("b writes:", store.Write(b.Token(), "from b"))
	// a resumes and writes with its token, older than b's: refused.
	fmt.Println("a writes:", store.Write(a.Token(), "from a"))
	fmt.Println("stored:", store.data)
	_ = b.Release()
	// Output:
	// a holds the lock: true
	// b writes: <nil>
	// a writes: refused: token 1 is older than 2
	// stored: [from b]
}
