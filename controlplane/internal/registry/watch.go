package registry

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiff-sh/skiff/raftstore"
)

// watchBuffer is how many events a watch holds for a slow reader before it
// stops reading the store's history (the store keeps it for a while).
const watchBuffer = 100

// Watch streams the changes to the objects of res in ns ("" for all
// namespaces) that match opts' selectors, in revision order:
//
//   - ResourceVersion "" or "0": first an ADDED event for every matching
//     object (a linearizable list for "", the local replica for "0"), then
//     every change after the revision of that list, as kube-apiserver does.
//   - a revision N: every change after N, no initial events.
//   - SendInitialEvents true (the watch-list protocol): ADDED events for
//     every matching object of a state not older than ResourceVersion (""
//     and N: linearizable; "0": the local replica), then a BOOKMARK at that
//     state's revision annotated k8s.io/initial-events-end=true, then every
//     later change. The API server checks the protocol's other options.
//   - SendInitialEvents false: no initial events; "" and "0" start at the
//     latest (linearizable) or local revision.
//
// An object that starts matching is ADDED, one that stops matching DELETED
// (with its last matching state); DELETED events of deletes carry the last
// state. Every event's object has the resourceVersion of its change, and
// TypeMeta set. Watches are served from the local replica.
//
// With AllowBookmarks, a watch that has sent nothing for the store's
// BookmarkInterval while the store moved on sends a BOOKMARK: an empty
// object of the resource's kind carrying only the revision the watch has
// seen everything up to, so that a client resumes from there and not from
// an old revision that may be compacted by then.
//
// When N is older than the kept history, or the watch falls behind it, the
// stream sends one ERROR event whose object is a *metav1.Status 410 Expired
// "too old resource version: N (oldest)", and closes: the client re-lists.
// The stream closes when ctx ends or Stop is called; Stop returns after the
// watch's goroutine has exited.
func (s *Store) Watch(ctx context.Context, res *Resource, ns string, opts ListOptions) (watch.Interface, error) {
	if !res.Namespaced {
		ns = ""
	}
	p := prefix(res, ns)
	f := newFilter(opts)
	var (
		from       int64
		initial    []runtime.Object
		initialEnd bool
	)
	rv := opts.ResourceVersion
	sendInitial := rv == "" || rv == "0"
	if opts.SendInitialEvents != nil {
		sendInitial, initialEnd = *opts.SendInitialEvents, *opts.SendInitialEvents
	}
	switch {
	case sendInitial:
		ro := raftstore.ReadOptions{Stale: rv == "0"}
		if rv != "" && rv != "0" {
			if _, err := parseRV(rv); err != nil {
				return nil, err
			}
		}
		items, rev, _, _, err := s.list(ctx, res, p, ro, "", f, 0, expiredList)
		if err != nil {
			return nil, err
		}
		initial, from = items, rev
	case rv == "" || rv == "0":
		_, rev, err := s.kv.Get(ctx, p, raftstore.ReadOptions{Stale: rv == "0"})
		if err != nil {
			return nil, storeError(res, "", expiredList, err)
		}
		from = rev
	default:
		n, err := parseRV(rv)
		if err != nil {
			return nil, err
		}
		from = n
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{ch: make(chan watch.Event, watchBuffer), cancel: cancel, done: make(chan struct{})}
	kw, err := s.kv.Watch(ctx, p, from)
	var ce *raftstore.CompactedError
	switch {
	case errors.As(err, &ce):
		go w.fail(ctx, tooOldWatch(ce.Requested, ce.Compacted))
		return w, nil
	case err != nil:
		cancel()
		return nil, storeError(res, "", expiredList, err)
	}
	var bookmarks time.Duration
	if opts.AllowBookmarks {
		bookmarks = s.bookmarkInterval
	}
	go w.run(ctx, s, res, f, kw, initial, initialEnd, from, bookmarks)
	return w, nil
}

// bookmark returns a BOOKMARK event at rev: an empty object of res's kind
// with only TypeMeta and the resourceVersion (and the annotation that ends
// the initial events, when initialEnd).
func (s *Store) bookmark(res *Resource, rev int64, initialEnd bool) watch.Event {
	obj := res.New()
	obj.GetObjectKind().SetGroupVersionKind(res.Kind)
	m := obj.(metav1.Object)
	m.SetResourceVersion(strconv.FormatInt(rev, 10))
	if initialEnd {
		m.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
	}
	return watch.Event{Type: watch.Bookmark, Object: obj}
}

// watcher is the watch.Interface of Watch.
type watcher struct {
	ch     chan watch.Event
	cancel context.CancelFunc
	done   chan struct{}
}

// Stop ends the watch and waits for its goroutine; the result channel is closed.
func (w *watcher) Stop() {
	w.cancel()
	<-w.done
}

// ResultChan returns the events; it is closed when the watch ends.
func (w *watcher) ResultChan() <-chan watch.Event { return w.ch }

func (w *watcher) send(ctx context.Context, ev watch.Event) bool {
	select {
	case w.ch <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// fail sends one ERROR event and ends the watch.
func (w *watcher) fail(ctx context.Context, err *apierrors.StatusError) {
	defer close(w.done)
	defer close(w.ch)
	w.send(ctx, errorEvent(err))
}

// errorEvent is the ERROR event that carries err's Status, as kube-apiserver
// sends it.
func errorEvent(err *apierrors.StatusError) watch.Event {
	status := err.Status()
	status.Kind, status.APIVersion = "Status", "v1"
	return watch.Event{Type: watch.Error, Object: &status}
}

func (w *watcher) run(ctx context.Context, s *Store, res *Resource, f filter, kw *raftstore.Watcher, initial []runtime.Object, initialEnd bool, from int64, bookmarks time.Duration) {
	defer close(w.done)
	defer close(w.ch)
	for _, obj := range initial {
		if !w.send(ctx, watch.Event{Type: watch.Added, Object: obj}) {
			return
		}
	}
	if initialEnd && !w.send(ctx, s.bookmark(res, from, true)) {
		return
	}
	sent := from // the revision the client knows it has seen up to
	var due time.Time
	if bookmarks > 0 {
		due = time.Now().Add(bookmarks)
	}
	for {
		next, cancel := ctx, context.CancelFunc(func() {})
		if bookmarks > 0 {
			next, cancel = context.WithDeadline(ctx, due)
		}
		events, rev, err := kw.Next(next)
		cancel()
		var ce *raftstore.CompactedError
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, context.DeadlineExceeded):
		case errors.As(err, &ce):
			w.send(ctx, errorEvent(tooOldWatch(ce.Requested, ce.Compacted)))
			return
		case err != nil:
			w.send(ctx, errorEvent(apierrors.NewInternalError(err)))
			return
		}
		for _, ev := range events {
			out, ok, err := s.convert(res, f, ev)
			if err != nil {
				w.send(ctx, errorEvent(apierrors.NewInternalError(err)))
				return
			}
			if ok {
				if !w.send(ctx, out) {
					return
				}
				sent, due = ev.KV.ModRevision, time.Now().Add(bookmarks)
			}
		}
		// A watch whose events are all filtered out still gets bookmarks.
		if bookmarks > 0 && !time.Now().Before(due) {
			if rev > sent {
				if !w.send(ctx, s.bookmark(res, rev, false)) {
					return
				}
				sent = rev
			}
			due = time.Now().Add(bookmarks)
		}
	}
}

// eventCacheSize is how many decoded event objects the Store keeps: the
// last few thousand changes, enough for every watcher of a busy resource
// to find each change decoded by the first.
const eventCacheSize = 4096

// eventKey names a decoded event object: a stored value (key and mod
// revision) as seen at an event's revision (its resourceVersion).
type eventKey struct {
	res      *Resource
	key      string
	mod, rev int64
}

// eventCache keeps the objects recently decoded for watch events, so that
// the watchers of one resource decode each change once, not once each (a
// pod change has a dozen watchers on a busy master). The objects are
// shared: watch events' objects are read-only to their consumers (the API
// server encodes them). Safe for concurrent use.
type eventCache struct {
	mu   sync.Mutex
	objs map[eventKey]runtime.Object
	ring [eventCacheSize]eventKey
	next int
}

// decodeEvent decodes value (stored at key with mod revision mod) for an
// event at revision rev, or returns the object another watcher decoded.
func (s *Store) decodeEvent(res *Resource, key string, mod int64, value []byte, rev int64) (runtime.Object, error) {
	k := eventKey{res: res, key: key, mod: mod, rev: rev}
	c := &s.events
	c.mu.Lock()
	obj, ok := c.objs[k]
	c.mu.Unlock()
	if ok {
		return obj, nil
	}
	obj, err := s.decode(res, value, rev)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.objs == nil {
		c.objs = make(map[eventKey]runtime.Object, eventCacheSize)
	}
	if first, ok := c.objs[k]; ok {
		return first, nil // another watcher decoded it meanwhile: share its
	}
	delete(c.objs, c.ring[c.next]) // the oldest, or the zero key
	c.ring[c.next] = k
	c.next = (c.next + 1) % eventCacheSize
	c.objs[k] = obj
	return obj, nil
}

// convert turns a store event into the watch event the filter's client
// sees, if any.
func (s *Store) convert(res *Resource, f filter, ev raftstore.Event) (watch.Event, bool, error) {
	rev := ev.KV.ModRevision
	if ev.Type == raftstore.EventDelete {
		old, err := s.decodeEvent(res, ev.PrevKV.Key, ev.PrevKV.ModRevision, ev.PrevKV.Value, rev)
		if err != nil || !f.matches(res, old) {
			return watch.Event{}, false, err
		}
		return watch.Event{Type: watch.Deleted, Object: old}, true, nil
	}
	cur, err := s.decodeEvent(res, ev.KV.Key, ev.KV.ModRevision, ev.KV.Value, rev)
	if err != nil {
		return watch.Event{}, false, err
	}
	curOK := f.matches(res, cur)
	if ev.PrevKV == nil {
		return watch.Event{Type: watch.Added, Object: cur}, curOK, nil
	}
	if f.empty() {
		return watch.Event{Type: watch.Modified, Object: cur}, true, nil
	}
	// The object the change replaced is matched as it was decoded when it
	// was current (most likely still cached: its resourceVersion is not
	// matched), and is decoded as of this event only when it is sent.
	prev := ev.PrevKV
	old, err := s.decodeEvent(res, prev.Key, prev.ModRevision, prev.Value, prev.ModRevision)
	if err != nil {
		return watch.Event{}, false, err
	}
	switch oldOK := f.matches(res, old); {
	case curOK && oldOK:
		return watch.Event{Type: watch.Modified, Object: cur}, true, nil
	case curOK:
		return watch.Event{Type: watch.Added, Object: cur}, true, nil
	case oldOK:
		if old, err = s.decodeEvent(res, prev.Key, prev.ModRevision, prev.Value, rev); err != nil {
			return watch.Event{}, false, err
		}
		return watch.Event{Type: watch.Deleted, Object: old}, true, nil
	}
	return watch.Event{}, false, nil
}
