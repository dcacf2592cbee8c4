// Package nodestatus registers a worker's Node and keeps it current, as
// the kubelet does: capacity and allocatable measured on the host,
// addresses, system info, the four standard conditions, and a Lease in
// kube-node-lease renewed every LeaseInterval.
//
// Use: New(cfg), then Run(ctx), which registers (retrying until the API
// answers), calls OnPodCIDR once the control plane has given the Node a
// pod CIDR, and heartbeats until ctx ends.
package nodestatus

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// LeaseNamespace holds the nodes' Leases.
const LeaseNamespace = corev1.NamespaceNodeLease

// LeaseDurationSeconds is what the Lease declares (the kubelet's default).
const LeaseDurationSeconds = 40

// KubeletVersion is the version the Node reports for its agent.
const KubeletVersion = "v1.37.2-skiff"

// Config configures a Reporter.
type Config struct {
	Client   kubernetes.Interface
	NodeName string
	NodeIP   netip.Addr
	// Port is the agent's endpoint (status.daemonEndpoints.kubeletEndpoint).
	Port int32
	// Labels and Taints are set at registration (--node-labels,
	// --register-with-taints).
	Labels map[string]string
	Taints []corev1.Taint
	// DataDir is measured for ephemeral-storage.
	DataDir string
	// RuntimeVersion is status.nodeInfo.containerRuntimeVersion, e.g.
	// "containerd://1.6.20".
	RuntimeVersion string
	// MaxPods is the pods capacity.
	MaxPods int64
	// LeaseInterval is how often the Lease is renewed, StatusInterval how
	// often the conditions are posted again.
	LeaseInterval, StatusInterval time.Duration
	// OnPodCIDR, if set, is called from Run once with the Node's
	// spec.podCIDR when the control plane has set it.
	OnPodCIDR func(netip.Prefix)
	Logger    *slog.Logger
	Now       func() time.Time
}

// DefaultConfig returns a Config without Client, NodeName and NodeIP.
func DefaultConfig() Config {
	return Config{
		Port: 10250, MaxPods: 110, DataDir: "/",
		LeaseInterval: 10 * time.Second, StatusInterval: 10 * time.Second,
		Logger: slog.Default(), Now: time.Now,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Logger == nil || c.Now == nil:
		return errors.New("nodestatus: config: Client, Logger and Now are required")
	case c.NodeName == "":
		return errors.New("nodestatus: config: NodeName is required")
	case !c.NodeIP.IsValid():
		return errors.New("nodestatus: config: NodeIP is required")
	case c.LeaseInterval <= 0 || c.StatusInterval <= 0:
		return errors.New("nodestatus: config: LeaseInterval and StatusInterval must be positive")
	case c.MaxPods <= 0:
		return errors.New("nodestatus: config: MaxPods must be positive")
	}
	return nil
}

// Reporter registers and heartbeats one Node.
type Reporter struct {
	cfg    Config
	bootID string
	uid    types.UID
	lease  Lease
}

// New returns a Reporter for cfg.
func New(cfg Config) (*Reporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return &Reporter{cfg: cfg, bootID: strings.TrimSpace(string(boot)), lease: Lease{Client: cfg.Client, Node: cfg.NodeName}}, nil
}

// Run registers the Node, then renews its Lease and status until ctx
// ends. It returns nil when ctx ends; an error only when registration is
// refused for good (invalid, forbidden, unauthorized).
func (r *Reporter) Run(ctx context.Context) error {
	backoff := 200 * time.Millisecond
	for {
		err := r.register(ctx)
		if err == nil {
			break
		}
		if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			return fmt.Errorf("nodestatus: registering node %s: %w", r.cfg.NodeName, err)
		}
		r.cfg.Logger.Info("node not registered yet", "node", r.cfg.NodeName, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	r.cfg.Logger.Info("node registered", "node", r.cfg.NodeName)
	cidrSent := false
	lease := time.NewTicker(r.cfg.LeaseInterval)
	defer lease.Stop()
	status := time.NewTicker(r.cfg.StatusInterval)
	defer status.Stop()
	// The pod CIDR comes soon after registration: look more often until then.
	cidr := time.NewTicker(250 * time.Millisecond)
	defer cidr.Stop()
	r.renewLease(ctx)
	for {
		if !cidrSent && r.cfg.OnPodCIDR != nil {
			if p, ok := r.podCIDR(ctx); ok {
				r.cfg.OnPodCIDR(p)
				cidrSent = true
				cidr.Stop()
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-lease.C:
			r.renewLease(ctx)
		case <-status.C:
			if err := r.refresh(ctx); err != nil && ctx.Err() == nil {
				r.cfg.Logger.Warn("node status not posted", "node", r.cfg.NodeName, "err", err)
			}
		case <-cidr.C:
		}
	}
}

func (r *Reporter) podCIDR(ctx context.Context) (netip.Prefix, bool) {
	n, err := r.cfg.Client.CoreV1().Nodes().Get(ctx, r.cfg.NodeName, metav1.GetOptions{})
	if err != nil || n.Spec.PodCIDR == "" {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(n.Spec.PodCIDR)
	if err != nil {
		r.cfg.Logger.Warn("node has a malformed pod CIDR", "node", r.cfg.NodeName, "podCIDR", n.Spec.PodCIDR)
		return netip.Prefix{}, false
	}
	return p, true
}

// Labels returns the labels a kubelet registers node with: extra, plus
// its hostname, OS and architecture.
func Labels(node string, extra map[string]string) map[string]string {
	l := maps.Clone(extra)
	if l == nil {
		l = map[string]string{}
	}
	l[corev1.LabelHostname] = node
	l[corev1.LabelOSStable] = "linux"
	l[corev1.LabelArchStable] = runtime.GOARCH
	l["beta.kubernetes.io/os"] = "linux"
	l["beta.kubernetes.io/arch"] = runtime.GOARCH
	return l
}

// register creates the Node, or takes over the existing one (an agent
// restarting), and posts its status.
func (r *Reporter) register(ctx context.Context) error {
	got, err := Register(ctx, r.cfg.Client, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: r.cfg.NodeName, Labels: Labels(r.cfg.NodeName, r.cfg.Labels)},
		Spec:       corev1.NodeSpec{Taints: r.cfg.Taints},
	}, r.status)
	if err != nil {
		return err
	}
	r.uid = got.UID
	return nil
}

// Register creates node, or takes over the existing Node of its name (a
// kubelet restarting keeps its Node) and makes its labels current, then
// posts status(the status it had) as its status. It returns the Node as
// written. Hollow nodes register with it too.
func Register(ctx context.Context, client kubernetes.Interface, node *corev1.Node, status func(old corev1.NodeStatus) corev1.NodeStatus) (*corev1.Node, error) {
	nodes := client.CoreV1().Nodes()
	got, err := nodes.Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = nodes.Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		changed := false
		if got.Labels == nil {
			got.Labels = map[string]string{}
		}
		for k, v := range node.Labels {
			if got.Labels[k] != v {
				got.Labels[k], changed = v, true
			}
		}
		if changed {
			if got, err = nodes.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
				return nil, err
			}
		}
	}
	if err != nil {
		return nil, err
	}
	got.Status = status(got.Status)
	return nodes.UpdateStatus(ctx, got, metav1.UpdateOptions{})
}

// refresh posts the status again, registering anew when the Node was
// deleted.
func (r *Reporter) refresh(ctx context.Context) error {
	nodes := r.cfg.Client.CoreV1().Nodes()
	cur, err := nodes.Get(ctx, r.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return r.register(ctx)
	}
	if err != nil {
		return err
	}
	cur.Status = r.status(cur.Status)
	_, err = nodes.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	return err
}

// status returns the status the node posts now; condition transition
// times are kept from old where the status is the same.
func (r *Reporter) status(old corev1.NodeStatus) corev1.NodeStatus {
	capacity := r.capacity()
	return corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity.DeepCopy(),
		Conditions:  Conditions(old.Conditions, r.cfg.Now()),
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: r.cfg.NodeIP.String()},
			{Type: corev1.NodeHostName, Address: r.cfg.NodeName},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: r.cfg.Port}},
		NodeInfo:        r.nodeInfo(),
		Images:          old.Images,
	}
}

// capacity measures the host: CPUs, memory, the data dir's filesystem.
func (r *Reporter) capacity() corev1.ResourceList {
	l := corev1.ResourceList{
		corev1.ResourceCPU:  *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		corev1.ResourcePods: *resource.NewQuantity(r.cfg.MaxPods, resource.DecimalSI),
	}
	if mem, err := memTotal(); err == nil {
		l[corev1.ResourceMemory] = *resource.NewQuantity(mem, resource.BinarySI)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(r.cfg.DataDir, &fs); err == nil {
		l[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(int64(fs.Blocks)*fs.Bsize, resource.BinarySI)
	}
	return l
}

// memTotal reads MemTotal from /proc/meminfo, in bytes.
func memTotal() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("nodestatus: no MemTotal in /proc/meminfo")
}

func (r *Reporter) nodeInfo() corev1.NodeSystemInfo {
	var u unix.Utsname
	_ = unix.Uname(&u)
	machineID, _ := os.ReadFile("/etc/machine-id")
	mid := strings.TrimSpace(string(machineID))
	if mid == "" {
		mid = StableID("machine", r.cfg.NodeName)[:32]
	}
	return corev1.NodeSystemInfo{
		MachineID:               mid,
		SystemUUID:              StableID("system", mid, r.cfg.NodeName)[:32],
		BootID:                  r.bootID,
		KernelVersion:           unix.ByteSliceToString(u.Release[:]),
		OSImage:                 osImage(),
		ContainerRuntimeVersion: r.cfg.RuntimeVersion,
		KubeletVersion:          KubeletVersion,
		OperatingSystem:         "linux",
		Architecture:            runtime.GOARCH,
	}
}

// osImage is PRETTY_NAME of /etc/os-release.
func osImage() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

// Conditions are the four standard conditions a healthy kubelet posts,
// heartbeating at now, worded as the kubelet's; transition times are kept
// from old where the status is the same. Hollow nodes post them too.
func Conditions(old []corev1.NodeCondition, now time.Time) []corev1.NodeCondition {
	t := metav1.NewTime(now)
	mk := func(typ corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		c := corev1.NodeCondition{Type: typ, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: t, LastTransitionTime: t}
		for _, o := range old {
			if o.Type == typ && o.Status == s {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		return c
	}
	return []corev1.NodeCondition{
		mk(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
		mk(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
		mk(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
		mk(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"),
	}
}

// renewLease renews the node's Lease, creating it when missing. Failures
// are logged: the next tick tries again.
func (r *Reporter) renewLease(ctx context.Context) {
	if err := r.lease.Renew(ctx, r.uid, r.cfg.Now()); err != nil && ctx.Err() == nil {
		r.cfg.Logger.Warn("node lease not renewed", "node", r.cfg.NodeName, "err", err)
	}
}

// Lease renews one node's Lease in LeaseNamespace as the kubelet's lease
// controller does: each renewal updates the Lease the last one stored,
// without reading it first; it reads the Lease only the first time and
// after a failed update (a conflict: someone else wrote it). A missing
// Lease is created, owned by the Node with the uid given when known, and
// so is its namespace (the Lease then comes with the next renewal). Hollow
// nodes renew theirs with it too. One goroutine at a time may use a Lease.
type Lease struct {
	Client kubernetes.Interface
	Node   string
	// latest is the Lease as the last renewal stored it; nil: read it.
	latest *coordinationv1.Lease
}

// Renew renews the Lease at now.
func (l *Lease) Renew(ctx context.Context, uid types.UID, now time.Time) error {
	leases := l.Client.CoordinationV1().Leases(LeaseNamespace)
	renew := metav1.NewMicroTime(now)
	cur, err := l.latest, error(nil)
	if cur == nil {
		cur, err = leases.Get(ctx, l.Node, metav1.GetOptions{})
	}
	if err == nil {
		next := cur.DeepCopy()
		next.Spec.RenewTime = &renew
		next.Spec.HolderIdentity = &l.Node
		l.latest, err = leases.Update(ctx, next, metav1.UpdateOptions{})
		if err != nil {
			l.latest = nil
		}
		return err
	}
	if !apierrors.IsNotFound(err) {
		return err
	}
	dur := int32(LeaseDurationSeconds)
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: l.Node, Namespace: LeaseNamespace},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &l.Node, LeaseDurationSeconds: &dur, RenewTime: &renew},
	}
	if uid != "" {
		// As the kubelet: the Node owns its Lease.
		lease.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: l.Node, UID: uid}}
	}
	l.latest, err = leases.Create(ctx, lease, metav1.CreateOptions{})
	if err != nil {
		l.latest = nil
	}
	if apierrors.IsNotFound(err) {
		_, nerr := l.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: LeaseNamespace}}, metav1.CreateOptions{})
		if nerr != nil && !apierrors.IsAlreadyExists(nerr) {
			return errors.Join(err, nerr)
		}
	}
	return err
}

// StableID returns a stable hex identifier (64 digits) derived from its
// parts: IDs a host does not provide, and hollow nodes' made-up ones.
func StableID(parts ...string) string {
	sum := sha256.New()
	for _, p := range parts {
		sum.Write([]byte(p))
		sum.Write([]byte{0})
	}
	return hex.EncodeToString(sum.Sum(nil))
}
