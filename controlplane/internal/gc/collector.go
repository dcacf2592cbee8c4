// Package gc is the garbage collector of ownerReferences, as Kubernetes'
// own: it deletes objects whose owners are all gone (background
// propagation), deletes the dependents of an owner being deleted in the
// foreground before letting the owner go (the foregroundDeletion
// finalizer), and removes an owner being deleted with the orphan finalizer
// from its dependents' ownerReferences before letting it go.
//
//	c, err := gc.New(cfg) // cfg from DefaultConfig, with Metadata and Discovery set
//	err = c.Run(ctx)      // leader-only: until ctx ends; may run again later
//
// It works through the Kubernetes API only, like any controller: metadata
// informers (PartialObjectMetadata) over every served resource that can be
// listed, watched and deleted, and metadata reads, patches and deletes.
// It is level-triggered: each Run starts from a fresh list of everything,
// so it may be stopped and started again at any moment (on every change of
// Raft leader). Before it deletes an object it reads the object and its
// owners from the API rather than trusting its caches, as upstream does;
// an owner whose uid is not that of the object now at its name is gone.
package gc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"
)

// Discovery lists the resources the API serves, in their preferred
// versions; *discovery.DiscoveryClient is one.
type Discovery interface {
	ServerPreferredResources() ([]*metav1.APIResourceList, error)
}

// Config configures a Collector.
type Config struct {
	// Metadata reads, watches, patches and deletes objects through the API.
	Metadata metadata.Interface
	// Discovery finds the resources to watch.
	Discovery Discovery
	Logger    *slog.Logger
	// Workers is how many objects are worked on at once.
	Workers int
	// Ignored resources are not watched: nothing they own or are owned by
	// is collected (events, as upstream).
	Ignored []schema.GroupResource
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
	// RetryBase and RetryMax bound the per-object back-off after a failure.
	RetryBase, RetryMax time.Duration
	// Local, when set, is where the informer of a resource it knows lists
	// and watches metadata instead of through Metadata (on a master: the
	// API in process).
	Local func(gvr schema.GroupVersionResource) (lw *cache.ListWatch, ok bool)
}

// DefaultConfig returns a Config without Metadata and Discovery.
func DefaultConfig() Config {
	return Config{
		Logger:         slog.Default(),
		Workers:        4,
		Ignored:        []schema.GroupResource{{Resource: "events"}, {Group: "events.k8s.io", Resource: "events"}},
		RequestTimeout: 10 * time.Second,
		RetryBase:      10 * time.Millisecond,
		RetryMax:       30 * time.Second,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Metadata == nil || c.Discovery == nil:
		return errors.New("gc: config: Metadata and Discovery are required")
	case c.Workers < 1:
		return errors.New("gc: config: Workers must be at least 1")
	case c.RequestTimeout <= 0 || c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return errors.New("gc: config: RequestTimeout and RetryBase must be positive, RetryMax at least RetryBase")
	}
	return nil
}

// local is c.cfg.Local's ListerWatcher of gvr, if any.
func (c *Collector) local(gvr schema.GroupVersionResource) (*cache.ListWatch, bool) {
	if c.cfg.Local == nil {
		return nil, false
	}
	return c.cfg.Local(gvr)
}

// Collector is the garbage collector. Its Run may be called again once an
// earlier Run has returned; runs share nothing.
type Collector struct {
	cfg Config
	log *slog.Logger
}

// New validates cfg and returns a Collector.
func New(cfg Config) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Collector{cfg: cfg, log: cfg.Logger.With("controller", "garbage-collector")}, nil
}

// ownerIndex indexes objects by the uids of their owners.
const ownerIndex = "ownerUID"

// watched is one resource the collector watches.
type watched struct {
	gvr        schema.GroupVersionResource
	kind       string
	namespaced bool
	informer   cache.SharedIndexInformer
}

// item is an object to work on, identified down to its uid.
type item struct {
	gvr             schema.GroupVersionResource
	namespace, name string
	uid             types.UID
}

func (it item) String() string {
	if it.namespace == "" {
		return it.gvr.Resource + "/" + it.name
	}
	return it.gvr.Resource + "/" + it.namespace + "/" + it.name
}

// state is one Run's: its informers, queue and what it learnt.
type state struct {
	c      *Collector
	log    *slog.Logger
	byGVR  map[schema.GroupVersionResource]*watched
	byKind map[schema.GroupKind]*watched
	queue  workqueue.TypedRateLimitingInterface[item]

	mu sync.Mutex
	// absent holds uids of owners found gone: a uid never comes back.
	absent map[types.UID]bool
	// unknown holds owner kinds already reported as not served.
	unknown map[schema.GroupKind]bool
}

// maxAbsent bounds the memory of owners found gone; the set starts over
// when full (forgetting costs only a read).
const maxAbsent = 10000

// Run watches every resource that can own or be owned and collects
// garbage until ctx ends; then it stops its informers and workers and
// returns nil once they have exited. It fails when discovery does, or when
// its caches cannot fill.
func (c *Collector) Run(ctx context.Context) error {
	resources, err := c.discover()
	if err != nil {
		return err
	}
	s := &state{
		c: c, log: c.log,
		byGVR: map[schema.GroupVersionResource]*watched{}, byKind: map[schema.GroupKind]*watched{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[item](c.cfg.RetryBase, c.cfg.RetryMax),
			workqueue.TypedRateLimitingQueueConfig[item]{Name: "garbage-collector"}),
		absent:  map[types.UID]bool{},
		unknown: map[schema.GroupKind]bool{},
	}
	defer s.queue.ShutDown()
	var synced []cache.InformerSynced
	for _, w := range resources {
		indexers := cache.Indexers{ownerIndex: indexOwners}
		if lw, ok := c.local(w.gvr); ok {
			w.informer = cache.NewSharedIndexInformer(lw, &metav1.PartialObjectMetadata{}, 0, indexers)
		} else {
			w.informer = metadatainformer.NewFilteredMetadataInformer(c.cfg.Metadata, w.gvr, metav1.NamespaceAll, 0, indexers, nil).Informer()
		}
		if _, err := w.informer.AddEventHandler(s.handlers(w)); err != nil {
			return fmt.Errorf("gc: informer of %s: %w", w.gvr, err)
		}
		s.byGVR[w.gvr] = w
		s.byKind[schema.GroupKind{Group: w.gvr.Group, Kind: w.kind}] = w
		synced = append(synced, w.informer.HasSynced)
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		s.queue.ShutDown()
		wg.Wait()
	}()
	for _, w := range resources {
		wg.Go(func() { w.informer.RunWithContext(ctx) })
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("gc: caches did not sync")
	}
	c.log.Info("garbage collector started", "resources", len(resources))
	for range c.cfg.Workers {
		wg.Go(func() {
			for s.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	return nil
}

// discover returns the resources to watch: every resource served that
// supports list, watch and delete, in its preferred version, but the
// ignored ones.
func (c *Collector) discover() ([]*watched, error) {
	lists, err := c.cfg.Discovery.ServerPreferredResources()
	if err != nil {
		return nil, fmt.Errorf("gc: discovery: %w", err)
	}
	var out []*watched
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			return nil, fmt.Errorf("gc: discovery: %w", err)
		}
		for _, r := range l.APIResources {
			gr := schema.GroupResource{Group: gv.Group, Resource: r.Name}
			if strings.Contains(r.Name, "/") || !hasVerbs(r.Verbs, "list", "watch", "delete") || slices.Contains(c.cfg.Ignored, gr) {
				continue
			}
			out = append(out, &watched{gvr: gv.WithResource(r.Name), kind: r.Kind, namespaced: r.Namespaced})
		}
	}
	return out, nil
}

func hasVerbs(have metav1.Verbs, want ...string) bool {
	for _, v := range want {
		if !slices.Contains(have, v) {
			return false
		}
	}
	return true
}

func indexOwners(obj any) ([]string, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return nil, fmt.Errorf("gc: indexing a %T", obj)
	}
	out := make([]string, 0, len(m.OwnerReferences))
	for _, r := range m.OwnerReferences {
		out = append(out, string(r.UID))
	}
	return out, nil
}

// asMeta returns the metadata an informer handler got, unwrapping the
// tombstone of a delete the informer missed.
func asMeta(obj any) *metav1.PartialObjectMetadata {
	m, _ := sharedinformers.As[*metav1.PartialObjectMetadata](obj)
	return m
}

// handlers queue what a change may concern: the object itself when it has
// owners or waits for the collector; on delete, its dependents (their
// owner may be gone) and its owners (one may wait for it); on a change of
// its owners or deletion, those owners.
func (s *state) handlers(w *watched) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if m := asMeta(obj); m != nil && concerned(m) {
				s.queue.Add(itemOf(w, m))
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			old, m := asMeta(oldObj), asMeta(newObj)
			if m == nil || old == nil {
				return
			}
			if concerned(m) {
				s.queue.Add(itemOf(w, m))
			}
			if (old.DeletionTimestamp == nil) != (m.DeletionTimestamp == nil) || !sameOwners(old.OwnerReferences, m.OwnerReferences) {
				s.queueOwners(w, old)
				s.queueOwners(w, m)
			}
		},
		DeleteFunc: func(obj any) {
			m := asMeta(obj)
			if m == nil {
				return
			}
			s.queueDependents(m.UID)
			s.queueOwners(w, m)
		},
	}
}

// concerned reports whether the collector has something to decide about m.
func concerned(m *metav1.PartialObjectMetadata) bool {
	return len(m.OwnerReferences) > 0 || finalizingOf(m) != notFinalizing
}

func sameOwners(a, b []metav1.OwnerReference) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.UID != y.UID || (x.BlockOwnerDeletion != nil && *x.BlockOwnerDeletion) != (y.BlockOwnerDeletion != nil && *y.BlockOwnerDeletion) {
			return false
		}
	}
	return true
}

func itemOf(w *watched, m *metav1.PartialObjectMetadata) item {
	return item{gvr: w.gvr, namespace: m.Namespace, name: m.Name, uid: m.UID}
}

// queueOwners queues the owners of m (a dependent in w) that the collector watches.
func (s *state) queueOwners(w *watched, m *metav1.PartialObjectMetadata) {
	for _, r := range m.OwnerReferences {
		if ow, ns, ok := s.ownerResource(w, m, r); ok {
			s.queue.Add(item{gvr: ow.gvr, namespace: ns, name: r.Name, uid: r.UID})
		}
	}
}

// queueDependents queues every object that names uid as an owner.
func (s *state) queueDependents(uid types.UID) {
	for _, d := range s.dependents(uid) {
		s.queue.Add(d.item)
	}
}

// dependent is an object from the caches that names some owner.
type dependent struct {
	item
	w    *watched
	meta *metav1.PartialObjectMetadata
}

// dependents returns the cached objects that name uid as an owner.
func (s *state) dependents(uid types.UID) []dependent {
	var out []dependent
	for _, w := range s.byGVR {
		objs, err := w.informer.GetIndexer().ByIndex(ownerIndex, string(uid))
		if err != nil {
			continue // only an unknown index name fails
		}
		for _, o := range objs {
			if m := asMeta(o); m != nil {
				out = append(out, dependent{item: itemOf(w, m), w: w, meta: m})
			}
		}
	}
	return out
}

// ownerResource resolves an ownerReference of m (in w) to the watched
// resource of the owner and the owner's namespace. Unknown kinds, and
// namespaced owners of cluster-scoped objects (invalid), resolve to
// nothing: such references are never treated as gone.
func (s *state) ownerResource(w *watched, m *metav1.PartialObjectMetadata, r metav1.OwnerReference) (*watched, string, bool) {
	gv, err := schema.ParseGroupVersion(r.APIVersion)
	gk := schema.GroupKind{Group: gv.Group, Kind: r.Kind}
	ow := s.byKind[gk]
	if err != nil || ow == nil {
		s.mu.Lock()
		first := !s.unknown[gk]
		s.unknown[gk] = true
		s.mu.Unlock()
		if first {
			s.log.Info("ownerReference to a kind not served: ignored", "apiVersion", r.APIVersion, "kind", r.Kind, "object", itemOf(w, m).String())
		}
		return nil, "", false
	}
	if !ow.namespaced {
		return ow, "", true
	}
	if !w.namespaced {
		return nil, "", false
	}
	return ow, m.Namespace, true
}

// processNext works on the next item; false once the queue shuts down.
func (s *state) processNext(ctx context.Context) bool {
	it, shutdown := s.queue.Get()
	if shutdown {
		return false
	}
	defer s.queue.Done(it)
	err := s.process(ctx, it)
	switch {
	case err == nil:
		s.queue.Forget(it)
	case ctx.Err() != nil:
	default:
		s.log.Warn("garbage collection failed; retrying", "object", it.String(), "uid", it.uid, "err", err)
		s.queue.AddRateLimited(it)
	}
	return true
}

// process decides about one object from its cached state.
func (s *state) process(ctx context.Context, it item) error {
	w := s.byGVR[it.gvr]
	key := it.name
	if it.namespace != "" {
		key = it.namespace + "/" + it.name
	}
	obj, ok, err := w.informer.GetIndexer().GetByKey(key)
	var m *metav1.PartialObjectMetadata
	if err == nil && ok {
		m = asMeta(obj)
	}
	if m == nil || m.UID != it.uid {
		// Gone, or not seen yet: its dependents check their owners themselves.
		s.queueDependents(it.uid)
		return nil
	}
	switch finalizingOf(m) {
	case orphaning:
		return s.orphan(ctx, w, m)
	case deletingDependents:
		return s.deleteDependents(ctx, w, m)
	}
	if m.DeletionTimestamp != nil || len(m.OwnerReferences) == 0 {
		return nil // being deleted is a one-way trip; without owners, nothing to collect
	}
	return s.collect(ctx, w, m)
}

// orphan removes owner from its dependents' ownerReferences, then its
// orphan finalizer.
func (s *state) orphan(ctx context.Context, w *watched, owner *metav1.PartialObjectMetadata) error {
	for _, d := range s.dependents(owner.UID) {
		if err := s.removeOwnerRefs(ctx, d.w, d.meta, []types.UID{owner.UID}); err != nil {
			return err
		}
		s.log.Info("orphaned a dependent", "object", d.item.String(), "owner", itemOf(w, owner).String())
	}
	return s.removeFinalizer(ctx, w, owner, metav1.FinalizerOrphanDependents)
}

// deleteDependents queues owner's dependents (each finds its owner waiting
// and goes) and removes the foregroundDeletion finalizer once none blocks.
func (s *state) deleteDependents(ctx context.Context, w *watched, owner *metav1.PartialObjectMetadata) error {
	blocking := 0
	for _, d := range s.dependents(owner.UID) {
		if blocks(d.meta, owner.UID) {
			blocking++
		}
		if d.meta.DeletionTimestamp == nil || finalizingOf(d.meta) != notFinalizing {
			s.queue.Add(d.item)
		}
	}
	if blocking > 0 {
		return nil // their deletes queue the owner again
	}
	return s.removeFinalizer(ctx, w, owner, metav1.FinalizerDeleteDependents)
}

// collect checks the owners of m, not being deleted, through the API and
// acts on decide's verdict.
func (s *state) collect(ctx context.Context, w *watched, cached *metav1.PartialObjectMetadata) error {
	m, err := s.get(ctx, w, cached.Namespace, cached.Name)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	case m.UID != cached.UID || m.DeletionTimestamp != nil || len(m.OwnerReferences) == 0:
		return nil // replaced, or already going: its own events follow
	}
	states := make([]ownerState, len(m.OwnerReferences))
	for i, r := range m.OwnerReferences {
		if states[i], err = s.ownerState(ctx, w, m, r); err != nil {
			return err
		}
	}
	deps := s.dependents(m.UID)
	dependentWaiting := false
	for _, d := range deps {
		if finalizingOf(d.meta) == deletingDependents {
			dependentWaiting = true
		}
	}
	v := decide(m, states, len(deps) > 0, dependentWaiting)
	it := itemOf(w, m)
	switch {
	case len(v.removeRefs) > 0:
		s.log.Info("removing references to owners gone or being deleted", "object", it.String(), "owners", v.removeRefs)
		return s.removeOwnerRefs(ctx, w, m, v.removeRefs)
	case !v.delete:
		return nil
	}
	if v.unblock {
		if err := s.unblockOwners(ctx, w, m); err != nil {
			return err
		}
	}
	s.log.Info("deleting a dependent", "object", it.String(), "uid", m.UID, "owners", ownersString(m.OwnerReferences, states), "propagation", v.policy)
	return s.delete(ctx, w, m, v.policy)
}

func ownersString(refs []metav1.OwnerReference, states []ownerState) string {
	parts := make([]string, len(refs))
	for i, r := range refs {
		parts[i] = fmt.Sprintf("%s/%s (%s)", r.Kind, r.Name, states[i])
	}
	return strings.Join(parts, ", ")
}

// ownerState finds out whether the owner r of m (in w) is there: from the
// cache when it shows the owner alive (a stale "alive" is put right by the
// owner's delete event, which queues m again), else from the API. An owner
// of a kind the collector cannot look up counts as there.
func (s *state) ownerState(ctx context.Context, w *watched, m *metav1.PartialObjectMetadata, r metav1.OwnerReference) (ownerState, error) {
	s.mu.Lock()
	gone := s.absent[r.UID]
	s.mu.Unlock()
	if gone {
		return dangling, nil
	}
	ow, ns, ok := s.ownerResource(w, m, r)
	if !ok {
		return solid, nil
	}
	key := r.Name
	if ns != "" {
		key = ns + "/" + r.Name
	}
	if obj, ok, err := ow.informer.GetIndexer().GetByKey(key); err == nil && ok {
		if o := asMeta(obj); o != nil && o.UID == r.UID && o.DeletionTimestamp == nil {
			return solid, nil
		}
	}
	owner, err := s.get(ctx, ow, ns, r.Name)
	switch {
	case apierrors.IsNotFound(err) || (err == nil && owner.UID != r.UID):
		s.markAbsent(r.UID)
		return dangling, nil
	case err != nil:
		return solid, err
	case finalizingOf(owner) == deletingDependents:
		return waiting, nil
	}
	return solid, nil
}

func (s *state) markAbsent(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.absent) >= maxAbsent {
		clear(s.absent)
	}
	s.absent[uid] = true
}

// The API calls, each bounded by RequestTimeout.

func (s *state) client(w *watched, ns string) metadata.ResourceInterface {
	r := s.c.cfg.Metadata.Resource(w.gvr)
	if w.namespaced {
		return r.Namespace(ns)
	}
	return r
}

func (s *state) get(ctx context.Context, w *watched, ns, name string) (*metav1.PartialObjectMetadata, error) {
	ctx, cancel := context.WithTimeout(ctx, s.c.cfg.RequestTimeout)
	defer cancel()
	return s.client(w, ns).Get(ctx, name, metav1.GetOptions{})
}

// delete deletes m, if it is still the object of that uid.
func (s *state) delete(ctx context.Context, w *watched, m *metav1.PartialObjectMetadata, policy metav1.DeletionPropagation) error {
	ctx, cancel := context.WithTimeout(ctx, s.c.cfg.RequestTimeout)
	defer cancel()
	err := s.client(w, m.Namespace).Delete(ctx, m.Name, metav1.DeleteOptions{
		Preconditions:     &metav1.Preconditions{UID: &m.UID},
		PropagationPolicy: &policy,
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone already, or replaced by another object of that name
	}
	return err
}

// strategicPatch is a strategic merge patch of metadata: ownerReferences
// merge by uid; the uid is a precondition.
type strategicPatch struct {
	Metadata struct {
		UID             types.UID        `json:"uid"`
		OwnerReferences []map[string]any `json:"ownerReferences"`
	} `json:"metadata"`
}

// removeOwnerRefs removes the references to uids from m's ownerReferences.
func (s *state) removeOwnerRefs(ctx context.Context, w *watched, m *metav1.PartialObjectMetadata, uids []types.UID) error {
	var p strategicPatch
	p.Metadata.UID = m.UID
	for _, u := range uids {
		p.Metadata.OwnerReferences = append(p.Metadata.OwnerReferences, map[string]any{"$patch": "delete", "uid": u})
	}
	return s.patch(ctx, w, m, types.StrategicMergePatchType, p)
}

// unblockOwners sets blockOwnerDeletion false on m's references that block.
func (s *state) unblockOwners(ctx context.Context, w *watched, m *metav1.PartialObjectMetadata) error {
	var p strategicPatch
	p.Metadata.UID = m.UID
	for _, r := range m.OwnerReferences {
		if r.BlockOwnerDeletion != nil && *r.BlockOwnerDeletion {
			p.Metadata.OwnerReferences = append(p.Metadata.OwnerReferences, map[string]any{"uid": r.UID, "blockOwnerDeletion": false})
		}
	}
	return s.patch(ctx, w, m, types.StrategicMergePatchType, p)
}

func (s *state) patch(ctx context.Context, w *watched, m *metav1.PartialObjectMetadata, pt types.PatchType, p any) error {
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("gc: patch: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.c.cfg.RequestTimeout)
	defer cancel()
	_, err = s.client(w, m.Namespace).Patch(ctx, m.Name, pt, data, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) || (apierrors.IsConflict(err) && pt == types.StrategicMergePatchType) {
		return nil // gone, or replaced (the uid precondition failed)
	}
	return err
}

// finalizersPatch is a merge patch of metadata.finalizers, conditional on
// the resourceVersion they were read at.
type finalizersPatch struct {
	Metadata struct {
		UID             types.UID `json:"uid"`
		ResourceVersion string    `json:"resourceVersion"`
		Finalizers      []string  `json:"finalizers"`
	} `json:"metadata"`
}

// removeFinalizer removes f from the object of m, read afresh: an object
// being deleted whose last finalizer goes is deleted by the API.
func (s *state) removeFinalizer(ctx context.Context, w *watched, m *metav1.PartialObjectMetadata, f string) error {
	for attempt := 0; ; attempt++ {
		cur, err := s.get(ctx, w, m.Namespace, m.Name)
		if apierrors.IsNotFound(err) || (err == nil && cur.UID != m.UID) {
			return nil
		}
		if err != nil {
			return err
		}
		rest, found := withoutFinalizer(cur.Finalizers, f)
		if !found {
			return nil
		}
		var p finalizersPatch
		p.Metadata.UID, p.Metadata.ResourceVersion, p.Metadata.Finalizers = cur.UID, cur.ResourceVersion, rest
		err = s.patch(ctx, w, cur, types.MergePatchType, p)
		if err == nil {
			s.log.Info("removed finalizer", "object", itemOf(w, cur).String(), "finalizer", f)
			return nil
		}
		if !apierrors.IsConflict(err) || attempt >= 4 {
			return err
		}
	}
}
