// Package nodeipam gives every node a pod CIDR of its own from the cluster
// CIDR (DESIGN.md: 10.244.0.0/16, a /24 per node), as
// kube-controller-manager's node IPAM controller does with
// --allocate-node-cidrs. The node's agent gives its pods addresses from it,
// and every node routes to every other node's range.
//
//	c, err := nodeipam.New(cfg) // cfg from DefaultConfig, with Client set
//	err = c.Run(ctx)            // leader-only: until ctx ends; may run again later
//
// The ranges in use are the nodes' spec.podCIDR as listed at the start of
// each run plus those this run assigns, so a range is free again once its
// node is gone. Only the leader assigns, and it lists the nodes after its
// Raft barrier, so two nodes never get the same range. A node whose range
// cannot be given (the cluster CIDR is full) gets a CIDRNotAvailable event
// and is tried again whenever nodes change.
package nodeipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-sh/skiff/controlplane/internal/events"
)

// Defaults of Config, as DESIGN.md fixes them.
var (
	DefaultClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
)

// DefaultNodeMaskSize is the prefix length of each node's range.
const DefaultNodeMaskSize = 24

// Config configures a Controller.
type Config struct {
	// Client reads nodes and sets their pod CIDRs.
	Client kubernetes.Interface
	// Informers, if set, is shared with the other components of the
	// leadership term; nil gives this one informers of its own.
	Informers *sharedinformers.Provider
	Logger    *slog.Logger
	// ClusterCIDR is where the nodes' ranges come from; NodeMaskSize the
	// prefix length of each.
	ClusterCIDR  netip.Prefix
	NodeMaskSize int
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
}

// DefaultConfig returns a Config without Client.
func DefaultConfig() Config {
	return Config{Logger: slog.Default(), ClusterCIDR: DefaultClusterCIDR, NodeMaskSize: DefaultNodeMaskSize, RequestTimeout: 10 * time.Second}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Logger == nil:
		return errors.New("nodeipam: config: Client and Logger are required")
	case c.RequestTimeout <= 0:
		return fmt.Errorf("nodeipam: config: RequestTimeout %v must be positive", c.RequestTimeout)
	}
	return CheckRanges(c.ClusterCIDR, c.NodeMaskSize)
}

// CheckRanges reports whether nodes can get ranges of prefix length mask
// from cidr: an IPv4 network address, ranges of at most /30, at most 2^20
// of them.
func CheckRanges(cidr netip.Prefix, mask int) error {
	switch {
	case !cidr.IsValid() || !cidr.Addr().Is4() || cidr != cidr.Masked():
		return fmt.Errorf("nodeipam: cluster CIDR %s must be an IPv4 network address with its prefix", cidr)
	case mask < cidr.Bits() || mask > 30 || mask-cidr.Bits() > 20:
		return fmt.Errorf("nodeipam: node CIDR mask size %d must be within %d..30 and give at most 2^20 ranges", mask, cidr.Bits())
	}
	return nil
}

// Controller assigns pod CIDRs. See the package comment.
type Controller struct{ cfg Config }

// New returns a Controller for cfg.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Controller{cfg: cfg}, nil
}

// Run assigns ranges to nodes without one until ctx ends; it returns nil
// then.
func (c *Controller) Run(ctx context.Context) error {
	rec, stopRec := events.NewRecorder(c.cfg.Client, "node-ipam-controller")
	defer stopRec()
	factory, startInformers, releaseInformers := sharedinformers.Join(ctx, c.cfg.Informers, c.cfg.Client)
	defer releaseInformers()
	nodes := factory.Core().V1().Nodes()
	kick := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke}); err != nil {
		return err
	}
	startInformers()
	if !cache.WaitForCacheSync(ctx.Done(), nodes.Informer().HasSynced) {
		return nil
	}
	backoff := workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 10*time.Second)
	// written holds the ranges this controller wrote that the informer has
	// not shown yet: a round over a cache that lags its own writes must not
	// hand them to another node.
	written := map[string]netip.Prefix{}
	for {
		retry := false
		list, err := nodes.Lister().List(labels.Everything())
		if err != nil {
			return err
		}
		used := map[netip.Prefix]string{}
		listed := map[string]bool{}
		for _, n := range list {
			listed[n.Name] = true
			if p, err := netip.ParsePrefix(n.Spec.PodCIDR); err == nil {
				used[p.Masked()] = n.Name
				delete(written, n.Name) // the cache shows what the node has now
			}
		}
		for name, p := range written {
			if !listed[name] {
				delete(written, name) // deleted: its range is free again
				continue
			}
			used[p] = name
		}
		for _, n := range list {
			if n.Spec.PodCIDR != "" || n.DeletionTimestamp != nil || ctx.Err() != nil {
				continue
			}
			if _, ok := written[n.Name]; ok {
				continue // written; the cache has not caught up
			}
			p, ok := c.free(used)
			if !ok {
				rec.Eventf(n, corev1.EventTypeNormal, "CIDRNotAvailable", "Node %s status is now: CIDRNotAvailable", n.Name)
				retry = true
				continue
			}
			wrote, err := c.set(ctx, n, p)
			if err != nil {
				if ctx.Err() == nil && !apierrors.IsNotFound(err) {
					c.cfg.Logger.Warn("node ipam: assigning a pod CIDR failed, retrying", "node", n.Name, "err", err)
					retry = true
				}
				continue
			}
			if !wrote {
				continue // the node changed since it was listed: its update brings another round
			}
			used[p], written[n.Name] = n.Name, p
			c.cfg.Logger.Info("pod CIDR assigned", "node", n.Name, "cidr", p.String())
		}
		var after <-chan time.Time
		if retry {
			after = time.After(backoff.When("all"))
		} else {
			backoff.Forget("all")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		case <-after:
		}
	}
}

// free returns the first range not in used.
func (c *Controller) free(used map[netip.Prefix]string) (netip.Prefix, bool) {
	n := 1 << (c.cfg.NodeMaskSize - c.cfg.ClusterCIDR.Bits())
	step := uint32(1) << (32 - c.cfg.NodeMaskSize)
	base := c.cfg.ClusterCIDR.Addr().As4()
	b := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	for i := range n {
		a := b + uint32(i)*step
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), c.cfg.NodeMaskSize)
		if _, taken := used[p]; !taken {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// set writes p as node's pod CIDR, unless the node changed since it was
// listed (409 Conflict: wrote is false; the change brings another round).
func (c *Controller) set(ctx context.Context, n *corev1.Node, p netip.Prefix) (wrote bool, err error) {
	upd := n.DeepCopy()
	upd.Spec.PodCIDR, upd.Spec.PodCIDRs = p.String(), []string{p.String()}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	_, err = c.cfg.Client.CoreV1().Nodes().Update(rctx, upd, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return false, nil
	}
	return err == nil, err
}
