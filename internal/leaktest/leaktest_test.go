package leaktest

import (
	"testing"
	"time"
)

func TestFind(t *testing.T) {
	if err := Find(0); err != nil {
		t.Fatalf("Find with no goroutine left: %v", err)
	}

	// A goroutine that ends within the wait is not reported.
	done := make(chan struct{})
	go func() {
		time.Sleep(200 * time.Millisecond)
		close(done)
	}()
	if err := Find(10 * time.Second); err != nil {
		t.Fatalf("Find with a goroutine ending after 200ms, waiting 10s: %v", err)
	}
	<-done

	// One that outlives the wait is.
	stop := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		<-stop
	}()
	start := time.Now()
	err := Find(300 * time.Millisecond)
	close(stop)
	<-exited
	if err == nil {
		t.Fatal("Find with a goroutine outliving the wait: no error")
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("Find returned its error after %v, before the wait of 300ms", d)
	}
}
