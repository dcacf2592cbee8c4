// Package lab runs a multi-host Skiff cluster on one Linux machine for the
// end-to-end tests and `make lab`: every host is a network namespace with
// its own IP on one Linux bridge, masters are real `skiff server` processes
// and workers real `skiff agent` processes inside their host's namespace,
// each worker with its own containerd instance, and a real docker-registry
// on the bridge serves test images built at start (busybox-static and a
// small Go HTTP server, see testimages/).
//
// Call sequence:
//
//	l, err := lab.Up(ctx, lab.Config{Masters: 1, Workers: 2, Dir: dir, SkiffBin: bin})
//	defer l.Down()                      // idempotent; removes everything Up created
//	kubectl --kubeconfig l.Kubeconfig() ...
//	l.StartAgent(ctx, 0)                // `skiff agent --join ...` in worker 0 (see AgentArgs)
//	l.Exec(ctx, l.Worker(1), "ping", "-c1", l.Master(0).IP.String())
//	l.KillAgent(0); l.CutLinks(l.Worker(1)); l.RestoreLinks(l.Worker(1))
//
// Tests use Start(t, cfg), which skips without root, and registers Down
// (after printing the logs' tails when the test failed) with t.Cleanup.
//
// Everything Up creates (bridge, namespaces, links, iptables rules,
// processes with their start times, containerd sockets) is recorded in
// Dir/lab.json as it is created, so Cleanup(dir) — `make lab-down` — removes
// it after the process that ran Up crashed. Names carry a per-lab ID
// ("sk<id>"), and every lab gets its own /24 in 10.99.0.0/16, so several
// labs (parallel test packages, `make lab`) coexist on one machine.
//
// Processes enter their host's network namespace with nsenter --net only:
// the mount namespace stays shared, so a worker's containerd, shims and
// agent see each other's mounts; every path is under Dir, distinct per host.
package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Ports every host uses on its own IP.
const (
	APIPort      = 6443
	PeerPort     = 6444
	StatusPort   = 6445
	GossipPort   = 7946
	AgentPort    = 10250 // the agent's stream endpoint (logs, exec, port-forward)
	RegistryPort = 5000  // on the bridge IP
)

// Test image repositories in the lab registry (prefix Registry()+"/").
const (
	// BusyboxImage is busybox-static with applet symlinks; Cmd sh.
	BusyboxImage = "skiff/busybox:1"
	// EchoImage is testimages/echoserver on top of the busybox files:
	// HTTP on $PORT (8080) answering "hostname=<name>" on / and echoing /echo.
	EchoImage = "skiff/echoserver:1"
)

// Errors of the lab.
var (
	// ErrNotRoot is returned by Up when not running as root.
	ErrNotRoot = errors.New("lab: needs root (network namespaces, bridges, containerd)")
	// ErrExists is returned by Up when Dir already holds a lab's state file:
	// bring that lab down (Cleanup, `make lab-down`) first.
	ErrExists = errors.New("lab: a lab is already recorded in this directory")
	// ErrNoAgent is returned by StartAgent before the agent can be started
	// (no masters to join) and by KillAgent for a worker without one.
	ErrNoAgent = errors.New("lab: agent not running")
)

// AgentParams are what a worker's agent is started with.
type AgentParams struct {
	Join             string     // first master's gossip address, IP:7946
	Token            string     // from `skiff token create --join`
	NodeName         string     // the host's name, e.g. "w0"
	NodeIP           netip.Addr // the host's IP
	DataDir          string     // Dir/w0/agent
	RunDir           string     // Dir/w0/run
	ContainerdSocket string     // Dir/w0/containerd/c.sock
	GossipAddr       string     // IP:7946
	Listen           string     // IP:10250, the stream endpoint
	Registry         string     // the lab registry, host:port, plain HTTP
}

// DefaultAgentArgs is the `skiff` command line of a worker's agent:
//
//	skiff agent --join M0IP:7946 --token TOKEN --node-name w0 --node-ip IP
//	  --data-dir DIR/w0/agent --run-dir DIR/w0/run --containerd-socket DIR/w0/containerd/c.sock
//	  --gossip-addr IP:7946 --listen IP:10250 --insecure-registries REGISTRY
func DefaultAgentArgs(p AgentParams) []string {
	return []string{"agent",
		"--join", p.Join, "--token", p.Token,
		"--node-name", p.NodeName, "--node-ip", p.NodeIP.String(),
		"--data-dir", p.DataDir, "--run-dir", p.RunDir,
		"--containerd-socket", p.ContainerdSocket,
		"--gossip-addr", p.GossipAddr, "--listen", p.Listen,
		"--insecure-registries", p.Registry,
	}
}

// Config says what lab Up builds.
type Config struct {
	// Masters and Workers are how many hosts of each kind (Masters may be 0
	// only when no agent is started).
	Masters, Workers int
	// Dir holds everything of the lab: state file, logs, data dirs,
	// containerd roots, registry storage. Created if missing; Down removes it.
	Dir string
	// SkiffBin is the skiff binary masters and agents run.
	SkiffBin string
	// ServerArgs are extra `skiff server` flags for every master.
	ServerArgs []string
	// AgentArgs builds a worker's agent command line (arguments of skiff);
	// nil means DefaultAgentArgs. ExtraAgentArgs are appended to it.
	AgentArgs      func(AgentParams) []string
	ExtraAgentArgs []string
	// StartAgents starts every worker's agent at the end of Up.
	StartAgents bool
	// NoImages skips building and pushing the test images (the registry
	// still runs).
	NoImages bool
	// ModuleDir is the Skiff module's root, where the test images' Go
	// programs are built (default: from `go env GOMOD`).
	ModuleDir string
	// Detach starts processes in their own sessions without a parent-death
	// signal, so they outlive the process that ran Up (`make lab`). By
	// default they are killed when it dies.
	Detach bool
	// Logger receives progress (default: discard).
	Logger *slog.Logger
}

// DefaultConfig is one master and two workers.
func DefaultConfig() Config {
	return Config{Masters: 1, Workers: 2, Logger: slog.New(slog.DiscardHandler)}
}

// Validate checks cfg.
func (c Config) Validate() error {
	switch {
	case c.Masters < 0 || c.Masters > 80:
		return fmt.Errorf("lab: config: Masters %d: want 0..80", c.Masters)
	case c.Workers < 0 || c.Workers > 150:
		return fmt.Errorf("lab: config: Workers %d: want 0..150", c.Workers)
	case c.Dir == "":
		return errors.New("lab: config: Dir is required")
	case c.SkiffBin == "" && c.Masters > 0:
		return errors.New("lab: config: SkiffBin is required")
	case c.StartAgents && c.Masters == 0 && c.Workers > 0:
		return errors.New("lab: config: StartAgents needs a master")
	}
	return nil
}

// Role is a host's kind.
type Role string

const (
	RoleMaster Role = "master"
	RoleWorker Role = "worker"
)

// Host is one network namespace of the lab.
type Host struct {
	Name      string // "m0", "w1": also the master's --name and the worker's node name
	Role      Role
	Index     int        // among hosts of its role
	IP        netip.Addr // on eth0 inside the namespace
	NetNS     string     // network namespace name (ip netns)
	NetNSPath string     // /run/netns/<NetNS>
	Veth      string     // the bridge side of the host's link, in the root namespace
	Dir       string     // Dir/<Name>

	// Masters
	DataDir    string // Dir/m0/data
	PeerAddr   string // IP:6444
	APIAddr    string // IP:6443
	StatusAddr string // IP:6445 (plain http /readyz, /status)
	GossipAddr string // IP:7946 (masters and agents)

	// Workers
	ContainerdSocket string // Dir/w0/containerd/c.sock
	AgentDataDir     string // Dir/w0/agent
	AgentRunDir      string // Dir/w0/run
	AgentListen      string // IP:10250
}

// Lab is a running lab. Its methods may be called from one goroutine at a
// time (tests), except the accessors.
type Lab struct {
	cfg    Config
	dir    string // absolute, symlinks resolved
	log    *slog.Logger
	id     string
	subnet netip.Prefix
	gw     netip.Addr
	bridge string

	masters, workers []*Host

	mu    sync.Mutex // guards st and procs
	st    *state
	procs map[string]*proc

	token   string
	imgs    Images
	downErr error
	down    bool
}

// Images names the test images in the lab registry.
type Images struct {
	Busybox string // Registry()+"/"+BusyboxImage
	Echo    string // Registry()+"/"+EchoImage
	// Archive is an OCI archive of both (for `skiff image import`), or "".
	Archive string
}

// ID returns the lab's ID, the prefix part of every name it creates.
func (l *Lab) ID() string { return l.id }

// Dir returns the lab's directory.
func (l *Lab) Dir() string { return l.dir }

// Subnet returns the lab's /24; the bridge has its first address.
func (l *Lab) Subnet() netip.Prefix { return l.subnet }

// BridgeIP returns the bridge's IP: the hosts' default gateway and the
// registry's address.
func (l *Lab) BridgeIP() netip.Addr { return l.gw }

// Bridge returns the bridge's link name.
func (l *Lab) Bridge() string { return l.bridge }

// Masters returns the master hosts.
func (l *Lab) Masters() []*Host { return l.masters }

// Workers returns the worker hosts.
func (l *Lab) Workers() []*Host { return l.workers }

// Master returns master i.
func (l *Lab) Master(i int) *Host { return l.masters[i] }

// Worker returns worker i.
func (l *Lab) Worker(i int) *Host { return l.workers[i] }

// Kubeconfig returns the path of the admin kubeconfig (Dir/kubeconfig,
// server https://<m0 IP>:6443), or "" without masters.
func (l *Lab) Kubeconfig() string {
	if len(l.masters) == 0 {
		return ""
	}
	return filepath.Join(l.dir, "kubeconfig")
}

// Registry returns the lab registry's host:port (plain http), e.g.
// "10.99.7.1:5000": image names start with it.
func (l *Lab) Registry() string {
	return netip.AddrPortFrom(l.gw, RegistryPort).String()
}

// Images returns the test images' names.
func (l *Lab) Images() Images { return l.imgs }

// LogPath returns the log file of a lab process: "m0", "w0-agent",
// "w0-containerd", "registry".
func (l *Lab) LogPath(proc string) string { return filepath.Join(l.dir, "logs", proc+".log") }

// Up builds a lab: bridge, one namespace per host, the registry with the
// test images, each worker's containerd, the masters (the first bootstraps,
// the others join it) and, with StartAgents, the agents. It returns once
// every master's /readyz answers and every containerd serves. On error it
// removes what it created.
func Up(ctx context.Context, cfg Config) (*Lab, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err == nil {
		dir, err = filepath.EvalSymlinks(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if _, err := os.Stat(statePath(dir)); err == nil {
		return nil, fmt.Errorf("%w: %s (remove it with `make lab-down` or lab.Cleanup)", ErrExists, statePath(dir))
	}
	l := &Lab{cfg: cfg, dir: dir, log: cfg.Logger, procs: map[string]*proc{}}
	if err := l.up(ctx); err != nil {
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("lab: cleaning up after the failed start: %w", derr))
		}
		return nil, err
	}
	return l, nil
}

func (l *Lab) up(ctx context.Context) error {
	start := time.Now()
	if err := l.allocate(); err != nil {
		return err
	}
	for i := range l.cfg.Masters {
		l.masters = append(l.masters, l.newHost(RoleMaster, i))
	}
	for i := range l.cfg.Workers {
		l.workers = append(l.workers, l.newHost(RoleWorker, i))
	}
	for _, h := range l.hosts() {
		if err := l.addHost(ctx, h); err != nil {
			return err
		}
	}
	l.log.Info("lab network ready", "id", l.id, "subnet", l.subnet, "bridge", l.bridge, "took", time.Since(start).Round(time.Millisecond))

	// The registry and images, the workers' containerds and the masters
	// come up side by side.
	errs := make(chan error, 2+len(l.workers))
	go func() { errs <- l.startRegistry(ctx) }()
	for _, w := range l.workers {
		go func() { errs <- l.startContainerd(ctx, w) }()
	}
	go func() { errs <- l.startMasters(ctx) }()
	var all []error
	for range 2 + len(l.workers) {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	if err := errors.Join(all...); err != nil {
		return err
	}
	if l.cfg.StartAgents {
		for i := range l.workers {
			if err := l.StartAgent(ctx, i); err != nil {
				return err
			}
		}
	}
	l.log.Info("lab up", "id", l.id, "masters", len(l.masters), "workers", len(l.workers), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// hosts returns masters then workers.
func (l *Lab) hosts() []*Host {
	return append(append([]*Host(nil), l.masters...), l.workers...)
}

func (l *Lab) newHost(role Role, i int) *Host {
	b := l.subnet.Addr().As4()
	name := "m" + strconv.Itoa(i)
	b[3] = byte(10 + i)
	if role == RoleWorker {
		name = "w" + strconv.Itoa(i)
		b[3] = byte(100 + i)
	}
	ip := netip.AddrFrom4(b)
	h := &Host{
		Name: name, Role: role, Index: i, IP: ip,
		NetNS:      "sk" + l.id + "-" + name,
		Veth:       "sk" + l.id + name,
		Dir:        filepath.Join(l.dir, name),
		GossipAddr: netip.AddrPortFrom(ip, GossipPort).String(),
	}
	h.NetNSPath = filepath.Join("/run/netns", h.NetNS)
	if role == RoleMaster {
		h.DataDir = filepath.Join(h.Dir, "data")
		h.PeerAddr = netip.AddrPortFrom(ip, PeerPort).String()
		h.APIAddr = netip.AddrPortFrom(ip, APIPort).String()
		h.StatusAddr = netip.AddrPortFrom(ip, StatusPort).String()
	} else {
		h.ContainerdSocket = filepath.Join(h.Dir, "containerd", "c.sock")
		h.AgentDataDir = filepath.Join(h.Dir, "agent")
		h.AgentRunDir = filepath.Join(h.Dir, "run")
		h.AgentListen = netip.AddrPortFrom(ip, AgentPort).String()
	}
	return h
}
