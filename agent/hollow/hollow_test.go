package hollow

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

// waitFor polls cond until it returns nil, and fails the test with its
// last error after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(10 * time.Millisecond) // between polls, not before an assertion
	}
}

func TestValidate(t *testing.T) {
	base := DefaultConfig()
	base.Client = fake.NewClientset()
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		ok     bool
	}{
		{"count", func(c *Config) { c.Count = 3 }, true},
		{"names", func(c *Config) { c.Names = []string{"a", "b"} }, true},
		{"no nodes", func(c *Config) {}, false},
		{"both", func(c *Config) { c.Count, c.Names = 1, []string{"a"} }, false},
		{"repeated name", func(c *Config) { c.Names = []string{"a", "a"} }, false},
		{"too many for the node CIDR", func(c *Config) { c.Count, c.NodeCIDR = 300, netip.MustParsePrefix("10.200.0.0/24") }, false},
		{"no client", func(c *Config) { c.Count, c.Client = 1, nil }, false},
	} {
		cfg := base
		tc.mutate(&cfg)
		if err := cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestImageID(t *testing.T) {
	for _, tc := range []struct{ image, prefix string }{
		{"busybox", "docker.io/library/busybox@sha256:"},
		{"busybox:1.36", "docker.io/library/busybox@sha256:"},
		{"localhost:5000/app:v1", "localhost:5000/app@sha256:"},
		{"registry.k8s.io/pause@sha256:abc", "registry.k8s.io/pause@sha256:"},
	} {
		got := imageID(tc.image)
		if len(got) != len(tc.prefix)+64 || got[:len(tc.prefix)] != tc.prefix {
			t.Errorf("imageID(%q) = %q, want %s<64 hex>", tc.image, got, tc.prefix)
		}
	}
}

func TestPodIPs(t *testing.T) {
	a := newPodIPs(netip.MustParsePrefix("100.64.3.0/24"))
	pod := func(uid string) *corev1.Pod { return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid)}} }
	for _, step := range []struct {
		uid, cidr, want string
	}{
		{"a", "", "100.64.3.2"},
		{"b", "", "100.64.3.3"},
		{"a", "10.244.7.0/24", "100.64.3.2"}, // kept
		{"c", "10.244.7.0/24", "10.244.7.2"},
	} {
		got, err := a.assign(pod(step.uid), step.cidr)
		if err != nil || got != step.want {
			t.Fatalf("assign(%s, %q) = %q, %v; want %s", step.uid, step.cidr, got, err, step.want)
		}
	}
	a.release("b")
	if got, _ := a.assign(pod("d"), ""); got != "100.64.3.3" {
		t.Errorf("after release: got %s, want the freed 100.64.3.3", got)
	}
	small := newPodIPs(netip.MustParsePrefix("100.64.0.0/30")) // .2 only
	if _, err := small.assign(pod("x"), ""); err != nil {
		t.Fatal(err)
	}
	if ip, err := small.assign(pod("y"), ""); err == nil {
		t.Errorf("a full range gave %s", ip)
	}
}

func startHollow(t *testing.T, cfg Config) (*Hollow, func()) {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of ctx ending")
		}
	}
	t.Cleanup(stop)
	return h, stop
}

func TestHollowWithFakeClient(t *testing.T) {
	cs := fake.NewClientset()
	ctx := t.Context()
	cfg := DefaultConfig()
	cfg.Client, cfg.Count, cfg.Prefix, cfg.Logger = cs, 3, "h-", slog.New(slog.DiscardHandler)
	cfg.LeaseInterval, cfg.StatusInterval = 50*time.Millisecond, 50*time.Millisecond
	cfg.Labels = map[string]string{"pool": "hollow"}
	cfg.Taints = []corev1.Taint{{Key: "hollow", Effect: corev1.TaintEffectNoSchedule}}
	var seenMu sync.Mutex
	seen := map[string]corev1.PodPhase{} // the last phase OnPod saw of each pod
	cfg.OnPod = func(p *corev1.Pod) {
		seenMu.Lock()
		defer seenMu.Unlock()
		seen[p.Name] = p.Status.Phase
	}
	// h-1 exists before (a kubelet restarting takes its Node over) and
	// has a pod CIDR; h-0 will not.
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "h-1"},
		Spec:       corev1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, stop := startHollow(t, cfg)

	ips := map[string]string{}
	waitFor(t, 10*time.Second, "three ready nodes", func() error {
		for i := range 3 {
			name := fmt.Sprint("h-", i)
			n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if err := checkNode(n, name); err != nil {
				return err
			}
			ips[name] = n.Status.Addresses[0].Address
		}
		return nil
	})
	if ips["h-0"] != "10.200.0.1" || ips["h-1"] != "10.200.0.2" || ips["h-2"] != "10.200.0.3" {
		t.Errorf("node IPs %v, want 10.200.0.1..3", ips)
	}
	n, _ := cs.CoreV1().Nodes().Get(ctx, "h-0", metav1.GetOptions{})
	if n.Labels["pool"] != "hollow" || len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != "hollow" {
		t.Errorf("labels %v taints %v: want pool=hollow and the hollow taint", n.Labels, n.Spec.Taints)
	}

	mkPod := func(name, node string) {
		_, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
			Spec: corev1.PodSpec{NodeName: node,
				InitContainers: []corev1.Container{{Name: "init", Image: "busybox"}},
				Containers:     []corev1.Container{{Name: "app", Image: "nginx:1.27"}, {Name: "side", Image: "busybox"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	mkPod("p0", "h-0")
	mkPod("p1", "h-1")
	mkPod("foreign", "someone-else")
	running := func(name, node, cidr string) func() error {
		return func() error {
			p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			return checkPod(p, ips[node], netip.MustParsePrefix(cidr))
		}
	}
	waitFor(t, 10*time.Second, "p0 running", running("p0", "h-0", "100.64.0.0/24"))
	waitFor(t, 10*time.Second, "p1 running", running("p1", "h-1", "10.244.1.0/24"))
	waitFor(t, 10*time.Second, "OnPod seeing p0 and p1 Running", func() error {
		seenMu.Lock()
		defer seenMu.Unlock()
		if seen["p0"] != corev1.PodRunning || seen["p1"] != corev1.PodRunning {
			return fmt.Errorf("OnPod saw %v", seen)
		}
		return nil
	})
	seenMu.Lock()
	if _, ok := seen["foreign"]; ok {
		t.Errorf("OnPod saw the pod of another node: %v", seen)
	}
	seenMu.Unlock()

	// A graceful delete (the fake sets no deletionTimestamp itself) is
	// confirmed with a delete of grace 0.
	p0, err := cs.CoreV1().Pods("default").Get(ctx, "p0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p0.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	if _, err := cs.CoreV1().Pods("default").Update(ctx, p0, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "p0 to be gone", func() error {
		_, err := cs.CoreV1().Pods("default").Get(ctx, "p0", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
	deleted := false
	for _, a := range cs.Actions() {
		if d, ok := a.(interface{ GetDeleteOptions() metav1.DeleteOptions }); ok && a.GetVerb() == "delete" && a.GetResource().Resource == "pods" {
			o := d.GetDeleteOptions()
			deleted = o.GracePeriodSeconds != nil && *o.GracePeriodSeconds == 0 && o.Preconditions != nil && *o.Preconditions.UID == "uid-p0"
		}
	}
	if !deleted {
		t.Error("p0 was not deleted with grace period 0 and its UID as precondition")
	}

	// Leases are renewed.
	renewed := func(name string) time.Time {
		l, err := cs.CoordinationV1().Leases(LeaseNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil || l.Spec.RenewTime == nil {
			return time.Time{}
		}
		return l.Spec.RenewTime.Time
	}
	var first time.Time
	waitFor(t, 10*time.Second, "a lease", func() error {
		if first = renewed("h-2"); first.IsZero() {
			return fmt.Errorf("no lease for h-2")
		}
		return nil
	})
	waitFor(t, 10*time.Second, "the lease renewed", func() error {
		if r := renewed("h-2"); !r.After(first) {
			return fmt.Errorf("renewTime %v, want after %v", r, first)
		}
		return nil
	})

	// The foreign pod is untouched; stopping leaves the nodes.
	stop()
	f, err := cs.CoreV1().Pods("default").Get(ctx, "foreign", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Status.Phase != "" {
		t.Errorf("pod of another node got phase %q", f.Status.Phase)
	}
	for i := range 3 {
		if _, err := cs.CoreV1().Nodes().Get(ctx, fmt.Sprint("h-", i), metav1.GetOptions{}); err != nil {
			t.Errorf("after stop: %v", err)
		}
	}
}

// checkNode reports how a registered Node differs from what a kubelet
// posts.
func checkNode(n *corev1.Node, name string) error {
	if n.Labels[corev1.LabelHostname] != name || n.Labels[corev1.LabelOSStable] != "linux" || n.Labels[corev1.LabelArchStable] == "" {
		return fmt.Errorf("node %s: labels %v", name, n.Labels)
	}
	if n.Status.Capacity.Pods().Value() != 110 || n.Status.Allocatable.Cpu().IsZero() || n.Status.Allocatable.Memory().IsZero() {
		return fmt.Errorf("node %s: capacity %v allocatable %v", name, n.Status.Capacity, n.Status.Allocatable)
	}
	if len(n.Status.Addresses) < 1 || n.Status.Addresses[0].Type != corev1.NodeInternalIP {
		return fmt.Errorf("node %s: addresses %v", name, n.Status.Addresses)
	}
	if n.Status.NodeInfo.KubeletVersion != KubeletVersion || n.Status.NodeInfo.OperatingSystem != "linux" || n.Status.NodeInfo.MachineID == "" {
		return fmt.Errorf("node %s: nodeInfo %+v", name, n.Status.NodeInfo)
	}
	want := map[corev1.NodeConditionType]corev1.ConditionStatus{
		corev1.NodeReady: corev1.ConditionTrue, corev1.NodeMemoryPressure: corev1.ConditionFalse,
		corev1.NodeDiskPressure: corev1.ConditionFalse, corev1.NodePIDPressure: corev1.ConditionFalse,
	}
	for _, c := range n.Status.Conditions {
		if want[c.Type] == c.Status && c.LastHeartbeatTime.IsZero() == false {
			delete(want, c.Type)
		}
	}
	if len(want) > 0 {
		return fmt.Errorf("node %s: conditions %v lack %v", name, n.Status.Conditions, want)
	}
	return nil
}

// checkPod reports how a pod differs from one a kubelet runs on a node
// with IP hostIP, with its IP in cidr.
func checkPod(p *corev1.Pod, hostIP string, cidr netip.Prefix) error {
	st := p.Status
	ip, err := netip.ParseAddr(st.PodIP)
	if st.Phase != corev1.PodRunning || err != nil || !cidr.Contains(ip) || len(st.PodIPs) != 1 || st.PodIPs[0].IP != st.PodIP {
		return fmt.Errorf("pod %s: phase %s podIP %q podIPs %v, want Running in %v", p.Name, st.Phase, st.PodIP, st.PodIPs, cidr)
	}
	if st.HostIP != hostIP || len(st.HostIPs) != 1 || st.StartTime == nil {
		return fmt.Errorf("pod %s: hostIP %q hostIPs %v startTime %v, want %s", p.Name, st.HostIP, st.HostIPs, st.StartTime, hostIP)
	}
	for _, ct := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		found := false
		for _, c := range st.Conditions {
			found = found || (c.Type == ct && c.Status == corev1.ConditionTrue)
		}
		if !found {
			return fmt.Errorf("pod %s: no %s=True in %v", p.Name, ct, st.Conditions)
		}
	}
	if len(st.ContainerStatuses) != len(p.Spec.Containers) {
		return fmt.Errorf("pod %s: %d container statuses, want %d", p.Name, len(st.ContainerStatuses), len(p.Spec.Containers))
	}
	for i, cs := range st.ContainerStatuses {
		c := p.Spec.Containers[i]
		if cs.Name != c.Name || cs.Image != c.Image || cs.ImageID == "" || cs.ContainerID == "" || !cs.Ready ||
			cs.Started == nil || !*cs.Started || cs.RestartCount != 0 || cs.State.Running == nil {
			return fmt.Errorf("pod %s: container status %+v", p.Name, cs)
		}
	}
	if len(p.Spec.InitContainers) > 0 {
		if len(st.InitContainerStatuses) != len(p.Spec.InitContainers) {
			return fmt.Errorf("pod %s: init container statuses %+v", p.Name, st.InitContainerStatuses)
		}
		if t := st.InitContainerStatuses[0].State.Terminated; t == nil || t.ExitCode != 0 || t.Reason != "Completed" {
			return fmt.Errorf("pod %s: init container state %+v, want Completed", p.Name, st.InitContainerStatuses[0].State)
		}
	}
	return nil
}

var _ kubernetes.Interface = (*fake.Clientset)(nil)
