package registry

import (
	"context"
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
//
// An object that starts matching is ADDED, one that stops matching DELETED
// (with its last matching state); DELETED events of deletes carry the last
// state. Every event's object has the resourceVersion of its change, and
// TypeMeta set. Watches are served from the local replica.
//
// When N is older than the kept history, or the watch falls behind it, the
// stream sends one ERROR event whose object is a *metav1.Status 410 Expired
// "too old resource version: N (oldest)", and closes: the client re-lists.
// There are no BOOKMARK events. The stream closes when ctx ends or Stop is
// called; Stop returns after the watch's goroutine has exited.
func (s *Store) Watch(ctx context.Context, res *Resource, ns string, opts ListOptions) (watch.Interface, error) {
	if !res.Namespaced {
		ns = ""
	}
	p := prefix(res, ns)
	f := newFilter(opts)
	var (
		from    int64
		initial []runtime.Object
	)
	switch opts.ResourceVersion {
	case "", "0":
		ro := raftstore.ReadOptions{Stale: opts.ResourceVersion == "0"}
		items, rev, _, _, err := s.list(ctx, res, p, ro, "", f, 0, expiredList)
		if err != nil {
			return nil, err
		}
		initial, from = items, rev
	default:
		n, err := parseRV(opts.ResourceVersion)
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
	go w.run(ctx, s, res, f, kw, initial)
	return w, nil
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

func (w *watcher) run(ctx context.Context, s *Store, res *Resource, f filter, kw *raftstore.Watcher, initial []runtime.Object) {
	defer close(w.done)
	defer close(w.ch)
	for _, obj := range initial {
		if !w.send(ctx, watch.Event{Type: watch.Added, Object: obj}) {
			return
		}
	}
	for {
		events, _, err := kw.Next(ctx)
		var ce *raftstore.CompactedError
		switch {
		case ctx.Err() != nil:
			return
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
			if ok && !w.send(ctx, out) {
				return
			}
		}
	}
}

// convert turns a store event into the watch event the filter's client
// sees, if any.
func (s *Store) convert(res *Resource, f filter, ev raftstore.Event) (watch.Event, bool, error) {
	rev := ev.KV.ModRevision
	if ev.Type == raftstore.EventDelete {
		old, err := s.decode(res, ev.PrevKV.Value, rev)
		if err != nil || !f.matches(res, old) {
			return watch.Event{}, false, err
		}
		return watch.Event{Type: watch.Deleted, Object: old}, true, nil
	}
	cur, err := s.decode(res, ev.KV.Value, rev)
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
	old, err := s.decode(res, ev.PrevKV.Value, rev)
	if err != nil {
		return watch.Event{}, false, err
	}
	switch oldOK := f.matches(res, old); {
	case curOK && oldOK:
		return watch.Event{Type: watch.Modified, Object: cur}, true, nil
	case curOK:
		return watch.Event{Type: watch.Added, Object: cur}, true, nil
	case oldOK:
		return watch.Event{Type: watch.Deleted, Object: old}, true, nil
	}
	return watch.Event{}, false, nil
}
