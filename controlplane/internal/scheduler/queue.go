package scheduler

import (
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"
)

// queue holds the pods waiting to be scheduled, by key: the active ones in
// a FIFO (client-go's workqueue, which also defers a retry until its
// back-off ends), and the unschedulable ones aside until a cluster event
// might let them fit (moveAll) — as kube-scheduler's queue does. A move
// that happens while a pod is being tried is remembered, so the pod does
// not miss it and wait for the next one.
type queue struct {
	q                   workqueue.TypedDelayingInterface[string]
	backoff, maxBackoff time.Duration
	now                 func() time.Time

	mu       sync.Mutex
	unsched  map[string]bool
	attempts map[string]attempt
	moves    uint64 // moveAll calls so far
}

type attempt struct {
	n    int
	last time.Time
}

func newQueue(backoff, maxBackoff time.Duration) *queue {
	return &queue{
		q:       workqueue.NewTypedDelayingQueueWithConfig(workqueue.TypedDelayingQueueConfig[string]{Name: ""}),
		backoff: backoff, maxBackoff: maxBackoff, now: time.Now,
		unsched: map[string]bool{}, attempts: map[string]attempt{},
	}
}

// add makes key active now (a new pod, or a pending pod that changed).
func (q *queue) add(key string) {
	q.mu.Lock()
	delete(q.unsched, key)
	q.mu.Unlock()
	q.q.Add(key)
}

// isUnschedulable reports whether key waits for a cluster event.
func (q *queue) isUnschedulable(key string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.unsched[key]
}

// pop blocks for the next active key; it returns the move count to hand
// back to unschedulable, and shutdown when the queue is shut down.
func (q *queue) pop() (key string, moves uint64, shutdown bool) {
	key, shutdown = q.q.Get()
	q.mu.Lock()
	moves = q.moves
	q.mu.Unlock()
	return key, moves, shutdown
}

// done ends the processing of a popped key.
func (q *queue) done(key string) { q.q.Done(key) }

// forget drops key: the pod is gone, bound, or not this scheduler's.
func (q *queue) forget(key string) {
	q.mu.Lock()
	delete(q.unsched, key)
	delete(q.attempts, key)
	q.mu.Unlock()
}

// unschedulable sets key aside after a failed attempt that began at move
// count moves; when a move happened since, the pod is retried after its
// back-off instead.
func (q *queue) unschedulable(key string, moves uint64) {
	q.mu.Lock()
	q.recordAttemptLocked(key)
	if q.moves == moves {
		q.unsched[key] = true
		q.mu.Unlock()
		return
	}
	d := q.backoffLocked(key)
	q.mu.Unlock()
	q.q.AddAfter(key, d)
}

// retry tries key again after its back-off (a failed binding).
func (q *queue) retry(key string) {
	q.mu.Lock()
	q.recordAttemptLocked(key)
	d := q.backoffLocked(key)
	q.mu.Unlock()
	q.q.AddAfter(key, d)
}

// moveAll makes every unschedulable pod active again, each once its
// back-off has passed: something changed that may let it fit.
func (q *queue) moveAll() {
	q.mu.Lock()
	q.moves++
	keys := make(map[string]time.Duration, len(q.unsched))
	for key := range q.unsched {
		keys[key] = q.backoffLocked(key)
	}
	clear(q.unsched)
	q.mu.Unlock()
	for key, d := range keys {
		q.q.AddAfter(key, d)
	}
}

func (q *queue) recordAttemptLocked(key string) {
	a := q.attempts[key]
	q.attempts[key] = attempt{n: a.n + 1, last: q.now()}
}

// backoffLocked is what remains of key's back-off: 1, 2, 4... times the
// base after its last failed attempt, at most the maximum.
func (q *queue) backoffLocked(key string) time.Duration {
	a, ok := q.attempts[key]
	if !ok {
		return 0
	}
	d := q.backoff
	for i := 1; i < a.n && d < q.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, q.maxBackoff)
	return max(0, d-q.now().Sub(a.last))
}

// shutdown ends pop.
func (q *queue) shutdown() { q.q.ShutDown() }
