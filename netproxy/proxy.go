package netproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/netproxy/internal/dataplane"
	"github.com/skiff-sh/skiff/netproxy/internal/dns"
	"github.com/skiff-sh/skiff/netproxy/internal/rules"
)

// DefaultDNSIP is the cluster DNS Service's address (kube-system/kube-dns).
var DefaultDNSIP = netip.MustParseAddr("10.96.0.10")

// Config configures a Proxy.
type Config struct {
	Client   kubernetes.Interface
	NodeName string
	// NodeIPs are the addresses NodePorts answer on.
	NodeIPs []netip.Addr
	// ClusterCIDR holds the pods' addresses: traffic to a Service from
	// outside it is masqueraded.
	ClusterCIDR netip.Prefix
	// ServiceCIDR holds the cluster IPs (the masters allocate them from
	// 10.96.0.0/12): their masquerading takes one rule instead of one per
	// service port (rules.Input.ServiceCIDR). A cluster IP outside it still
	// works; invalid (the zero prefix): one rule per service port.
	ServiceCIDR netip.Prefix
	// PodCIDR, if valid, is this node's pod range: it tells this node's
	// pods among endpoints that name no node (for hairpin traffic).
	PodCIDR netip.Prefix
	// DNSIP is the cluster DNS Service's address; DNSListen the node-local
	// listener it leads to (the pods' bridge address, port 53). An
	// invalid DNSListen runs no DNS server.
	DNSIP     netip.Addr
	DNSListen netip.AddrPort
	// Domain is the cluster domain; Upstreams the resolvers other names
	// are forwarded to ("" reads ResolvConf).
	Domain     string
	Upstreams  []string
	ResolvConf string
	// MinSyncInterval is the debounce: changes within it are applied
	// together; a lone change is applied at once.
	MinSyncInterval time.Duration
	// ResyncInterval is how often the rules are written again even when
	// nothing changed (repairing what someone else removed).
	ResyncInterval time.Duration
	// OnSync, if set, is called after every successful sync, from Run's
	// goroutine (for metrics and benchmarks).
	OnSync func(SyncInfo)
	Logger *slog.Logger
}

// SyncInfo describes one sync of the rules.
type SyncInfo struct {
	// Full is set for a sync that wrote every chain.
	Full bool
	// Took is the sync itself: computing, diffing, writing.
	Took time.Duration
	// SinceObserved is how long ago the informers observed the oldest
	// change this sync carries to the kernel (0 for a periodic resync):
	// the network programming latency.
	SinceObserved time.Duration
}

// DefaultConfig returns a Config without Client, NodeName, NodeIPs and
// DNSListen.
func DefaultConfig() Config {
	return Config{
		ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"),
		ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"),
		DNSIP:       DefaultDNSIP, Domain: "cluster.local", ResolvConf: "/etc/resolv.conf",
		MinSyncInterval: 20 * time.Millisecond, ResyncInterval: 15 * time.Minute,
		Logger: slog.Default(),
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Logger == nil:
		return errors.New("netproxy: config: Client and Logger are required")
	case c.NodeName == "" || len(c.NodeIPs) == 0:
		return errors.New("netproxy: config: NodeName and NodeIPs are required")
	case !c.ClusterCIDR.IsValid():
		return errors.New("netproxy: config: ClusterCIDR is required")
	case c.ServiceCIDR.IsValid() && !c.ServiceCIDR.Addr().Is4():
		return fmt.Errorf("netproxy: config: ServiceCIDR %v is not an IPv4 prefix", c.ServiceCIDR)
	case c.MinSyncInterval < 0 || c.ResyncInterval <= 0:
		return errors.New("netproxy: config: MinSyncInterval must not be negative, ResyncInterval must be positive")
	}
	return nil
}

// Proxy programs one node's Service rules and serves its cluster DNS.
type Proxy struct {
	cfg Config
	log *slog.Logger
	dp  *dataplane.Dataplane

	// rules renders again only what changed since the last sync (the
	// listers hand out the informers' objects, replaced when they change).
	rules rules.Cache

	synced chan struct{}
	// udp are the UDP service VIPs and endpoint addresses of the last
	// sync; those gone since have their conntrack entries flushed.
	udp map[netip.Addr]bool
}

// New returns a Proxy for cfg.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dcfg := dataplane.DefaultConfig()
	dcfg.Logger = cfg.Logger
	dp, err := dataplane.New(dcfg)
	if err != nil {
		return nil, fmt.Errorf("netproxy: %w", err)
	}
	return &Proxy{cfg: cfg, log: cfg.Logger, dp: dp, synced: make(chan struct{})}, nil
}

// Synced is closed after the first full sync of the rules.
func (p *Proxy) Synced() <-chan struct{} { return p.synced }

// Run watches Services and EndpointSlices and keeps the node's rules
// equal to what they say until ctx ends; it also serves cluster DNS.
// Rules stay in place when it returns: Services keep working while the
// agent restarts, and the next Run replaces them in one atomic step.
func (p *Proxy) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(p.cfg.Client, 0)
	svcInf := factory.Core().V1().Services()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	if err := sliceInf.Informer().AddIndexers(cache.Indexers{byService: sliceService}); err != nil {
		return err
	}
	changed := make(chan struct{}, 1)
	var pendingMu sync.Mutex
	var pendingSince time.Time // the oldest change not yet synced
	poke := func() {
		pendingMu.Lock()
		if pendingSince.IsZero() {
			pendingSince = time.Now()
		}
		pendingMu.Unlock()
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { poke() }, UpdateFunc: func(any, any) { poke() }, DeleteFunc: func(any) { poke() },
	}
	if _, err := svcInf.Informer().AddEventHandler(handler); err != nil {
		return err
	}
	if _, err := sliceInf.Informer().AddEventHandler(handler); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.Informer().HasSynced, sliceInf.Informer().HasSynced) {
		return nil
	}
	services := func() []*corev1.Service {
		l, _ := svcInf.Lister().List(labels.Everything())
		return l
	}
	slicesOf := func(ns, name string) []*discoveryv1.EndpointSlice {
		objs, _ := sliceInf.Informer().GetIndexer().ByIndex(byService, ns+"/"+name)
		out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
		for _, o := range objs {
			out = append(out, o.(*discoveryv1.EndpointSlice))
		}
		return out
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	var dnsErr chan error
	if p.cfg.DNSListen.IsValid() {
		service := func(ns, name string) *corev1.Service {
			s, err := svcInf.Lister().Services(ns).Get(name)
			if err != nil {
				return nil
			}
			return s
		}
		srv, err := p.dnsServer(services, service, slicesOf)
		if err != nil {
			return err
		}
		dnsErr = make(chan error, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			dnsErr <- srv.Run(ctx)
		}()
	}
	if err := p.dp.EnsureJumps(); err != nil {
		return fmt.Errorf("netproxy: %w", err)
	}
	resync := time.NewTicker(p.cfg.ResyncInterval)
	defer resync.Stop()
	first, full := true, true
	for {
		start := time.Now()
		pendingMu.Lock()
		observed := pendingSince
		pendingSince = time.Time{}
		pendingMu.Unlock()
		wasFull := full
		var retry <-chan time.Time
		if err := p.sync(ctx, services(), allSlices(sliceInf.Lister()), full); err != nil {
			pendingMu.Lock()
			if pendingSince.IsZero() || (!observed.IsZero() && observed.Before(pendingSince)) {
				pendingSince = observed // still to be carried
			}
			pendingMu.Unlock()
			full = true // write everything again next time
			retry = time.After(time.Second)
			p.log.Warn("service rules not applied", "err", err)
		} else if first {
			p.log.Info("service rules in place", "took", time.Since(start).Round(time.Millisecond))
			close(p.synced)
			first, full = false, false
		} else {
			full = false
		}
		if p.cfg.OnSync != nil && retry == nil {
			info := SyncInfo{Full: wasFull, Took: time.Since(start)}
			if !observed.IsZero() {
				info.SinceObserved = time.Since(observed)
			}
			p.cfg.OnSync(info)
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-dnsErr:
			return fmt.Errorf("netproxy: dns: %w", err)
		case <-retry:
		case <-changed:
			// Debounce: let a burst of changes land, then apply them all.
			if wait := p.cfg.MinSyncInterval - time.Since(start); wait > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(wait):
				}
			}
		case <-resync.C:
			// Now and then everything is written again, repairing what
			// someone else changed.
			if err := p.dp.EnsureJumps(); err != nil {
				p.log.Warn("service jump rules not ensured", "err", err)
			}
			full = true
		}
	}
}

// sync computes and applies the rules for the current objects: every
// chain when full, else only the chains that changed since the last sync.
func (p *Proxy) sync(ctx context.Context, svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice, full bool) error {
	in := rules.Input{
		Services: svcs, Slices: slices, NodeName: p.cfg.NodeName, NodeIPs: p.cfg.NodeIPs,
		ClusterCIDR: p.cfg.ClusterCIDR, ServiceCIDR: p.cfg.ServiceCIDR, PodCIDR: p.cfg.PodCIDR,
	}
	if p.cfg.DNSListen.IsValid() && p.cfg.DNSIP.IsValid() {
		in.LocalDNS = &rules.LocalDNS{VIP: p.cfg.DNSIP, Target: p.cfg.DNSListen}
	}
	start := time.Now()
	res := p.rules.Compute(in)
	computed := time.Since(start)
	apply := p.dp.SyncTable
	if full {
		apply = p.dp.ApplyTable
	}
	if err := apply(ctx, res.NAT, dataplane.Table(res.NATTable), res.Filter, res.NATChains, res.FilterChains); err != nil {
		return err
	}
	udp := udpTargets(svcs, slices)
	var gone []netip.Addr
	for ip := range p.udp {
		if !udp[ip] {
			gone = append(gone, ip)
		}
	}
	p.udp = udp
	if len(gone) > 0 {
		// A client's next datagram must be NATed afresh, not follow a
		// stale entry to an endpoint that is gone.
		if err := dataplane.FlushConntrackUDP(gone); err != nil {
			p.log.Warn("conntrack entries of removed UDP endpoints not flushed", "err", err)
		}
	}
	p.log.Debug("service rules applied", "services", res.Services, "endpoints", res.Endpoints,
		"compute", computed, "apply", time.Since(start)-computed)
	return nil
}

func (p *Proxy) dnsServer(services func() []*corev1.Service, service func(ns, name string) *corev1.Service, slices func(ns, name string) []*discoveryv1.EndpointSlice) (*dns.Server, error) {
	ups := p.cfg.Upstreams
	if len(ups) == 0 && p.cfg.ResolvConf != "" {
		var err error
		if ups, err = dns.ParseResolvConf(p.cfg.ResolvConf); err != nil {
			p.log.Warn("no upstream resolvers for cluster DNS", "err", err)
		}
	}
	dcfg := dns.DefaultConfig()
	dcfg.Services, dcfg.Slices, dcfg.Domain, dcfg.Upstreams, dcfg.Logger = services, slices, p.cfg.Domain, ups, p.log
	dcfg.Service = service
	dcfg.Listen = []string{net.JoinHostPort(p.cfg.DNSListen.Addr().String(), strconv.Itoa(int(p.cfg.DNSListen.Port())))}
	return dns.New(dcfg)
}

const byService = "service"

// sliceService indexes EndpointSlices by namespace/service.
func sliceService(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

func allSlices(l interface {
	List(labels.Selector) ([]*discoveryv1.EndpointSlice, error)
}) []*discoveryv1.EndpointSlice {
	out, _ := l.List(labels.Everything())
	return out
}

// Cleanup removes every rule and chain a Proxy installed.
func Cleanup() error { return dataplane.Cleanup() }

// udpTargets are the cluster IPs of UDP service ports and the ready
// endpoint addresses behind them.
func udpTargets(svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	udpSvc := map[string]bool{}
	for _, s := range svcs {
		for _, port := range s.Spec.Ports {
			if port.Protocol != corev1.ProtocolUDP {
				continue
			}
			udpSvc[s.Namespace+"/"+s.Name] = true
			if ip, err := netip.ParseAddr(s.Spec.ClusterIP); err == nil {
				out[ip] = true
			}
		}
	}
	for _, sl := range slices {
		if !udpSvc[sl.Namespace+"/"+sl.Labels[discoveryv1.LabelServiceName]] {
			continue
		}
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					out[ip] = true
				}
			}
		}
	}
	return out
}
