package etcd_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A Redlock of one etcd node: the lock is as safe as the etcd cluster. The
// example runs against the server in DLOCK_ETCD_ENDPOINTS (TestExample runs
// it when that is set); it has no checked output, because it needs a server.
func ExampleNewNode() {
	eps := os.Getenv("DLOCK_ETCD_ENDPOINTS") // e.g. http://127.0.0.1:2379
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(eps, ","),
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()

	r, err := dlock.New([]dlock.Node{etcd.NewNode(cli)})
	if err != nil {
		log.Fatal(err)
	}
	// etcd leases are whole seconds: TTLs are rounded up, never down.
	l, err := r.LockContext(context.Background(), "reports/daily", "",
		dlock.WithTTL(10*time.Second), dlock.WithRefreshInterval(3*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Release()

	if l.Held() { // check right before touching the resource
		fmt.Println("holding", l.Key())
	}
}

// TestExample runs ExampleNewNode against the shared test server.
func TestExample(t *testing.T) {
	endpoints(t)
	ExampleNewNode()
}
