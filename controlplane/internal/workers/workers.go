// Package workers runs a controller's workers over its work queue, the
// loop every leader controller shares: take a key, sync it, retry a
// failure with the queue's back-off, forget a success (and queue it again
// when the sync asks to be called back), until the controller stops.
//
//	queue := workqueue.NewTypedRateLimitingQueue(...)
//	// informers feed the queue, caches synced...
//	workers.Run(ctx, queue, 4, log, "replicaset", r.sync) // until ctx ends
package workers

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"
)

// Sync handles one key. A positive after asks for the key again then (a
// deadline, a back-off the controller keeps itself); an error retries it
// with the queue's rate limit.
type Sync[T comparable] func(ctx context.Context, key T) (after time.Duration, err error)

// Run runs n workers over q until ctx ends; then it shuts q down and
// returns once every worker has finished its key. A failed sync is logged
// at debug level as "<what> sync failed" and retried, unless ctx ended (the
// failure is then the stop's).
func Run[T comparable](ctx context.Context, q workqueue.TypedRateLimitingInterface[T], n int, log *slog.Logger, what string, syncKey Sync[T]) {
	var wg sync.WaitGroup
	for range max(n, 1) {
		wg.Go(func() {
			for next(ctx, q, log, what, syncKey) {
			}
		})
	}
	<-ctx.Done()
	q.ShutDown()
	wg.Wait()
}

// next syncs one key; it returns false once q shuts down.
func next[T comparable](ctx context.Context, q workqueue.TypedRateLimitingInterface[T], log *slog.Logger, what string, sync Sync[T]) bool {
	key, shutdown := q.Get()
	if shutdown {
		return false
	}
	defer q.Done(key)
	after, err := sync(ctx, key)
	switch {
	case err != nil && ctx.Err() == nil:
		log.Debug(what+" sync failed", "key", key, "err", err)
		q.AddRateLimited(key)
	case err == nil:
		q.Forget(key)
		if after > 0 {
			q.AddAfter(key, after)
		}
	}
	return true
}

// Once adapts a sync that never asks to be called back.
func Once[T comparable](sync func(ctx context.Context, key T) error) Sync[T] {
	return func(ctx context.Context, key T) (time.Duration, error) { return 0, sync(ctx, key) }
}

// NewQueue returns a controller's work queue: a failed key waits base,
// doubling up to max, before its next try.
func NewQueue(base, max time.Duration) workqueue.TypedRateLimitingInterface[string] {
	return workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](base, max))
}
