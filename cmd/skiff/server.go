package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/skiff-sh/skiff/controlplane/master"
	"github.com/skiff-sh/skiff/controlplane/statusapi"
	"github.com/skiff-sh/skiff/raftstore"
)

type serverFlags struct {
	name, dataDir, peerAddr, advertise, httpAddr, apiAddr, join, logLevel string
	peerCert, peerKey, peerCA, peerServerName                             string
	httpCert, httpKey                                                     string
	profiling                                                             bool
	// watchHistory and compactInterval bound the store's history; see
	// raftstore.Config.WatchHistory and CompactInterval.
	watchHistory    int
	compactInterval time.Duration
	// tolerationSeconds is master.Config.DefaultTolerationSeconds.
	tolerationSeconds int64
	// nodeGrace, clusterCIDR and nodeMask are master.Config's
	// NodeMonitorGracePeriod, ClusterCIDR and NodeCIDRMaskSize.
	nodeGrace   time.Duration
	clusterCIDR string
	nodeMask    int
	gossipAddr  string
	// gcPercent is the Go garbage collector's GOGC for this process,
	// unless the GOGC environment variable is set.
	gcPercent int
	// memoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT), in
	// bytes; 0 for half of the memory the process may use.
	memoryLimit memoryLimit
}

// defaultGCPercent is a master's GOGC: the API server, the store and the
// controllers allocate at a high rate, and Go's default (100) collects so
// often that marking was a tenth of a busy master's CPU. 400 lets the heap
// grow to five times the live data instead of two (README, the scheduling
// benchmark: at 5,000 nodes and 30,000 pods 200 took 12-17% less CPU per
// scheduled pod than 100, 400 another 5%, and 12% more pods bound a
// second, for 1.1 GB more on the leader). The soft memory limit
// (--memory-limit) makes the collector run more often before the heap
// takes half of the machine's memory.
const defaultGCPercent = 400

func (f *serverFlags) register(fs *flag.FlagSet, single bool) {
	defDir, defPeer, defAPI, defHTTP, defGossip := "/var/lib/skiff", ":6444", ":6443", "127.0.0.1:6445", ":7946"
	if single {
		// The API listens on every address, as k3s's: pods reach it
		// through the node's (the kubernetes service); kubectl uses
		// 127.0.0.1. Raft and gossip stay on loopback.
		defPeer, defAPI, defGossip = "127.0.0.1:6444", ":6443", "127.0.0.1:7946"
	}
	fs.StringVar(&f.name, "name", "", "node name, kept in the data directory after the first start (default: host name plus a random suffix)")
	fs.StringVar(&f.dataDir, "data-dir", defDir, "data directory (Raft log, snapshots, node identity)")
	fs.StringVar(&f.peerAddr, "peer-addr", defPeer, "listen address for Raft and peer RPC")
	fs.StringVar(&f.advertise, "advertise-addr", "", "peer address other masters reach this one at (default: --peer-addr, with this host's IP when its host is empty)")
	fs.StringVar(&f.apiAddr, "api-addr", defAPI, "listen address of the Kubernetes API (HTTPS, client certificates of the cluster CA)")
	fs.StringVar(&f.gossipAddr, "gossip-addr", defGossip, "listen address (TCP and UDP) of the gossip pool that masters and workers share; a listener on every address advertises --advertise-addr's host")
	fs.StringVar(&f.httpAddr, "http-addr", defHTTP, "listen address for the plain status endpoint (/status, /healthz, /readyz, /metrics)")
	if !single {
		fs.StringVar(&f.join, "join", "", "comma-separated peer addresses of existing masters to join (first start only); without it a new cluster is bootstrapped")
	}
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&f.peerCert, "peer-cert-file", "", "certificate for mutual TLS between masters (with --peer-key-file and --peer-ca-file)")
	fs.StringVar(&f.peerKey, "peer-key-file", "", "key of --peer-cert-file")
	fs.StringVar(&f.peerCA, "peer-ca-file", "", "CA that signs every master's peer certificate")
	fs.StringVar(&f.peerServerName, "peer-server-name", "skiff-peer", "name every peer certificate carries (a DNS SAN)")
	fs.StringVar(&f.httpCert, "tls-cert-file", "", "certificate for the status endpoint (serves HTTPS when set, with --tls-key-file)")
	fs.StringVar(&f.httpKey, "tls-key-file", "", "key of --tls-cert-file")
	fs.BoolVar(&f.profiling, "profiling", true, "serve Go profiles under /debug/pprof/ on the status endpoint")
	fs.Int64Var(&f.tolerationSeconds, "default-toleration-seconds", master.DefaultConfig().DefaultTolerationSeconds, "seconds a pod without its own tolerations for the node.kubernetes.io/not-ready and unreachable NoExecute taints stays on a failed node before it is evicted (Kubernetes: 300)")
	mdef := master.DefaultConfig()
	fs.DurationVar(&f.nodeGrace, "node-monitor-grace-period", mdef.NodeMonitorGracePeriod, "how long a node may go without a heartbeat (lease renewal or status update) before it is marked unreachable; a worker the gossip pool reports dead is unreachable at once")
	fs.IntVar(&f.gcPercent, "gc-percent", defaultGCPercent, "the Go garbage collector's target heap growth (GOGC) of this process, in percent of the live heap; the GOGC environment variable, when set, takes precedence")
	fs.Var(&f.memoryLimit, "memory-limit", "the Go runtime's soft memory limit (GOMEMLIMIT) of this process, e.g. 4Gi: past it the garbage collector runs more often, whatever --gc-percent; default half of the memory the process may use (the machine's, or its cgroup's limit); the GOMEMLIMIT environment variable, when set, takes precedence")
	fs.StringVar(&f.clusterCIDR, "cluster-cidr", mdef.ClusterCIDR.String(), "the pods' address range; each node gets a part of it")
	fs.IntVar(&f.nodeMask, "node-cidr-mask-size", mdef.NodeCIDRMaskSize, "prefix length of each node's part of --cluster-cidr")
	def := raftstore.DefaultConfig()
	fs.IntVar(&f.watchHistory, "watch-history", def.WatchHistory, "how many recent changes each master keeps for watches that resume from a resourceVersion; a watch further behind gets 410 Expired and its client re-lists")
	fs.DurationVar(&f.compactInterval, "compact-interval", def.CompactInterval, "how often the leader compacts the store's history to the revision current one interval earlier; watches and paged lists from an older resourceVersion get 410 Expired (0 disables compaction)")
}

// peerTLS loads the mutual TLS configs of the peer listener, or nil, nil
// when no peer certificate is configured.
func (f *serverFlags) peerTLS() (server, client *tls.Config, err error) {
	return loadPeerTLS(f.peerCert, f.peerKey, f.peerCA, f.peerServerName)
}

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer, single bool) int {
	cmd := "server"
	if single {
		cmd = "up"
	}
	fs := flag.NewFlagSet("skiff "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f serverFlags
	f.register(fs, single)
	var af agentFlags
	runAgent := true
	if single {
		af.register(fs, true)
		fs.BoolVar(&runAgent, "agent", true, "run the agent too, so this machine runs the pods (false: a master only)")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "skiff %s: unexpected arguments %q\n", cmd, fs.Args())
		return 2
	}
	if (f.httpCert == "") != (f.httpKey == "") {
		fmt.Fprintf(stderr, "skiff %s: --tls-cert-file and --tls-key-file go together\n", cmd)
		return 2
	}
	scheme := "http"
	if f.httpCert != "" {
		scheme = "https"
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		fmt.Fprintf(stderr, "skiff %s: --log-level: %v\n", cmd, err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if f.gcPercent <= 0 {
		fmt.Fprintf(stderr, "skiff %s: --gc-percent must be positive\n", cmd)
		return 2
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(f.gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		limit := int64(f.memoryLimit)
		if limit == 0 {
			limit = availableMemory() / 2
		}
		if limit > 0 {
			debug.SetMemoryLimit(limit)
		}
	}
	clusterCIDR, err := netip.ParsePrefix(f.clusterCIDR)
	if err != nil {
		fmt.Fprintf(stderr, "skiff %s: --cluster-cidr: %v\n", cmd, err)
		return 2
	}

	cfg, err := f.storeConfig(logger)
	if err != nil {
		fmt.Fprintf(stderr, "skiff %s: %v\n", cmd, err)
		return 1
	}
	store, err := raftstore.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "skiff %s: %v\n", cmd, err)
		return 1
	}
	httpLn, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		fmt.Fprintf(stderr, "skiff %s: status endpoint: %v\n", cmd, err)
		return 1
	}
	srv := &http.Server{Handler: statusapi.Handler(store, f.profiling), ReadHeaderTimeout: 10 * time.Second}

	mcfg := master.DefaultConfig()
	mcfg.Store, mcfg.DataDir, mcfg.APIAddr, mcfg.Logger, mcfg.Profiling = store, cfg.DataDir, f.apiAddr, logger, f.profiling
	mcfg.DefaultTolerationSeconds, mcfg.NodeMonitorGracePeriod, mcfg.NodeCIDRMaskSize = f.tolerationSeconds, f.nodeGrace, f.nodeMask
	mcfg.ClusterCIDR, mcfg.GossipAddr, mcfg.SingleNode = clusterCIDR, f.gossipAddr, single
	if host, _, err := net.SplitHostPort(cfg.AdvertiseAddr); err == nil && host != "" {
		mcfg.AdvertiseHost = host
	}
	apiReady := make(chan struct{})
	mcfg.OnReady = func(url, kubeconfig string) {
		if single {
			fmt.Fprintf(stdout, `
The Kubernetes API is up at %s. Use it with:

  export KUBECONFIG=%s
  kubectl get nodes
  kubectl create deployment web --image=%s --replicas=3
  kubectl expose deployment web --port=80 --target-port=8080
  kubectl rollout status deployment/web
  kubectl get pods -o wide

`, url, kubeconfig, DemoImage)
		}
		close(apiReady)
	}
	api, err := master.New(mcfg)
	if err != nil {
		fmt.Fprintf(stderr, "skiff %s: %v\n", cmd, err)
		return 1
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return store.Run(gctx) })
	g.Go(func() error { return api.Run(gctx) })
	if single && runAgent {
		af.clusterCIDR = f.clusterCIDR
		if af.containerd == "" {
			af.containerd = filepath.Join(af.runDir, "containerd", "containerd.sock")
		}
		g.Go(func() error {
			if err := runUpAgent(gctx, store, &af, cfg.DataDir, apiReady, logger); err != nil {
				return fmt.Errorf("agent: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		var err error
		if f.httpCert != "" {
			err = srv.ServeTLS(httpLn, f.httpCert, f.httpKey)
		} else {
			err = srv.Serve(httpLn)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("status endpoint: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	if single {
		worker := `This host is also the cluster's worker: its pods run in containerd (a
containerd of Skiff's own in --run-dir). Press Ctrl-C to stop; the pods keep
running and are adopted at the next start.`
		if !runAgent {
			worker = "No agent (--agent=false): Pods are stored but not run. Press Ctrl-C to stop."
		}
		fmt.Fprintf(stdout, `Skiff single-node cluster starting (node %s, data in %s).

  status:   curl %s://%s/status
  health:   curl %s://%s/readyz

%s
`, cfg.NodeID, cfg.DataDir, scheme, httpLn.Addr(), scheme, httpLn.Addr(), worker)
	}

	logger.Info("skiff master starting", "node", cfg.NodeID, "peer_addr", cfg.BindAddr, "advertise", cfg.AdvertiseAddr, "http_addr", httpLn.Addr().String())
	if err := g.Wait(); err != nil && ctx.Err() == nil {
		fmt.Fprintf(stderr, "skiff %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// storeConfig turns the flags into the store's Config.
func (f *serverFlags) storeConfig(logger *slog.Logger) (raftstore.Config, error) {
	cfg := raftstore.DefaultConfig()
	cfg.Logger = logger
	cfg.DataDir = f.dataDir
	cfg.BindAddr = f.peerAddr
	id, err := nodeID(f.dataDir, f.name)
	if err != nil {
		return cfg, err
	}
	cfg.NodeID = id
	cfg.AdvertiseAddr, err = advertiseAddr(f.peerAddr, f.advertise)
	if err != nil {
		return cfg, err
	}
	for _, a := range strings.Split(f.join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.Join = append(cfg.Join, a)
		}
	}
	cfg.Bootstrap = len(cfg.Join) == 0
	if f.compactInterval < 0 {
		return cfg, fmt.Errorf("--compact-interval %v: must not be negative", f.compactInterval)
	}
	cfg.WatchHistory, cfg.CompactInterval = f.watchHistory, f.compactInterval
	if cfg.ServerTLS, cfg.ClientTLS, err = f.peerTLS(); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// nodeID returns the node's ID: the one kept in dataDir, else name, else a
// new one; a new ID is written to dataDir so restarts keep it.
func nodeID(dataDir, name string) (string, error) {
	path := filepath.Join(dataDir, "node-id")
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if name != "" && name != id {
			return "", fmt.Errorf("--name %q differs from the name %q kept in %s", name, id, path)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	id := name
	if id == "" {
		host, _ := os.Hostname()
		var suffix [3]byte
		rand.Read(suffix[:])
		id = strings.ToLower(host) + "-" + hex.EncodeToString(suffix[:])
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", err
	}
	return id, os.WriteFile(path, []byte(id+"\n"), 0o600)
}

// advertiseAddr picks the address other masters dial: the explicit one, or
// the listen address with this host's first non-loopback IP filled in when
// the listen host is empty or unspecified.
func advertiseAddr(listen, explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--peer-addr %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return listen, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return net.JoinHostPort(ipn.IP.String(), port), nil
		}
	}
	return net.JoinHostPort("127.0.0.1", port), nil
}
