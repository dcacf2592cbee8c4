package workers

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/util/workqueue"
)

func newQueue() workqueue.TypedRateLimitingInterface[string] {
	return workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Millisecond, 10*time.Millisecond))
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRun(t *testing.T) {
	q := newQueue()
	var mu sync.Mutex
	calls := map[string]int{}
	var failing atomic.Int32
	failing.Store(2)
	sync := func(_ context.Context, key string) (time.Duration, error) {
		mu.Lock()
		calls[key]++
		n := calls[key]
		mu.Unlock()
		switch {
		case key == "flaky" && failing.Add(-1) >= 0:
			return 0, errors.New("not yet")
		case key == "again" && n == 1:
			return 5 * time.Millisecond, nil // call me back
		}
		return 0, nil
	}
	count := func(key string) int { mu.Lock(); defer mu.Unlock(); return calls[key] }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Run(ctx, q, 3, slog.New(slog.DiscardHandler), "test", sync); close(done) }()
	for _, k := range []string{"plain", "flaky", "again"} {
		q.Add(k)
	}
	waitFor(t, "the flaky key to succeed on its third try", func() bool { return count("flaky") == 3 })
	waitFor(t, "the key that asked to be called back", func() bool { return count("again") == 2 })
	if n := count("plain"); n != 1 {
		t.Errorf("plain synced %d times, want 1", n)
	}
	if q.NumRequeues("flaky") != 0 {
		t.Errorf("a key that finally synced keeps %d requeues, want it forgotten", q.NumRequeues("flaky"))
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
	if !q.ShuttingDown() {
		t.Error("the queue was not shut down")
	}
}

func TestOnce(t *testing.T) {
	want := errors.New("x")
	after, err := Once(func(context.Context, string) error { return want })(context.Background(), "k")
	if after != 0 || err != want {
		t.Errorf("got %v, %v", after, err)
	}
}
