package etcd_test

import (
	"testing"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/dlocktest"
	"github.com/charconstpointer/dlock/etcd"
)

// TestConformance runs dlocktest's conformance suite on a real etcd server.
func TestConformance(t *testing.T) {
	eps := endpoints(t)
	prefix := testPrefix()
	dlocktest.TestNode(t, func(t *testing.T) dlock.Node {
		return etcd.NewNode(newClient(t, eps), etcd.WithPrefix(prefix))
	})
}
