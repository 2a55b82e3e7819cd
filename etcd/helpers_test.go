package etcd_test

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/charconstpointer/dlock/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// endpoints returns the etcd endpoints of the shared test server, from
// DLOCK_ETCD_ENDPOINTS (comma-separated URLs). Without them the test is
// skipped, or fails when DLOCK_REQUIRE_ETCD=1 (make test sets both).
func endpoints(t testing.TB) []string {
	t.Helper()
	s := strings.TrimSpace(os.Getenv("DLOCK_ETCD_ENDPOINTS"))
	if s == "" {
		if os.Getenv("DLOCK_REQUIRE_ETCD") == "1" {
			t.Fatal("DLOCK_REQUIRE_ETCD=1 but DLOCK_ETCD_ENDPOINTS is empty: no etcd server to test against")
		}
		t.Skip("DLOCK_ETCD_ENDPOINTS is not set; start a server with scripts/etcd.sh start DIR and export DLOCK_ETCD_ENDPOINTS=$(cat DIR/endpoints)")
	}
	return strings.Split(s, ",")
}

// newClient returns a client of eps, closed when the test ends.
func newClient(t testing.TB, eps []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   eps,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("clientv3.New(%v): %v", eps, err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// testPrefix returns a node prefix no other test run uses, so that runs
// sharing a server never meet.
func testPrefix() string {
	return "dlocktest-etcd/" + randomHex() + "/"
}

func randomHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newNode returns a Node with a prefix of its own over the shared server,
// its client, and the prefix.
func newNode(t testing.TB) (*etcd.Node, *clientv3.Client, string) {
	t.Helper()
	cli := newClient(t, endpoints(t))
	p := testPrefix()
	return etcd.NewNode(cli, etcd.WithPrefix(p)), cli, p
}
