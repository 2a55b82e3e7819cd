package redistest

import (
	"slices"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestAddrs(t *testing.T) {
	t.Setenv(EnvAddrs, " 127.0.0.1:1, ,127.0.0.1:2,")
	if got, want := Addrs(t), []string{"127.0.0.1:1", "127.0.0.1:2"}; !slices.Equal(got, want) {
		t.Fatalf("Addrs = %q, want %q", got, want)
	}
}

// TestClients runs on miniredis, not on the shared nodes of make test:
// FLUSHALL there would wipe keys of other packages' tests running meanwhile.
func TestClients(t *testing.T) {
	addrs := []string{miniredis.RunT(t).Addr(), miniredis.RunT(t).Addr()}
	clients := Clients(t, addrs)
	if got, want := len(clients), len(addrs); got != want {
		t.Fatalf("len(Clients) = %d, want %d", got, want)
	}
	for i, c := range clients {
		if err := c.Set(t.Context(), "redistest", i, 0).Err(); err != nil {
			t.Fatalf("node %d: SET: %v", i, err)
		}
	}
	// A second call empties the nodes again.
	for i, c := range Clients(t, addrs) {
		n, err := c.DBSize(t.Context()).Result()
		if err != nil {
			t.Fatalf("node %d: DBSIZE: %v", i, err)
		}
		if n != 0 {
			t.Errorf("node %d: DBSIZE = %d after Clients, want 0", i, n)
		}
	}
}
