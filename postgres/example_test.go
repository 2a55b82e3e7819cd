package postgres_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/charconstpointer/dlock"
	"github.com/charconstpointer/dlock/postgres"
	"github.com/jackc/pgx/v5/pgxpool"
)

func init() { postgres.RunExample = Example }

// Example takes a fenced lock through a Redlock of one PostgreSQL node: the
// database is the lock service. It has no Output comment, so go test
// compiles it without running it; TestExample runs it against a real server
// (make test).
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL")) // e.g. postgres://app@db:5432/app
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	// NewNode creates the lease table dlock_leases when it is missing.
	node, err := postgres.NewNode(ctx, pool)
	if err != nil {
		log.Fatal(err)
	}
	locker, err := dlock.New([]dlock.Node{node})
	if err != nil {
		log.Fatal(err)
	}

	lock, err := locker.LockContext(ctx, "reports/daily", "",
		dlock.WithTTL(30*time.Second), dlock.WithFencing())
	if err != nil {
		log.Fatal(err) // errors.Is(err, dlock.ErrNotAcquired) when another holder kept it
	}
	defer lock.Release()

	// Check Held right before touching the resource, and pass the token
	// along so that the resource can refuse a stale holder.
	if lock.Held() {
		fmt.Println("held:", lock.Key())
		_ = lock.Token()
	}
}
