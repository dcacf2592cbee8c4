// Package hollow runs hollow nodes, as kubemark and kwok do: Nodes that
// register, heartbeat and run pods through the normal Kubernetes API
// exactly as a kubelet would, without containers. Thousands of them fit in
// one process, for scale tests of the control plane (scheduler,
// controllers, API server) against realistic node and pod traffic.
//
//	cfg := hollow.DefaultConfig()
//	cfg.Client, cfg.Count = client, 1000 // or cfg.Names
//	h, err := hollow.New(cfg)
//	err = h.Run(ctx) // until ctx ends
//
// Run registers one Node per name (capacity and allocatable, node info, a
// fake InternalIP per node from NodeCIDR, the standard conditions with
// Ready True, the kubernetes.io/hostname, os and arch labels), renews a
// coordination.k8s.io Lease per node in kube-node-lease every
// LeaseInterval, and refreshes each Node's conditions every
// StatusInterval. One shared pod informer serves all the nodes: a pod bound
// to one of them is marked Running (conditions, container statuses with
// made-up image and container IDs, host and pod IPs — from the node's
// spec.podCIDR when it has one, else from a made-up /24 per node in
// SyntheticPodCIDR — and start time), and a pod being deleted is
// confirmed gone with a delete of grace period 0 and a UID precondition, as
// a kubelet does once its containers stopped. Status writes run at most
// Parallelism at a time.
//
// When ctx ends every node stops at once, and the Nodes stay registered,
// as when a machine dies, so that the node lifecycle controller notices.
// Running again resumes: registration updates existing Nodes, and pods
// already marked keep their IPs.
package hollow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/agent/internal/nodestatus"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// LeaseNamespace holds the nodes' heartbeat leases.
const LeaseNamespace = nodestatus.LeaseNamespace

// LeaseDurationSeconds is the duration the leases declare, as the
// kubelet's default.
const LeaseDurationSeconds = nodestatus.LeaseDurationSeconds

// KubeletVersion is what the hollow nodes report as their kubelet
// version.
const KubeletVersion = "v1.37.2-hollow"

// Config configures a Hollow.
type Config struct {
	// Client registers the nodes and writes leases and pod status.
	Client kubernetes.Interface
	// Names are the nodes' names. When empty, Count nodes are named
	// Prefix followed by 0..Count-1.
	Names  []string
	Count  int
	Prefix string
	// Capacity is every node's capacity and allocatable (cpu, memory,
	// pods).
	Capacity corev1.ResourceList
	// Labels and Taints are added to every node at registration (the
	// kubelet's --node-labels and --register-with-taints).
	Labels map[string]string
	Taints []corev1.Taint
	// LeaseInterval is how often each node's Lease is renewed; 0 writes no
	// leases.
	LeaseInterval time.Duration
	// StatusInterval is how often each node's conditions are refreshed
	// (their lastHeartbeatTime); 0 never refreshes them after
	// registration.
	StatusInterval time.Duration
	// NodeCIDR gives the nodes' InternalIPs: node i gets its (i+1)th
	// address.
	NodeCIDR netip.Prefix
	// SyntheticPodCIDR gives pod IPs to nodes without spec.podCIDR: node i
	// gets its ith /24.
	SyntheticPodCIDR netip.Prefix
	// Parallelism bounds the API writes in flight (pod status, leases,
	// node status).
	Parallelism int
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
	Logger         *slog.Logger
	// Now is the clock.
	Now func() time.Time
	// OnPod, when set, sees every version of the nodes' pods that their
	// watch delivers, before it is acted on: a scale test times binding
	// and running with it instead of a watch of its own. It is called from
	// one goroutine, must return quickly and must not modify the pod.
	OnPod func(*corev1.Pod)
}

// DefaultConfig returns a Config without Client and without nodes.
func DefaultConfig() Config {
	return Config{
		Prefix: "hollow-",
		Capacity: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("4"),
			corev1.ResourceMemory: resource.MustParse("16Gi"),
			corev1.ResourcePods:   resource.MustParse("110"),
		},
		LeaseInterval: 10 * time.Second, StatusInterval: time.Minute,
		NodeCIDR:         netip.MustParsePrefix("10.200.0.0/16"),
		SyntheticPodCIDR: netip.MustParsePrefix("100.64.0.0/10"),
		Parallelism:      32, RequestTimeout: 30 * time.Second,
		Logger: slog.Default(), Now: time.Now,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	names := c.nodeNames()
	switch {
	case c.Client == nil || c.Logger == nil || c.Now == nil:
		return errors.New("hollow: config: Client, Logger and Now are required")
	case len(names) == 0:
		return errors.New("hollow: config: no nodes (Names or Count)")
	case len(c.Names) > 0 && c.Count > 0:
		return errors.New("hollow: config: Names and Count are exclusive")
	case c.LeaseInterval < 0 || c.StatusInterval < 0 || c.Parallelism <= 0 || c.RequestTimeout <= 0:
		return fmt.Errorf("hollow: config: bad LeaseInterval %v, StatusInterval %v, Parallelism %d or RequestTimeout %v",
			c.LeaseInterval, c.StatusInterval, c.Parallelism, c.RequestTimeout)
	case !c.NodeCIDR.IsValid() || !c.NodeCIDR.Addr().Is4() || len(names) >= 1<<(32-c.NodeCIDR.Bits())-1:
		return fmt.Errorf("hollow: config: NodeCIDR %v has no IPv4 address for each of %d nodes", c.NodeCIDR, len(names))
	case !c.SyntheticPodCIDR.IsValid() || !c.SyntheticPodCIDR.Addr().Is4() || c.SyntheticPodCIDR.Bits() > 24 || len(names) > 1<<(24-c.SyntheticPodCIDR.Bits()):
		return fmt.Errorf("hollow: config: SyntheticPodCIDR %v has no /24 for each of %d nodes", c.SyntheticPodCIDR, len(names))
	}
	seen := map[string]bool{}
	for _, n := range names {
		if n == "" || seen[n] {
			return fmt.Errorf("hollow: config: node name %q empty or repeated", n)
		}
		seen[n] = true
	}
	return nil
}

func (c *Config) nodeNames() []string {
	if len(c.Names) > 0 {
		return c.Names
	}
	out := make([]string, c.Count)
	for i := range out {
		out[i] = c.Prefix + strconv.Itoa(i)
	}
	return out
}

// Hollow runs a set of hollow nodes. See the package comment.
type Hollow struct {
	cfg   Config
	nodes []*node
	index map[string]*node
}

// node is one hollow node. Its fields are fixed after New, except what
// its mutex guards.
type node struct {
	name   string
	ip     string
	bootID string

	mu sync.Mutex
	// uid is the Node object's, once registered.
	uid types.UID
	// pods gives pod IPs: the CIDR in use, and the IP of each pod.
	pods *podIPs
	// lease renews the node's Lease (one renewal at a time: every).
	lease nodestatus.Lease
}

// New returns a Hollow for cfg.
func New(cfg Config) (*Hollow, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &Hollow{cfg: cfg, index: map[string]*node{}}
	nodeIP := cfg.NodeCIDR.Masked().Addr()
	for i, name := range cfg.nodeNames() {
		nodeIP = nodeIP.Next()
		n := &node{name: name, ip: nodeIP.String(), bootID: nodestatus.StableID("boot", name)[:36], lease: nodestatus.Lease{Client: cfg.Client, Node: name}}
		n.pods = newPodIPs(syntheticCIDR(cfg.SyntheticPodCIDR, i))
		h.nodes = append(h.nodes, n)
		h.index[name] = n
	}
	return h, nil
}

// syntheticCIDR returns the ith /24 of p.
func syntheticCIDR(p netip.Prefix, i int) netip.Prefix {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(i) << 8
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 24)
}

// NodeNames returns the names of the nodes, in order.
func (h *Hollow) NodeNames() []string { return h.cfg.nodeNames() }

// Run registers the nodes and runs them until ctx ends; it returns nil
// then, after its goroutines have exited. It returns an error only when
// registration fails for good (the API refuses the Node).
func (h *Hollow) Run(ctx context.Context) error {
	if err := h.registerAll(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	h.cfg.Logger.Info("hollow nodes registered", "nodes", len(h.nodes))
	g, gctx := errgroup.WithContext(ctx)
	if h.cfg.LeaseInterval > 0 {
		g.Go(func() error { h.every(gctx, h.cfg.LeaseInterval, h.renewLease); return nil })
	}
	if h.cfg.StatusInterval > 0 {
		g.Go(func() error { h.every(gctx, h.cfg.StatusInterval, h.refreshStatus); return nil })
	}
	g.Go(func() error { return h.runPods(gctx) })
	return g.Wait()
}

// every runs fn for every node, at most Parallelism at a time, each
// period until ctx ends; failures are logged and retried next period.
func (h *Hollow) every(ctx context.Context, period time.Duration, fn func(context.Context, *node) error) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		g := errgroup.Group{}
		g.SetLimit(h.cfg.Parallelism)
		for _, n := range h.nodes {
			g.Go(func() error {
				rctx, cancel := context.WithTimeout(ctx, h.cfg.RequestTimeout)
				defer cancel()
				if err := fn(rctx, n); err != nil && ctx.Err() == nil {
					h.cfg.Logger.Warn("hollow node heartbeat failed", "node", n.name, "err", err)
				}
				return nil
			})
		}
		_ = g.Wait() // errors are logged per node
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// registerAll registers every node, retrying each until it is in or ctx
// ends.
func (h *Hollow) registerAll(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(h.cfg.Parallelism)
	for _, n := range h.nodes {
		g.Go(func() error {
			backoff := 100 * time.Millisecond
			for {
				err := h.register(gctx, n)
				if err == nil {
					return nil
				}
				if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
					return fmt.Errorf("hollow: registering node %s: %w", n.name, err)
				}
				h.cfg.Logger.Debug("hollow node not registered yet", "node", n.name, "err", err)
				select {
				case <-gctx.Done():
					return gctx.Err()
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
			}
		})
	}
	return g.Wait()
}

// register creates the Node (or takes over an existing one) and writes
// its status.
func (h *Hollow) register(ctx context.Context, n *node) error {
	rctx, cancel := context.WithTimeout(ctx, h.cfg.RequestTimeout)
	defer cancel()
	got, err := nodestatus.Register(rctx, h.cfg.Client, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: nodestatus.Labels(n.name, h.cfg.Labels)},
		Spec:       corev1.NodeSpec{Taints: slices.Clone(h.cfg.Taints)},
	}, func(old corev1.NodeStatus) corev1.NodeStatus { return h.nodeStatus(n, old) })
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.uid = got.UID
	n.mu.Unlock()
	return nil
}

// nodeStatus returns the status a kubelet posts, conditions heartbeating
// now; transition times are kept from old where the status is the same.
func (h *Hollow) nodeStatus(n *node, old corev1.NodeStatus) corev1.NodeStatus {
	st := corev1.NodeStatus{
		Capacity:    h.cfg.Capacity.DeepCopy(),
		Allocatable: h.cfg.Capacity.DeepCopy(),
		Phase:       old.Phase,
		Conditions:  nodestatus.Conditions(old.Conditions, h.cfg.Now()),
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: n.ip},
			{Type: corev1.NodeHostName, Address: n.name},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
		NodeInfo: corev1.NodeSystemInfo{
			MachineID:               nodestatus.StableID("machine", n.name)[:32],
			SystemUUID:              nodestatus.StableID("system", n.name)[:36],
			BootID:                  n.bootID,
			KernelVersion:           "6.1.0-hollow",
			OSImage:                 "Skiff hollow node",
			ContainerRuntimeVersion: "hollow://1.0.0",
			KubeletVersion:          KubeletVersion,
			OperatingSystem:         "linux",
			Architecture:            runtime.GOARCH,
		},
		Images: old.Images,
	}
	return st
}

// refreshStatus posts the node's conditions again, heartbeating now. As
// the kubelet, it reads the Node from the API server's replica first
// (resourceVersion 0, no round trip to the leader), and again with a
// current read only when that copy was stale (a conflict).
func (h *Hollow) refreshStatus(ctx context.Context, n *node) error {
	nodes := h.cfg.Client.CoreV1().Nodes()
	for _, rv := range []string{"0", ""} {
		cur, err := nodes.Get(ctx, n.name, metav1.GetOptions{ResourceVersion: rv})
		if apierrors.IsNotFound(err) && rv == "" {
			return h.register(ctx, n) // deleted under us: a kubelet registers again
		}
		if apierrors.IsNotFound(err) {
			continue // maybe not on this replica yet
		}
		if err != nil {
			return err
		}
		cur.Status = h.nodeStatus(n, cur.Status)
		if _, err = nodes.UpdateStatus(ctx, cur, metav1.UpdateOptions{}); !apierrors.IsConflict(err) || rv == "" {
			return err
		}
	}
	return nil
}

// renewLease renews the node's Lease, creating it (and its namespace)
// when missing, as a kubelet does.
func (h *Hollow) renewLease(ctx context.Context, n *node) error {
	n.mu.Lock()
	uid := n.uid
	n.mu.Unlock()
	return n.lease.Renew(ctx, uid, h.cfg.Now())
}
