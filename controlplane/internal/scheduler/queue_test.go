package scheduler

import (
	"testing"
	"time"
)

// next pops a key, failing the test when none comes within a second.
func next(t *testing.T, q *queue) (string, uint64) {
	t.Helper()
	got := make(chan struct {
		key   string
		moves uint64
	}, 1)
	go func() {
		key, moves, _ := q.pop()
		got <- struct {
			key   string
			moves uint64
		}{key, moves}
	}()
	select {
	case g := <-got:
		return g.key, g.moves
	case <-time.After(time.Second):
		t.Fatal("no key popped within 1s")
		return "", 0
	}
}

func TestQueueUnschedulableWaitsForAMove(t *testing.T) {
	q := newQueue(time.Millisecond, 10*time.Millisecond)
	defer q.shutdown()
	q.add("ns/a")
	key, moves := next(t, q)
	q.unschedulable(key, moves)
	q.done(key)
	if !q.isUnschedulable("ns/a") || q.q.Len() != 0 {
		t.Fatalf("after a failed attempt: unschedulable %v, %d queued; want true, 0", q.isUnschedulable("ns/a"), q.q.Len())
	}
	q.moveAll()
	if key, _ := next(t, q); key != "ns/a" || q.isUnschedulable("ns/a") {
		t.Errorf("after a move: got %q (unschedulable %v), want ns/a active", key, q.isUnschedulable("ns/a"))
	}
}

func TestQueueMoveDuringAttemptIsNotLost(t *testing.T) {
	q := newQueue(time.Millisecond, 10*time.Millisecond)
	defer q.shutdown()
	q.add("ns/a")
	key, moves := next(t, q)
	q.moveAll() // a node joined while ns/a was being tried
	q.unschedulable(key, moves)
	q.done(key)
	if q.isUnschedulable("ns/a") {
		t.Error("set aside although a move happened during its attempt")
	}
	if key, _ := next(t, q); key != "ns/a" {
		t.Errorf("got %q, want ns/a retried", key)
	}
}

func TestQueueBackoff(t *testing.T) {
	q := newQueue(time.Second, 4*time.Second)
	defer q.shutdown()
	now := time.Unix(1000, 0)
	q.now = func() time.Time { return now }
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		q.mu.Lock()
		q.recordAttemptLocked("ns/a")
		got := q.backoffLocked("ns/a")
		q.mu.Unlock()
		if got != want {
			t.Errorf("after %d failures: got %v, want %v", i+1, got, want)
		}
	}
	now = now.Add(3 * time.Second)
	q.mu.Lock()
	got := q.backoffLocked("ns/a")
	q.mu.Unlock()
	if got != time.Second {
		t.Errorf("3s after the last failure: got %v, want 1s left", got)
	}
	q.forget("ns/a")
	q.mu.Lock()
	got = q.backoffLocked("ns/a")
	q.mu.Unlock()
	if got != 0 {
		t.Errorf("after forget: got %v, want 0", got)
	}
}
