// Package watch keeps the recent history of store events and lets any number
// of watchers read it from a revision of their choice, in revision order,
// each event exactly once.
//
// The FSM goroutine calls Publish after each applied batch (events are
// published only after commit), Compact after a compaction and Reset after a
// snapshot restore. Watchers pull: Next blocks until there is something past
// the watcher's cursor. Publish never waits for a watcher; a watcher that
// falls behind the kept history gets a CompactedError and must start over,
// as a Kubernetes client does on 410 Gone.
//
//	hub := watch.New(10000)
//	w, err := hub.Watch("/registry/pods/", rev) // events after rev
//	for { events, rev, err := w.Next(ctx) ... }
package watch

import (
	"context"
	"sort"
	"strings"
	"sync"

	"github.com/skiff-sh/skiff/raftstore/internal/mvcc"
)

// MaxBatch is the most events Next returns at once, unless one revision alone
// has more (a revision is never split).
const MaxBatch = 1000

// Hub is the event history. Its methods are safe for concurrent use; Publish,
// Compact and Reset must come from one goroutine, in log order.
type Hub struct {
	max int

	mu sync.Mutex
	// events are ascending by ModRevision; events[i] for i >= start are kept.
	events []mvcc.Event
	start  int
	// floor is the revision after which the history is complete: every event
	// with a revision greater than floor is kept.
	floor int64
	// rev is the last published revision.
	rev int64
	// wake is closed and replaced whenever rev moves.
	wake chan struct{}
}

// New returns a hub that keeps about the last max events (max >= 1): when it
// drops events it drops whole revisions.
func New(max int) *Hub {
	return &Hub{max: max, wake: make(chan struct{})}
}

// Publish records the events of revisions up to rev and wakes watchers.
// events must all have revisions after the previous Publish and at most rev.
func (h *Hub) Publish(rev int64, events []mvcc.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, events...)
	if n := len(h.events) - h.start; n > h.max {
		h.dropTo(h.events[h.start+n-h.max-1].KV.ModRevision)
	}
	h.rev = rev
	close(h.wake)
	h.wake = make(chan struct{})
}

// dropTo forgets the events at and below rev (but never splits a revision:
// rev must be the revision of a kept event or below all of them).
func (h *Hub) dropTo(rev int64) {
	i := h.start + sort.Search(len(h.events)-h.start, func(i int) bool {
		return h.events[h.start+i].KV.ModRevision > rev
	})
	clear(h.events[h.start:i])
	h.start = i
	if rev > h.floor {
		h.floor = rev
	}
	// Reclaim the dropped prefix once it is most of the slice.
	if h.start > len(h.events)/2 && h.start > 1024 {
		h.events = append([]mvcc.Event(nil), h.events[h.start:]...)
		h.start = 0
	}
}

// Compact forgets the events at and below rev.
func (h *Hub) Compact(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropTo(rev)
}

// Reset forgets all history after the state was replaced by a snapshot at
// rev. Watchers that had not seen everything up to rev fail with a
// CompactedError; the others carry on.
func (h *Hub) Reset(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.events)
	h.events, h.start = nil, 0
	h.floor, h.rev = rev, rev
	close(h.wake)
	h.wake = make(chan struct{})
}

// Rev returns the last published revision.
func (h *Hub) Rev() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// Watcher reads the events of keys with one prefix, from a cursor on.
// A Watcher is not safe for concurrent use.
type Watcher struct {
	hub    *Hub
	prefix string
	cursor int64
}

// Watch returns a watcher of the keys starting with prefix that will see
// every event with a revision greater than from; from 0 means from the
// current revision on. It fails with a CompactedError when events after from
// are no longer kept.
func (h *Hub) Watch(prefix string, from int64) (*Watcher, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if from == 0 {
		from = h.rev
	}
	if from < h.floor {
		return nil, &mvcc.CompactedError{Requested: from, Compacted: h.floor}
	}
	return &Watcher{hub: h, prefix: prefix, cursor: from}, nil
}

// Next returns the next events of the watcher's keys, in revision order, and
// the revision the watcher has now seen everything up to. It blocks until
// there is at least one event or ctx is done. A revision's events are never
// split across calls.
func (w *Watcher) Next(ctx context.Context) ([]mvcc.Event, int64, error) {
	for {
		events, wake, err := w.poll()
		if err != nil || len(events) > 0 {
			return events, w.cursor, err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, w.cursor, ctx.Err()
		}
	}
}

// Rev returns the revision the watcher has seen everything up to.
func (w *Watcher) Rev() int64 { return w.cursor }

func (w *Watcher) poll() ([]mvcc.Event, <-chan struct{}, error) {
	h := w.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.cursor < h.floor {
		return nil, nil, &mvcc.CompactedError{Requested: w.cursor, Compacted: h.floor}
	}
	kept := h.events[h.start:]
	i := sort.Search(len(kept), func(i int) bool { return kept[i].KV.ModRevision > w.cursor })
	var out []mvcc.Event
	for ; i < len(kept); i++ {
		ev := &kept[i]
		// Stop at a revision boundary once the batch is full.
		if len(out) >= MaxBatch && ev.KV.ModRevision != kept[i-1].KV.ModRevision {
			w.cursor = kept[i-1].KV.ModRevision
			return out, nil, nil
		}
		if strings.HasPrefix(ev.KV.Key, w.prefix) {
			out = append(out, *ev)
		}
	}
	if h.rev > w.cursor {
		w.cursor = h.rev
	}
	return out, h.wake, nil
}
