package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/skiff-sh/skiff/netproxy"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-sh/skiff/agent"
	"github.com/skiff-sh/skiff/controlplane/bootstrap"
)

// agentFlags are the flags of `skiff agent` (and the agent half of `skiff up`).
type agentFlags struct {
	nodeName, nodeIP    string
	dataDir, runDir     string
	join, token, gossip string
	containerd          string
	manageContainerd    bool
	listen              string
	clusterCIDR         string
	clusterDNS          string
	bridge              string
	labels              string
	taints              string
	insecure            string
	logLevel            string
	resolvConf          string
	serviceProxy        bool
	backoffBase         time.Duration
	backoffMax          time.Duration
}

func (f *agentFlags) register(fs *flag.FlagSet, single bool) {
	def := agent.DefaultConfig()
	fs.StringVar(&f.nodeName, "node-name", "", "the Node's name (default: this host's name)")
	fs.StringVar(&f.nodeIP, "node-ip", "", "the Node's InternalIP, which other nodes route this node's pods through (default: the address of the default route's interface)")
	if single {
		fs.StringVar(&f.containerd, "containerd-socket", "", "containerd's socket (default: a containerd of Skiff's own, RUN_DIR/containerd/containerd.sock)")
	} else {
		fs.StringVar(&f.containerd, "containerd-socket", def.ContainerdSocket, "containerd's socket")
	}
	fs.BoolVar(&f.manageContainerd, "manage-containerd", true, "start a containerd of the agent's own on --containerd-socket when none answers there (it outlives the agent, as k3s's)")
	fs.StringVar(&f.listen, "listen", def.ListenAddr, "listen address of the agent's endpoint for the API server (logs, exec, attach, port-forward)")
	if !single { // up: the master's --cluster-cidr
		fs.StringVar(&f.clusterCIDR, "cluster-cidr", def.ClusterCIDR.String(), "the pods' address range (the masters' --cluster-cidr)")
	}
	fs.BoolVar(&f.serviceProxy, "service-proxy", true, "program Service virtual IPs and NodePorts (iptables) and serve cluster DNS on this node")
	fs.StringVar(&f.clusterDNS, "cluster-dns", netproxy.DefaultDNSIP.String(), "comma-separated nameservers of ClusterFirst pods; the first is the cluster DNS address this node answers when --service-proxy is on (\"\": pods use the host's resolvers)")
	fs.StringVar(&f.resolvConf, "resolv-conf", def.ResolvConf, "resolver configuration for pods with dnsPolicy Default, and the upstreams of cluster DNS")
	fs.StringVar(&f.bridge, "bridge", def.Bridge, "the pods' Linux bridge")
	fs.StringVar(&f.labels, "node-labels", "", "labels for the Node at registration, k=v,k2=v2")
	fs.StringVar(&f.taints, "register-with-taints", "", "taints for the Node at registration, key=value:Effect,...")
	fs.DurationVar(&f.backoffBase, "restart-backoff", 10*time.Second, "first restart back-off of a crashing container; it doubles with every restart")
	fs.DurationVar(&f.backoffMax, "max-restart-backoff", 5*time.Minute, "longest restart back-off of a crashing container")
	fs.StringVar(&f.insecure, "insecure-registries", "", "comma-separated registry hosts (host:port) pulled from with plain HTTP")
	fs.StringVar(&f.runDir, "run-dir", def.RunDir, "runtime directory, on a tmpfs (pods' namespaces, FIFOs)")
	if single {
		return
	}
	fs.StringVar(&f.dataDir, "data-dir", def.DataDir, "data directory (credentials, pod IPs, logs, volumes, a managed containerd's images)")
	fs.StringVar(&f.join, "join", "", "gossip address (host:port) of any master")
	fs.StringVar(&f.token, "token", "", "join token from 'skiff token create --join' (or the file it is in, with @FILE)")
	fs.StringVar(&f.gossip, "gossip-addr", def.GossipAddr, "listen address (TCP and UDP) of this agent's gossip member")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
}

// config turns the flags into an agent.Config.
func (f *agentFlags) config(logger *slog.Logger) (agent.Config, error) {
	cfg := agent.DefaultConfig()
	cfg.Logger = logger
	cfg.NodeName = f.nodeName
	if cfg.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return cfg, err
		}
		cfg.NodeName = strings.ToLower(h)
	}
	if f.nodeIP != "" {
		ip, err := netip.ParseAddr(f.nodeIP)
		if err != nil {
			return cfg, fmt.Errorf("--node-ip: %w", err)
		}
		cfg.NodeIP = ip
	} else {
		cfg.NodeIP = defaultNodeIP()
	}
	if f.dataDir != "" {
		cfg.DataDir = f.dataDir
	}
	if f.runDir != "" {
		cfg.RunDir = f.runDir
	}
	cfg.Join, cfg.GossipAddr = f.join, f.gossip
	cfg.Token = f.token
	if path, ok := strings.CutPrefix(f.token, "@"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("--token: %w", err)
		}
		cfg.Token = strings.TrimSpace(string(b))
	}
	cfg.ContainerdSocket, cfg.ManageContainerd, cfg.ListenAddr, cfg.Bridge = f.containerd, f.manageContainerd, f.listen, f.bridge
	p, err := netip.ParsePrefix(f.clusterCIDR)
	if err != nil {
		return cfg, fmt.Errorf("--cluster-cidr: %w", err)
	}
	cfg.ClusterCIDR = p
	cfg.ClusterDNS = splitList(f.clusterDNS)
	cfg.ResolvConf = f.resolvConf
	if f.serviceProxy {
		sp := serviceProxy{resolvConf: f.resolvConf, logger: logger}
		if len(cfg.ClusterDNS) > 0 {
			ip, err := netip.ParseAddr(cfg.ClusterDNS[0])
			if err != nil {
				return cfg, fmt.Errorf("--cluster-dns: %w", err)
			}
			sp.dnsIP = ip
		}
		cfg.Addons = append(cfg.Addons, sp)
	}
	if f.backoffBase <= 0 || f.backoffMax < f.backoffBase {
		return cfg, fmt.Errorf("--restart-backoff %v and --max-restart-backoff %v: want 0 < restart-backoff ≤ max-restart-backoff", f.backoffBase, f.backoffMax)
	}
	cfg.BackoffBase, cfg.BackoffMax = f.backoffBase, f.backoffMax
	cfg.InsecureRegistries = splitList(f.insecure)
	if f.labels != "" {
		cfg.Labels = map[string]string{}
		var refused []string
		for _, kv := range splitList(f.labels) {
			k, v, _ := strings.Cut(kv, "=")
			cfg.Labels[k] = v
			if !bootstrap.NodeMaySetLabel(k) {
				refused = append(refused, k)
			}
		}
		if len(refused) > 0 {
			// As the kubelet refuses them: the masters would refuse the Node.
			return cfg, fmt.Errorf("--node-labels: a node may not set %s on itself (under kubernetes.io and k8s.io only kubelet.kubernetes.io/, node.kubernetes.io/ and the labels a kubelet sets; nothing under node-restriction.kubernetes.io/); label the Node with kubectl instead", strings.Join(refused, ", "))
		}
	}
	for _, t := range splitList(f.taints) {
		kv, effect, ok := strings.Cut(t, ":")
		if !ok {
			return cfg, fmt.Errorf("--register-with-taints: %q has no :Effect", t)
		}
		k, v, _ := strings.Cut(kv, "=")
		cfg.Taints = append(cfg.Taints, corev1.Taint{Key: k, Value: v, Effect: corev1.TaintEffect(effect)})
	}
	return cfg, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// defaultNodeIP is the source address of this host's default route, or
// its first non-loopback IPv4, or 127.0.0.1.
func defaultNodeIP() netip.Addr {
	// A UDP "connection" sends nothing; it only picks the route's source.
	if c, err := net.Dial("udp4", "192.0.2.1:9"); err == nil {
		defer c.Close()
		if a, ok := netip.AddrFromSlice(c.LocalAddr().(*net.UDPAddr).IP.To4()); ok {
			return a
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
				ip, _ := netip.AddrFromSlice(ipn.IP.To4())
				return ip
			}
		}
	}
	return netip.MustParseAddr("127.0.0.1")
}

// runAgent runs a worker (`skiff agent`) until ctx ends.
func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("skiff agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: skiff agent --join MASTER:7946 --token TOKEN [flags]\n\nRuns a worker: joins the cluster, registers its Node and runs its Pods through containerd.\n\nflags:\n")
		fs.PrintDefaults()
	}
	var f agentFlags
	f.register(fs, false)
	cleanup := fs.Bool("cleanup-iptables", false, "remove every Skiff iptables rule and chain (pod network and services) and the routes to other nodes' pods from this host, then exit")
	fs.BoolVar(cleanup, "cleanup-network", false, "the same as --cleanup-iptables")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cleanup {
		if err := errors.Join(netproxy.Cleanup(), agent.CleanupNetwork()); err != nil {
			fmt.Fprintf(stderr, "skiff agent: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, "removed Skiff's iptables chains (pod network and services) and routes")
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "skiff agent: unexpected arguments %q\n", fs.Args())
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		fmt.Fprintf(stderr, "skiff agent: --log-level: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg, err := f.config(logger)
	if err != nil {
		fmt.Fprintf(stderr, "skiff agent: %v\n", err)
		return 2
	}
	if cfg.Join == "" || cfg.Token == "" {
		fmt.Fprintln(stderr, "skiff agent: --join and --token are required (the token comes from 'skiff token create --join' on a master)")
		return 2
	}
	a, err := agent.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "skiff agent: %v\n", err)
		return 2
	}
	fmt.Fprintf(stdout, "skiff agent: node %s (%s) joining through %s\n", cfg.NodeName, cfg.NodeIP, cfg.Join)
	if err := a.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "skiff agent: %v\n", err)
		return 1
	}
	return 0
}
