package dlocktest_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/dlocktest"
)

// A Redlock of three in-memory nodes, for unit tests of code that takes a
// lock: no server to run.
func ExampleNewMemoryNode() {
	nodes := []*dlocktest.MemoryNode{
		dlocktest.NewMemoryNode(nil),
		dlocktest.NewMemoryNode(nil),
		dlocktest.NewMemoryNode(nil),
	}
	locker, err := dlock.New([]dlock.Node{nodes[0], nodes[1], nodes[2]})
	if err != nil {
		log.Fatal(err)
	}

	lock, err := locker.Lock("reports:daily", "worker-1", dlock.WithTTL(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("held:", lock.Held())
	// Lock returns once a majority granted; the last node may still be
	// answering.
	holding := 0
	for _, n := range nodes {
		if v, ok := n.Get("reports:daily"); ok && v == lock.Value() {
			holding++
		}
	}
	fmt.Println("held on a majority of nodes:", holding >= locker.Quorum())

	_, err = locker.TryLock(context.Background(), "reports:daily", "worker-2")
	fmt.Println("worker-2 refused:", errors.Is(err, dlock.ErrNotAcquired))

	if err := lock.Release(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("held after release:", lock.Held())
	// Output:
	// held: true
	// held on a majority of nodes: true
	// worker-2 refused: true
	// held after release: false
}

// A node that is down fails its calls; a Redlock of three still locks with
// the other two.
func ExampleMemoryNode_SetFault() {
	nodes := []*dlocktest.MemoryNode{
		dlocktest.NewMemoryNode(nil),
		dlocktest.NewMemoryNode(nil),
		dlocktest.NewMemoryNode(nil),
	}
	nodes[2].SetFault(errors.New("connection refused"))
	locker, err := dlock.New([]dlock.Node{nodes[0], nodes[1], nodes[2]})
	if err != nil {
		log.Fatal(err)
	}

	lock, err := locker.TryLock(context.Background(), "jobs:42", "")
	if err != nil {
		log.Fatal(err)
	}
	defer lock.Release()
	fmt.Println("held with one node down:", lock.Held())
	fmt.Println("keys on the down node:", nodes[2].Keys())
	// Output:
	// held with one node down: true
	// keys on the down node: []
}
