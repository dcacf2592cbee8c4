package apiserver

import (
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion/queryparams"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/controlplane/internal/registry"
)

// ListerWatcher returns what an informer of this process lists and watches
// the objects of gvr (in every namespace) through: the API's own list and
// watch, read from this master's registry as a GET of the collection reads
// it (the same options, checked the same way), without encoding the
// objects, a connection and decoding them again. The leader's controllers
// watch every pod through it; over the loopback connection each pod change
// cost the leader an encoding, TLS both ways and a decoding.
//
// The objects are the informer's own, as decoded ones would be: list items
// are decoded for the list, watch events' objects (which the registry
// shares between watchers) are copied, and their apiVersion and kind are
// empty, as client-go's typed decoding leaves them. It is meant for
// clients that may do everything (the controllers): nothing is authorized.
// obj names the resource by its Go type (a *corev1.Pod for pods); ok is
// false for a type this server does not serve as a listable resource.
func (s *Server) ListerWatcher(obj runtime.Object) (lw *cache.ListWatch, ok bool) {
	kinds, _, err := s.cfg.Scheme.ObjectKinds(obj)
	if err != nil {
		return nil, false
	}
	for _, res := range s.all {
		if res.review == nil && res.reg.NewList != nil && slices.Contains(kinds, res.reg.Kind) {
			return (&localListWatch{s: s, res: res}).listWatch(), true
		}
	}
	return nil, false
}

// MetadataListerWatcher is ListerWatcher for a metadata informer of gvr
// (client-go's metadatainformer, as the garbage collector keeps): the
// objects are PartialObjectMetadata, as a GET asking for them returns
// them. ok is false for a resource this server does not serve as a
// listable one.
func (s *Server) MetadataListerWatcher(gvr schema.GroupVersionResource) (lw *cache.ListWatch, ok bool) {
	res := s.byGV[gvr.GroupVersion().String()][gvr.Resource]
	if res == nil || res.review != nil || res.reg.NewList == nil {
		return nil, false
	}
	return (&localListWatch{s: s, res: res, metadata: true}).listWatch(), true
}

// localListWatch is ListerWatcher's and MetadataListerWatcher's.
type localListWatch struct {
	s   *Server
	res *resource
	// metadata: the objects are PartialObjectMetadata.
	metadata bool
}

func (l *localListWatch) listWatch() *cache.ListWatch {
	return &cache.ListWatch{ListWithContextFunc: l.list, WatchFuncWithContext: l.watch}
}

// options are opts as the registry's, checked as those of a GET of the
// collection (watch: a watch's) are.
func (l *localListWatch) options(opts metav1.ListOptions, watch bool) (registry.ListOptions, error) {
	q, err := queryparams.Convert(&opts)
	if err != nil {
		return registry.ListOptions{}, apierrors.NewBadRequest(fmt.Sprintf("list options: %v", err))
	}
	if err := checkListQuery(q, watch); err != nil {
		return registry.ListOptions{}, err
	}
	return listOptions(q, l.res)
}

func (l *localListWatch) list(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	ro, err := l.options(opts, false)
	if err != nil {
		return nil, err
	}
	list, err := l.s.cfg.Store.List(ctx, l.res.reg, "", ro)
	if err != nil {
		return nil, err
	}
	if l.metadata {
		return metadataList(list)
	}
	if err := meta.EachListItem(list, func(obj runtime.Object) error {
		obj.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
		return nil
	}); err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	return list, nil
}

func (l *localListWatch) watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	ro, err := l.options(opts, true)
	if err != nil {
		return nil, err
	}
	ro.Limit, ro.Continue = 0, ""
	ro.AllowBookmarks = opts.AllowWatchBookmarks
	ro.SendInitialEvents = opts.SendInitialEvents
	ctx, cancel := context.WithCancel(ctx)
	if opts.TimeoutSeconds != nil {
		ctx, cancel = context.WithTimeout(ctx, secondsDuration(*opts.TimeoutSeconds))
	}
	inner, err := l.s.cfg.Store.Watch(ctx, l.res.reg, "", ro)
	if err != nil {
		cancel()
		return nil, err
	}
	w := &copyingWatch{inner: inner, cancel: cancel, ch: make(chan watch.Event, 100), metadata: l.metadata}
	go w.run(ctx)
	return w, nil
}

// copyingWatch passes a registry watch's events on with copies of their
// objects (apiVersion and kind empty), or of their metadata, until the
// registry's ends or Stop.
type copyingWatch struct {
	inner    watch.Interface
	cancel   context.CancelFunc
	ch       chan watch.Event
	metadata bool
}

func (w *copyingWatch) run(ctx context.Context) {
	defer close(w.ch)
	defer w.inner.Stop()
	for ev := range w.inner.ResultChan() {
		switch {
		case ev.Object == nil:
		case ev.Type == watch.Error:
			ev.Object = ev.Object.DeepCopyObject()
		case w.metadata:
			ev.Object = partialMetadata(ev.Object).DeepCopy() // its maps and slices were the object's
		default:
			ev.Object = ev.Object.DeepCopyObject()
			ev.Object.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
		}
		select {
		case w.ch <- ev:
		case <-ctx.Done():
			return
		}
	}
}

func (w *copyingWatch) ResultChan() <-chan watch.Event { return w.ch }

// Stop ends the watch; the result channel is closed once its goroutine
// is done.
func (w *copyingWatch) Stop() { w.cancel() }
