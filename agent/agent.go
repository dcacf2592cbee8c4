package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/skiff-sh/skiff/agent/internal/stream"

	"github.com/skiff-sh/skiff/agent/imagebuild"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-sh/skiff/agent/internal/containers"
	"github.com/skiff-sh/skiff/agent/internal/network"
	"github.com/skiff-sh/skiff/agent/internal/nodestatus"
	"github.com/skiff-sh/skiff/agent/internal/pods"
	"github.com/skiff-sh/skiff/agent/internal/volumes"
)

// Config configures an Agent.
type Config struct {
	// NodeName is the Node's name; NodeIP its InternalIP, which other
	// nodes route this node's pod CIDR to.
	NodeName string
	NodeIP   netip.Addr
	// DataDir keeps what must survive a restart (credentials, IPAM,
	// logs, volumes, a managed containerd's images); RunDir what must not
	// survive a reboot (sandbox namespaces, FIFOs).
	DataDir, RunDir string

	// Join and Token join a cluster: Join is a master's gossip address,
	// Token what `skiff token create --join` printed. GossipAddr is this
	// agent's own gossip listener.
	Join, Token, GossipAddr string
	// Credentials, instead of Join, give the agent its API client and the
	// TLS configuration of its endpoint directly (`skiff up`).
	Credentials *Credentials

	// ContainerdSocket is containerd's socket. With ManageContainerd, the
	// agent starts a containerd of its own there when none answers.
	ContainerdSocket string
	ManageContainerd bool
	// InsecureRegistries are pulled from with plain HTTP.
	InsecureRegistries []string
	// LogDriver is the skiff binary, which containerd runs as the
	// containers' log driver (`skiff log-driver`).
	LogDriver string

	// ListenAddr is the endpoint the API server calls for logs, exec,
	// attach and port-forward.
	ListenAddr string
	// ClusterCIDR holds every node's pod CIDR; ClusterDNS are the pods'
	// nameservers (none yet: pods get the host's resolvers).
	ClusterCIDR netip.Prefix
	ClusterDNS  []string
	// ResolvConf is the host resolver configuration pods with dnsPolicy
	// Default get (the kubelet's --resolv-conf).
	ResolvConf string
	// Bridge is the pods' Linux bridge.
	Bridge string
	// BackoffBase and BackoffMax bound crashing containers' restart
	// back-off (10 s doubling to 5 min, as the kubelet's).
	BackoffBase, BackoffMax time.Duration
	// Preload are images imported into containerd at start (the offline
	// demo images of `skiff up`).
	Preload []imagebuild.Spec
	// Addons run beside the pods once the pod network is up (the Service
	// proxy and cluster DNS, which cmd wires in: agent may not import
	// netproxy).
	Addons []Addon
	// Labels and Taints are set on the Node at registration.
	Labels map[string]string
	Taints []corev1.Taint
	Logger *slog.Logger
}

// Addon is a component that runs on every node beside the pods.
type Addon interface {
	// Run runs until ctx ends; an error stops the agent.
	Run(ctx context.Context, env AddonEnv) error
}

// AddonEnv is what an Addon knows of its node.
type AddonEnv struct {
	// REST is the node's API client configuration.
	REST     *rest.Config
	NodeName string
	NodeIP   netip.Addr
	// PodCIDR is this node's, ClusterCIDR every node's; Gateway is the
	// pods' bridge address (the first of PodCIDR), where node-local
	// services for pods listen.
	PodCIDR, ClusterCIDR netip.Prefix
	Gateway              netip.Addr
}

// Credentials are an agent's identity when it does not join with a token.
type Credentials struct {
	// REST is the API client configuration (user system:node:<name>).
	REST *rest.Config
	// StreamTLS serves the agent's endpoint: its serving certificate, and
	// the cluster CA to verify the API server's client certificate.
	StreamTLS *tls.Config
}

// DefaultConfig returns the settings of a worker with a system containerd.
func DefaultConfig() Config {
	exe, _ := os.Executable()
	return Config{
		DataDir: "/var/lib/skiff/agent", RunDir: "/run/skiff",
		GossipAddr:       ":7946",
		ContainerdSocket: "/run/containerd/containerd.sock",
		LogDriver:        exe,
		ListenAddr:       ":10250",
		ResolvConf:       "/etc/resolv.conf",
		ClusterCIDR:      network.DefaultClusterCIDR,
		Bridge:           network.DefaultBridge,
		Logger:           slog.Default(),
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.NodeName == "":
		return errors.New("agent: config: a node name is required")
	case !c.NodeIP.IsValid() || !c.NodeIP.Is4():
		return errors.New("agent: config: an IPv4 node IP is required")
	case c.DataDir == "" || c.RunDir == "" || !filepath.IsAbs(c.DataDir) || !filepath.IsAbs(c.RunDir):
		return errors.New("agent: config: DataDir and RunDir must be absolute paths")
	case c.Credentials == nil && c.Join == "":
		return errors.New("agent: config: --join is required (with --token the first time)")
	case c.Credentials != nil && (c.Credentials.REST == nil || c.Credentials.StreamTLS == nil):
		return errors.New("agent: config: Credentials need REST and StreamTLS")
	case c.ContainerdSocket == "" || c.ListenAddr == "" || c.Logger == nil:
		return errors.New("agent: config: ContainerdSocket, ListenAddr and Logger are required")
	}
	return nil
}

// Agent is a worker node.
type Agent struct {
	cfg Config
	log *slog.Logger
}

// New returns an Agent for cfg.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Agent{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeName)}, nil
}

// Run joins (or uses the given credentials), registers the Node and runs
// its pods until ctx ends. Containers keep running when it returns.
func (a *Agent) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	creds, pool, err := a.credentials(ctx, g)
	if err != nil {
		return errors.Join(err, g.Wait())
	}
	err = a.run(ctx, g, creds, pool)
	return errors.Join(err, g.Wait())
}

func (a *Agent) run(ctx context.Context, g *errgroup.Group, creds *Credentials, pool metaSetter) error {
	cfg := a.cfg
	if cfg.ManageContainerd {
		_, err := containers.StartDaemon(ctx, containers.DaemonConfig{
			Root: filepath.Join(cfg.DataDir, "containerd"), State: filepath.Join(cfg.RunDir, "containerd"),
			Socket: cfg.ContainerdSocket,
		})
		if err != nil {
			return fmt.Errorf("agent: containerd: %w", err)
		}
	}
	rcfg := containers.DefaultConfig()
	rcfg.Address, rcfg.RunDir, rcfg.LogDriver, rcfg.Logger = cfg.ContainerdSocket, cfg.RunDir, cfg.LogDriver, a.log
	rcfg.InsecureRegistries = cfg.InsecureRegistries
	rt, err := containers.New(rcfg)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	g.Go(func() error {
		defer rt.Close()
		return rt.Run(ctx)
	})
	if len(cfg.Preload) > 0 {
		var archive bytes.Buffer
		if err := imagebuild.WriteOCIArchive(&archive, cfg.Preload...); err != nil {
			return fmt.Errorf("agent: preloaded images: %w", err)
		}
		names, err := rt.ImportImages(ctx, &archive)
		if err != nil {
			return fmt.Errorf("agent: preloaded images: %w", err)
		}
		a.log.Info("images imported", "images", names)
	}
	version := containerdVersion(ctx, cfg.ContainerdSocket)

	client, err := kubernetes.NewForConfig(creds.REST)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	cidrs := make(chan netip.Prefix, 1)
	ncfg := nodestatus.DefaultConfig()
	ncfg.Client, ncfg.NodeName, ncfg.NodeIP, ncfg.DataDir = client, cfg.NodeName, cfg.NodeIP, cfg.DataDir
	ncfg.Port = int32(listenPort(cfg.ListenAddr))
	ncfg.Labels, ncfg.Taints, ncfg.RuntimeVersion, ncfg.Logger = cfg.Labels, cfg.Taints, version, a.log
	ncfg.OnPodCIDR = func(p netip.Prefix) { cidrs <- p }
	reporter, err := nodestatus.New(ncfg)
	if err != nil {
		return err
	}
	g.Go(func() error { return reporter.Run(ctx) })

	var podCIDR netip.Prefix
	select {
	case podCIDR = <-cidrs:
	case <-ctx.Done():
		return nil
	}
	a.log.Info("pod CIDR assigned", "podCIDR", podCIDR)
	if pool != nil {
		if err := pool.SetPodCIDR(podCIDR); err != nil {
			a.log.Warn("pod CIDR not gossiped", "err", err)
		}
	}
	netCfg := network.DefaultConfig()
	netCfg.ConfDir = filepath.Join(cfg.DataDir, "cni", "net.d")
	netCfg.CacheDir = filepath.Join(cfg.DataDir, "cni", "cache")
	netCfg.IPAMDir = filepath.Join(cfg.DataDir, "cni", "ipam")
	netCfg.Bridge, netCfg.PodCIDR, netCfg.ClusterCIDR, netCfg.NodeIP, netCfg.Logger = cfg.Bridge, podCIDR, cfg.ClusterCIDR, cfg.NodeIP, a.log
	nw, err := network.New(netCfg)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err := nw.EnsureMasquerade(); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	g.Go(func() error { return a.syncRoutes(ctx, client, nw) })

	env := AddonEnv{REST: rest.CopyConfig(creds.REST), NodeName: cfg.NodeName, NodeIP: cfg.NodeIP,
		PodCIDR: podCIDR, ClusterCIDR: cfg.ClusterCIDR, Gateway: podCIDR.Masked().Addr().Next()}
	for _, ad := range cfg.Addons {
		g.Go(func() error { return ad.Run(ctx, env) })
	}

	vcfg := volumes.DefaultConfig()
	vcfg.Client, vcfg.PodsDir, vcfg.Logger = client, filepath.Join(cfg.DataDir, "pods"), a.log
	vols, err := volumes.New(vcfg)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	g.Go(func() error { <-ctx.Done(); broadcaster.Shutdown(); return nil })

	pcfg := pods.DefaultConfig()
	pcfg.Client, pcfg.NodeName, pcfg.NodeIP = client, cfg.NodeName, cfg.NodeIP
	pcfg.Runtime, pcfg.Network, pcfg.Volumes = rt, nw, pods.VolumesAdapter{Manager: vols}
	pcfg.Recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: cfg.NodeName})
	pcfg.LogDir, pcfg.PodsDir = filepath.Join(cfg.DataDir, "logs"), filepath.Join(cfg.DataDir, "pods")
	pcfg.ClusterDNS, pcfg.Logger = cfg.ClusterDNS, a.log
	if cfg.ResolvConf != "" {
		pcfg.HostResolvConf = cfg.ResolvConf
	}
	if cfg.BackoffBase > 0 {
		pcfg.BackoffBase = cfg.BackoffBase
	}
	if cfg.BackoffMax > 0 {
		pcfg.BackoffMax = max(cfg.BackoffMax, pcfg.BackoffBase)
	}
	pm, err := pods.New(pcfg)
	if err != nil {
		return err
	}
	g.Go(func() error { return pm.Run(ctx) })
	return a.serveStream(ctx, g, creds, pm)
}

// syncRoutes keeps a route to every other node's pod CIDR via its node IP.
func (a *Agent) syncRoutes(ctx context.Context, client kubernetes.Interface, nw *network.Network) error {
	factory := informers.NewSharedInformerFactory(client, 0)
	nodes := factory.Core().V1().Nodes()
	changed := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
		}
		list, err := nodes.Lister().List(everything())
		if err != nil {
			continue
		}
		var routes []network.NodeRoute
		for _, n := range list {
			if n.Name == a.cfg.NodeName || n.Spec.PodCIDR == "" {
				continue
			}
			p, err := netip.ParsePrefix(n.Spec.PodCIDR)
			if err != nil {
				continue
			}
			for _, addr := range n.Status.Addresses {
				if ip, err := netip.ParseAddr(addr.Address); err == nil && addr.Type == corev1.NodeInternalIP {
					routes = append(routes, network.NodeRoute{PodCIDR: p, NodeIP: ip})
					break
				}
			}
		}
		if err := nw.SyncRoutes(routes); err != nil {
			a.log.Warn("routes to other nodes not all set", "err", err)
		}
	}
}

// serveStream serves the API server's calls for logs, exec, attach and
// port-forward.
func (a *Agent) serveStream(ctx context.Context, g *errgroup.Group, creds *Credentials, pm *pods.Manager) error {
	scfg := stream.DefaultConfig()
	scfg.Addr, scfg.TLS, scfg.Backend, scfg.Logger = a.cfg.ListenAddr, creds.StreamTLS, pm, a.log
	srv, err := stream.New(scfg)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err := srv.Listen(); err != nil {
		return fmt.Errorf("agent: endpoint: %w", err)
	}
	a.log.Info("endpoint for the API server listening", "addr", srv.Addr())
	g.Go(func() error { return srv.Run(ctx) })
	return nil
}
