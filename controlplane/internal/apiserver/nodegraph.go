package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/controlplane/bootstrap"
	"github.com/skiff-sh/skiff/controlplane/internal/authz"
)

// Node authorization of reads, as kube-apiserver's Node authorizer decides
// them. RBAC's system:node role lets every node read Secrets and
// ConfigMaps; a node's agent may in fact read one only by name (a get, or
// a list or watch of one name, fieldSelector metadata.name=NAME) and only
// when a pod bound to the node refers to it: through the pod's volumes
// (secret, configMap, projected sources, a CSI volume's
// nodePublishSecretRef), its containers' env and envFrom (init and
// ephemeral containers too), or its imagePullSecrets. (Skiff serves no
// PersistentVolumes or claims, which upstream's authorizer also covers.)
//
// The relationships come from a graph of the pods bound to nodes
// (nodeGraph), which every master keeps from its own replica once a node
// first reads one of those resources (Server.Run keeps it). A read that
// finds no relationship waits a moment for the graph to change (a pod
// bound a moment ago, not yet in it) before it is refused.

// nodeGraphWait is how long a node's read that finds no relationship
// waits for the graph to change before it is refused.
const nodeGraphWait = 2 * time.Second

// nodeGraphSyncTimeout bounds the wait of the first node read for the
// graph's first lists.
const nodeGraphSyncTimeout = 30 * time.Second

var (
	secretsResource    = corev1.Resource("secrets")
	configMapsResource = corev1.Resource("configmaps")
)

// graphRef names an object a pod refers to.
type graphRef struct {
	resource  string // secrets or configmaps
	namespace string
	name      string
}

// nodeGraph holds who refers to what. The zero value is not usable: see
// newNodeGraph.
type nodeGraph struct {
	// needed is closed by the first node read; Run starts the lists then.
	needed   chan struct{}
	needOnce sync.Once
	running  chan struct{} // closed when Run starts
	runOnce  sync.Once
	synced   chan struct{} // closed after the first list of pods

	mu sync.Mutex
	// pods are the references of each pod bound to a node, by
	// namespace/name.
	pods map[string]podRefs
	// refs counts the pods on each node that refer to an object.
	refs map[graphRef]map[string]int
	// changed is closed, and replaced, at every change.
	changed chan struct{}
	// wait is how long a read that finds no relationship waits for a
	// change (nodeGraphWait).
	wait time.Duration
}

// podRefs is what the graph keeps of a pod.
type podRefs struct {
	node string
	refs []graphRef
}

func newNodeGraph() *nodeGraph {
	return &nodeGraph{
		needed: make(chan struct{}), running: make(chan struct{}), synced: make(chan struct{}),
		pods: map[string]podRefs{}, refs: map[graphRef]map[string]int{},
		changed: make(chan struct{}), wait: nodeGraphWait,
	}
}

// Run keeps the API server's background state until ctx ends: the graph
// of the Node authorizer, from the first read of a node that needs it
// (reads of nodes wait for it; without Run they are refused).
func (s *Server) Run(ctx context.Context) error {
	g := s.graph
	g.runOnce.Do(func() { close(g.running) })
	select {
	case <-ctx.Done():
		return nil
	case <-g.needed:
	}
	lw, ok := s.ListerWatcher(&corev1.Pod{})
	if !ok {
		return errors.New("apiserver: node authorizer: pods not served")
	}
	cache.NewReflectorWithOptions(lw, &corev1.Pod{}, &graphStore{g: g}, cache.ReflectorOptions{Name: "node authorizer"}).Run(ctx.Done())
	return nil
}

// authorizeNodeRead refuses a node's read of a Secret or ConfigMap that no
// pod bound to it refers to, and its lists and watches of them but of one
// name. Other requests pass.
func (s *Server) authorizeNodeRead(r *http.Request, res *resource) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return nil
	}
	gr := res.gvr.GroupResource()
	switch gr {
	case secretsResource, configMapsResource:
	default:
		return nil
	}
	node, ok := s.requestingNode(r.Context())
	if !ok {
		return nil
	}
	attrs := authz.RequestAttributes(r)
	attrs.User = authz.User{Name: bootstrap.NodeUserPrefix + node} // the message names the user only
	if attrs.Subresource != "" || attrs.Name == "" {
		return authz.Forbidden(attrs, "can only get individual resources of this type")
	}
	ok, err := s.graph.related(r.Context(), node, gr, attrs.Namespace, attrs.Name)
	if err != nil {
		return err
	}
	if !ok {
		return authz.Forbidden(attrs, fmt.Sprintf("no relationship found between node '%s' and this object", node))
	}
	return nil
}

// related reports whether a pod bound to node refers to the object,
// waiting for the graph's first list, and up to g.wait for a change when
// it finds no relationship.
func (g *nodeGraph) related(ctx context.Context, node string, gr schema.GroupResource, ns, name string) (bool, error) {
	select {
	case <-g.running:
	default:
		return false, apierrors.NewServiceUnavailable("the node authorizer is not running")
	}
	g.needOnce.Do(func() { close(g.needed) })
	first := time.NewTimer(nodeGraphSyncTimeout)
	defer first.Stop()
	select {
	case <-g.synced:
	case <-ctx.Done():
		return false, ctx.Err()
	case <-first.C:
		return false, apierrors.NewServiceUnavailable("the node authorizer has not read the pods yet")
	}
	wait := time.NewTimer(g.wait)
	defer wait.Stop()
	for {
		ok, changed := g.check(node, gr, ns, name)
		if ok {
			return true, nil
		}
		select {
		case <-changed:
		case <-wait.C:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// check reports whether a pod bound to node refers to the object now, and
// returns the channel closed at the graph's next change.
func (g *nodeGraph) check(node string, gr schema.GroupResource, ns, name string) (bool, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refs[graphRef{gr.Resource, ns, name}][node] > 0, g.changed
}

// notify wakes the reads waiting for a change; g.mu is held.
func (g *nodeGraph) notify() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// setPod records pod's references, or forgets it (nil, or not bound),
// and reports whether that changed the graph (most pod changes, status
// writes, do not); g.mu is held.
func (g *nodeGraph) setPod(key string, pod *corev1.Pod) bool {
	var p podRefs
	if pod != nil && pod.Spec.NodeName != "" {
		p = podRefs{node: pod.Spec.NodeName, refs: podReferences(pod)}
	}
	old, known := g.pods[key]
	if known && old.node == p.node && slices.Equal(old.refs, p.refs) {
		return false
	}
	if known {
		for _, r := range old.refs {
			if g.refs[r][old.node]--; g.refs[r][old.node] <= 0 {
				delete(g.refs[r], old.node)
				if len(g.refs[r]) == 0 {
					delete(g.refs, r)
				}
			}
		}
		delete(g.pods, key)
	}
	if p.node == "" {
		return known
	}
	g.pods[key] = p
	for _, r := range p.refs {
		if g.refs[r] == nil {
			g.refs[r] = map[string]int{}
		}
		g.refs[r][p.node]++
	}
	return true
}

// podReferences lists the Secrets and ConfigMaps pod refers to, each
// once.
func podReferences(pod *corev1.Pod) []graphRef {
	seen := map[graphRef]bool{}
	var out []graphRef
	add := func(resource, name string) {
		r := graphRef{resource, pod.Namespace, name}
		if name != "" && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	secret, configMap := secretsResource.Resource, configMapsResource.Resource
	for _, s := range pod.Spec.ImagePullSecrets {
		add(secret, s.Name)
	}
	containers := func(cs []corev1.Container) {
		for _, c := range cs {
			for _, from := range c.EnvFrom {
				if from.SecretRef != nil {
					add(secret, from.SecretRef.Name)
				}
				if from.ConfigMapRef != nil {
					add(configMap, from.ConfigMapRef.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if e.ValueFrom.SecretKeyRef != nil {
					add(secret, e.ValueFrom.SecretKeyRef.Name)
				}
				if e.ValueFrom.ConfigMapKeyRef != nil {
					add(configMap, e.ValueFrom.ConfigMapKeyRef.Name)
				}
			}
		}
	}
	containers(pod.Spec.InitContainers)
	containers(pod.Spec.Containers)
	for _, e := range pod.Spec.EphemeralContainers {
		containers([]corev1.Container{corev1.Container(e.EphemeralContainerCommon)})
	}
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.Secret != nil:
			add(secret, v.Secret.SecretName)
		case v.ConfigMap != nil:
			add(configMap, v.ConfigMap.Name)
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					add(secret, src.Secret.Name)
				}
				if src.ConfigMap != nil {
					add(configMap, src.ConfigMap.Name)
				}
			}
		case v.CSI != nil && v.CSI.NodePublishSecretRef != nil:
			add(secret, v.CSI.NodePublishSecretRef.Name)
		}
	}
	return out
}

// graphStore is the cache.Store the reflector of pods fills: it keeps
// their references in the graph, not the pods.
type graphStore struct {
	g    *nodeGraph
	once sync.Once // closes g.synced at the first Replace
}

func (s *graphStore) set(obj any, gone bool) error {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj, gone = tomb.Obj, true
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	key := m.GetNamespace() + "/" + m.GetName()
	pod, _ := obj.(*corev1.Pod)
	if gone {
		pod = nil
	}
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	if s.g.setPod(key, pod) {
		s.g.notify()
	}
	return nil
}

func (s *graphStore) Add(obj any) error    { return s.set(obj, false) }
func (s *graphStore) Update(obj any) error { return s.set(obj, false) }
func (s *graphStore) Delete(obj any) error { return s.set(obj, true) }

// Replace takes a full list: what is not in it is gone.
func (s *graphStore) Replace(objs []any, _ string) error {
	fresh := map[string]any{}
	for _, obj := range objs {
		m, err := meta.Accessor(obj)
		if err != nil {
			return err
		}
		fresh[m.GetNamespace()+"/"+m.GetName()] = obj
	}
	g := s.g
	g.mu.Lock()
	for k := range g.pods {
		if _, ok := fresh[k]; !ok {
			g.setPod(k, nil)
		}
	}
	for k, obj := range fresh {
		pod, _ := obj.(*corev1.Pod)
		g.setPod(k, pod)
	}
	g.notify()
	g.mu.Unlock()
	s.once.Do(func() { close(g.synced) })
	return nil
}

// The reflector reads nothing back; the graph is not a cache of objects.
func (s *graphStore) List() []any                          { return nil }
func (s *graphStore) ListKeys() []string                   { return nil }
func (s *graphStore) Get(any) (any, bool, error)           { return nil, false, nil }
func (s *graphStore) GetByKey(string) (any, bool, error)   { return nil, false, nil }
func (s *graphStore) Resync() error                        { return nil }
func (s *graphStore) Bookmark(string)                      {}
func (s *graphStore) LastStoreSyncResourceVersion() string { return "" }

var _ cache.Store = (*graphStore)(nil)
