package scheduler

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// Cache is the scheduler's view of the cluster: every node, and every pod
// bound to a node or assumed there (chosen, bind not yet seen). Informer
// handlers and binders change it; the scheduling loop locks it for one
// decision and the assumption that follows. All methods are safe for
// concurrent use; Lock/Unlock and the *Locked methods let one caller make
// several steps atomic.
type Cache struct {
	mu    sync.Mutex
	snap  Snapshot
	nodes map[string]*NodeInfo // with placeholders for pods on unseen nodes
	pods  map[string]*cachedPod
}

type cachedPod struct {
	info    *PodInfo
	node    *NodeInfo
	assumed bool // placed by this scheduler, binding not yet observed
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	c := &Cache{nodes: map[string]*NodeInfo{}, pods: map[string]*cachedPod{}}
	c.snap.withAntiAffinity = map[string]placedPod{}
	return c
}

// Lock locks the cache for a decision: Snapshot, then AssumeLocked.
func (c *Cache) Lock() { c.mu.Lock() }

// Unlock ends what Lock began.
func (c *Cache) Unlock() { c.mu.Unlock() }

// SnapshotLocked returns the view to decide on; it is valid until Unlock.
func (c *Cache) SnapshotLocked() *Snapshot { return &c.snap }

func (c *Cache) nodeLocked(name string) *NodeInfo {
	n := c.nodes[name]
	if n == nil {
		n = newNodeInfo(name)
		c.nodes[name] = n
	}
	return n
}

// SetNode adds or updates a node.
func (c *Cache) SetNode(node *corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodeLocked(node.Name)
	n.setNode(node)
	if n.index < 0 {
		n.index = len(c.snap.Nodes)
		c.snap.Nodes = append(c.snap.Nodes, n)
	}
}

// RemoveNode forgets a node. Its pods stay counted (on a placeholder) until
// they are removed themselves, as they still run until then.
func (c *Cache) RemoveNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[name]
	if n == nil || n.index < 0 {
		return
	}
	last := c.snap.Nodes[len(c.snap.Nodes)-1]
	c.snap.Nodes[n.index], last.index = last, n.index
	c.snap.Nodes[len(c.snap.Nodes)-1] = nil
	c.snap.Nodes = c.snap.Nodes[:len(c.snap.Nodes)-1]
	n.index, n.Node = -1, nil
	if len(n.Pods) == 0 {
		delete(c.nodes, name)
	}
}

// AddPod counts a pod bound to spec.nodeName (added or updated), replacing
// what was counted or assumed for it before. An error means its affinity
// terms do not compile; it is then counted without them.
func (c *Cache) AddPod(pod *corev1.Pod) error {
	pi, err := NewPodInfo(pod)
	if err != nil {
		pi = &PodInfo{Pod: pod, Key: pod.Namespace + "/" + pod.Name, Requests: PodRequests(pod, false), NonZero: PodRequests(pod, true)}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(pi.Key)
	c.placeLocked(pi, pod.Spec.NodeName, false)
	return err
}

// RemovePod uncounts the pod with key "namespace/name", bound or assumed,
// and reports whether it was counted.
func (c *Cache) RemovePod(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.removeLocked(key)
}

// Has reports whether the pod with key is bound or assumed in the cache.
func (c *Cache) Has(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pods[key] != nil
}

// AssumeLocked places pi on node before its binding is seen, so later
// decisions count it. The caller holds the lock.
func (c *Cache) AssumeLocked(pi *PodInfo, node string) {
	c.removeLocked(pi.Key)
	c.placeLocked(pi, node, true)
}

// Forget undoes the assumption of the pod with key on node, if it is still
// only assumed there (not since seen bound).
func (c *Cache) Forget(key, node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cp := c.pods[key]; cp != nil && cp.assumed && cp.node.Name == node {
		c.removeLocked(key)
	}
}

func (c *Cache) placeLocked(pi *PodInfo, node string, assumed bool) {
	n := c.nodeLocked(node)
	n.addPod(pi, 1)
	c.pods[pi.Key] = &cachedPod{info: pi, node: n, assumed: assumed}
	if len(pi.antiAffinity) > 0 {
		c.snap.withAntiAffinity[pi.Key] = placedPod{pod: pi, node: n}
	}
}

func (c *Cache) removeLocked(key string) bool {
	cp := c.pods[key]
	if cp == nil {
		return false
	}
	delete(c.pods, key)
	delete(c.snap.withAntiAffinity, key)
	cp.node.addPod(cp.info, -1)
	if cp.node.index < 0 && len(cp.node.Pods) == 0 {
		delete(c.nodes, cp.node.Name)
	}
	return true
}
