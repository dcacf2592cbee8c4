package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Defaults of Config.
const (
	DefaultBridge = "skiff0"
	DefaultMTU    = 1500
)

// rollbackTimeout bounds the CNI DEL that undoes a failed Setup.
const rollbackTimeout = 30 * time.Second

// DefaultClusterCIDR is the cluster CIDR every node's pod CIDR comes from.
var DefaultClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")

// Errors.
var (
	// ErrInvalidConfig is returned by Validate and New for a Config that
	// cannot work; the message says which field.
	ErrInvalidConfig = errors.New("network: invalid config")
	// ErrNoIPv4 is returned by Setup when the plugins gave the pod no IPv4
	// address (a plugin misconfiguration).
	ErrNoIPv4 = errors.New("network: the CNI result has no IPv4 address")
	// ErrNoPodUID is returned by Setup and Teardown for an empty pod UID
	// (the CNI container ID).
	ErrNoPodUID = errors.New("network: empty pod UID")
)

// Config configures a node's pod network.
type Config struct {
	// PluginDirs are searched for the CNI plugin binaries, in order.
	PluginDirs []string
	// ConfDir receives the generated conflist (NetworkName.conflist), for
	// people and tools; Skiff itself uses the in-memory copy.
	ConfDir string
	// CacheDir is libcni's result cache: each pod's IP and the config it
	// was added with. Must survive agent restarts.
	CacheDir string
	// IPAMDir is host-local's data directory (one file per allocated IP).
	// Must survive agent restarts.
	IPAMDir string
	// Bridge is the Linux bridge the pods are attached to (at most 15
	// bytes).
	Bridge string
	// PodCIDR is this node's pod CIDR (IPv4, at most /30); its first
	// address is the bridge's and the pods' gateway.
	PodCIDR netip.Prefix
	// ClusterCIDR contains every node's pod CIDR: traffic to it is never
	// masqueraded.
	ClusterCIDR netip.Prefix
	// NodeIP is this node's address; a route to it is never installed.
	// Optional.
	NodeIP netip.Addr
	// MTU of the bridge and pod interfaces; 0 means DefaultMTU.
	MTU    int
	Logger *slog.Logger
}

// DefaultConfig returns a Config with the defaults set; the caller sets
// the directories, PodCIDR and NodeIP.
func DefaultConfig() Config {
	return Config{
		PluginDirs:  []string{"/usr/lib/cni", "/opt/cni/bin"},
		Bridge:      DefaultBridge,
		ClusterCIDR: DefaultClusterCIDR,
		MTU:         DefaultMTU,
		Logger:      slog.Default(),
	}
}

// Validate reports the first problem with cfg, wrapping ErrInvalidConfig.
func (cfg Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
	}
	switch {
	case len(cfg.PluginDirs) == 0:
		return bad("no PluginDirs")
	case cfg.ConfDir == "" || cfg.CacheDir == "" || cfg.IPAMDir == "":
		return bad("ConfDir, CacheDir and IPAMDir are required")
	case cfg.Bridge == "" || len(cfg.Bridge) > 15 || strings.ContainsAny(cfg.Bridge, "/ \t\n:"):
		return bad("bridge name %q is not a valid interface name", cfg.Bridge)
	case !cfg.PodCIDR.IsValid() || !cfg.PodCIDR.Addr().Is4() || cfg.PodCIDR.Bits() > 30:
		return bad("pod CIDR %v is not an IPv4 prefix of at most /30", cfg.PodCIDR)
	case !cfg.ClusterCIDR.IsValid() || !cfg.ClusterCIDR.Addr().Is4():
		return bad("cluster CIDR %v is not an IPv4 prefix", cfg.ClusterCIDR)
	case cfg.NodeIP.IsValid() && !cfg.NodeIP.Is4():
		return bad("node IP %v is not IPv4", cfg.NodeIP)
	case cfg.MTU != 0 && (cfg.MTU < 576 || cfg.MTU > 65535):
		return bad("MTU %d out of range", cfg.MTU)
	}
	return nil
}

// Network is a node's pod network. Its methods may be called concurrently
// for different pods; Setup and Teardown of the same pod must not overlap
// (the caller serializes a pod's lifecycle).
type Network struct {
	cfg  Config
	log  *slog.Logger
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
}

// New validates cfg, writes the conflist to cfg.ConfDir, creates the
// directories and makes sure the bridge exists, is up and carries the
// gateway address (so pods set up concurrently do not race to create it).
func New(cfg Config) (*Network, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	raw := confListBytes(cfg)
	list, err := libcni.NetworkConfFromBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("network: parsing the generated conflist: %w", err)
	}
	for _, dir := range []string{cfg.ConfDir, cfg.CacheDir, cfg.IPAMDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("network: %w", err)
		}
	}
	if err := writeFileAtomic(filepath.Join(cfg.ConfDir, NetworkName+".conflist"), raw); err != nil {
		return nil, fmt.Errorf("network: writing the conflist: %w", err)
	}
	n := &Network{
		cfg: cfg,
		log: cfg.Logger,
		// An explicit Exec: libcni would otherwise set its default lazily
		// on first use, a data race between concurrent Setups.
		cni: libcni.NewCNIConfigWithCacheDir(cfg.PluginDirs, cfg.CacheDir, &invoke.DefaultExec{
			RawExec:       &invoke.RawExec{Stderr: os.Stderr},
			PluginDecoder: version.PluginDecoder{},
		}),
		list: list,
	}
	if err := n.ensureBridge(); err != nil {
		return nil, err
	}
	return n, nil
}

// HostPort is one hostPort mapping of a pod (from its containers' ports
// with a hostPort).
type HostPort struct {
	HostPort, ContainerPort int32
	Protocol                string // "TCP" (default) or "UDP"
	HostIP                  string // "" = every host address
}

// portMapping is the portmap plugin's runtimeConfig.portMappings entry.
type portMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

func (n *Network) runtimeConf(podUID, netnsPath string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: podUID, NetNS: netnsPath, IfName: podInterface}
}

// Setup attaches the pod's network namespace (netnsPath, which must exist)
// to the bridge and returns the pod's IPv4 address. It is idempotent: when
// the pod already has its interface (libcni's cache says so and the netns
// carries the address) it returns the same address without running the
// plugins. A failed attempt is rolled back (CNI DEL) before returning.
func (n *Network) Setup(ctx context.Context, podUID, namespace, name, netnsPath string, ports []HostPort) (netip.Addr, error) {
	if podUID == "" {
		return netip.Addr{}, ErrNoPodUID
	}
	if ownNetNS(netnsPath) {
		return netip.Addr{}, fmt.Errorf("network: pod %s/%s: %s is the node's own network namespace", namespace, name, netnsPath)
	}
	rt := n.runtimeConf(podUID, netnsPath)
	rt.Args = [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", namespace},
		{"K8S_POD_NAME", name},
		{"K8S_POD_INFRA_CONTAINER_ID", podUID},
		{"K8S_POD_UID", podUID},
	}
	if len(ports) > 0 {
		maps := make([]portMapping, 0, len(ports))
		for _, p := range ports {
			proto := strings.ToLower(p.Protocol)
			if proto == "" {
				proto = "tcp"
			}
			maps = append(maps, portMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: proto, HostIP: p.HostIP})
		}
		rt.CapabilityArgs = map[string]any{"portMappings": maps}
	}
	pod := namespace + "/" + name

	if ip, ok := n.PodIP(podUID); ok {
		if hasAddress(netnsPath, ip) {
			return ip, nil
		}
		// The cache outlived the interface (the netns was recreated, or the
		// node rebooted): release the old attachment and start over.
		n.log.Info("pod network attachment is stale; recreating", "pod", pod, "podUID", podUID, "ip", ip)
		if err := n.Teardown(ctx, podUID, netnsPath); err != nil {
			return netip.Addr{}, err
		}
	}

	res, err := n.cni.AddNetworkList(ctx, n.list, rt)
	var ip netip.Addr
	if err == nil {
		ip, err = resultIPv4(res)
	}
	if err != nil {
		// Roll back what the plugins did, even when ctx ended the attempt.
		rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		err = fmt.Errorf("network: setting up pod %s: %w", pod, err)
		return netip.Addr{}, errors.Join(err, n.del(rbCtx, rt)) // rt has the port mappings to undo
	}
	n.log.Debug("pod network set up", "pod", pod, "podUID", podUID, "ip", ip)
	return ip, nil
}

// Teardown detaches the pod (CNI DEL): removes its interface and hostPort
// rules and frees its IP. It is idempotent, and frees the IP even when
// netnsPath no longer is a network namespace (the DEL then runs without
// one, as the CNI spec allows). It uses the config the pod was added with,
// from libcni's cache, when there is one.
func (n *Network) Teardown(ctx context.Context, podUID, netnsPath string) error {
	if podUID == "" {
		return ErrNoPodUID
	}
	return n.del(ctx, n.runtimeConf(podUID, netnsPath))
}

// del runs CNI DEL for rt, without a netns when rt's is gone, and with the
// config and runtime arguments of the pod's ADD when libcni cached them.
func (n *Network) del(ctx context.Context, rt *libcni.RuntimeConf) error {
	rt = &libcni.RuntimeConf{ContainerID: rt.ContainerID, NetNS: rt.NetNS, IfName: rt.IfName, Args: rt.Args, CapabilityArgs: rt.CapabilityArgs}
	if !isNetNS(rt.NetNS) || ownNetNS(rt.NetNS) {
		// Never the node's own: the bridge plugin would delete its
		// interface named like a pod's.
		rt.NetNS = ""
	}
	list := n.list
	if raw, cachedRT, err := n.cni.GetNetworkListCachedConfig(n.list, rt); err == nil && raw != nil {
		if l, err := libcni.NetworkConfFromBytes(raw); err == nil {
			list, rt = l, cachedRT // keeps the portMappings portmap needs to delete its rules
		}
	}
	if err := n.cni.DelNetworkList(ctx, list, rt); err != nil {
		return fmt.Errorf("network: tearing down pod %s: %w", rt.ContainerID, err)
	}
	return nil
}

// PodIP returns the pod's IPv4 address from libcni's cache: the address of
// its last successful Setup, also from before an agent restart.
func (n *Network) PodIP(podUID string) (netip.Addr, bool) {
	res, err := n.cni.GetNetworkListCachedResult(n.list, n.runtimeConf(podUID, ""))
	if err != nil || res == nil {
		return netip.Addr{}, false
	}
	ip, err := resultIPv4(res)
	return ip, err == nil
}

// AttachedPods returns the UIDs of the pods with an attachment in libcni's
// cache, sorted: after a restart, the ones without a pod any more are to
// be torn down.
func (n *Network) AttachedPods() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(n.cfg.CacheDir, "results"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	var uids []string
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), NetworkName+"-")
		if !ok {
			continue
		}
		if uid, ok := strings.CutSuffix(rest, "-"+podInterface); ok && uid != "" {
			uids = append(uids, uid)
		}
	}
	sort.Strings(uids)
	return uids, nil
}

// resultIPv4 returns the first IPv4 address of a CNI result.
func resultIPv4(res types.Result) (netip.Addr, error) {
	cur, err := types100.NewResultFromResult(res)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, ipc := range cur.IPs {
		if ip4 := ipc.Address.IP.To4(); ip4 != nil {
			return netip.AddrFrom4([4]byte(ip4)), nil
		}
	}
	return netip.Addr{}, ErrNoIPv4
}

// hasAddress reports whether the netns at path has podInterface with ip.
func hasAddress(path string, ip netip.Addr) bool {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return false
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return false
	}
	defer h.Close()
	link, err := h.LinkByName(podInterface)
	if err != nil {
		return false
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.IP.Equal(net.IP(ip.AsSlice())) {
			return true
		}
	}
	return false
}

// isNetNS reports whether path is a network namespace file (a bind mount
// of nsfs or /proc/<pid>/ns/net), not a leftover plain file.
func isNetNS(path string) bool {
	if path == "" {
		return false
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// ownNetNS reports whether path is this process's network namespace
// (the node's).
func ownNetNS(path string) bool {
	if path == "" {
		return false
	}
	var a, b unix.Stat_t
	if unix.Stat(path, &a) != nil || unix.Stat("/proc/self/ns/net", &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// ensureBridge creates the bridge if missing, brings it up and gives it the
// gateway address, as the bridge plugin would on first use.
func (n *Network) ensureBridge() error {
	link, err := netlink.LinkByName(n.cfg.Bridge)
	if err != nil {
		if !errors.As(err, new(netlink.LinkNotFoundError)) {
			return fmt.Errorf("network: looking up bridge %s: %w", n.cfg.Bridge, err)
		}
		mtu := n.cfg.MTU
		if mtu == 0 {
			mtu = DefaultMTU
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.cfg.Bridge, MTU: mtu, TxQLen: -1}}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("network: creating bridge %s: %w", n.cfg.Bridge, err)
		}
		if link, err = netlink.LinkByName(n.cfg.Bridge); err != nil {
			return fmt.Errorf("network: looking up bridge %s: %w", n.cfg.Bridge, err)
		}
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return fmt.Errorf("network: %s exists and is a %s, not a bridge", n.cfg.Bridge, link.Type())
	}
	gw := &net.IPNet{IP: net.IP(gateway(n.cfg.PodCIDR).AsSlice()), Mask: net.CIDRMask(n.cfg.PodCIDR.Bits(), 32)}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: gw}); err != nil {
		return fmt.Errorf("network: adding %v to bridge %s: %w", gw, n.cfg.Bridge, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("network: bringing up bridge %s: %w", n.cfg.Bridge, err)
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
