package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/agent/hollow"
)

// This file holds the control loops' scenarios (issue 5) against real
// masters: hollow nodes stand in for workers, the leader's scheduler and
// controllers do the rest, and the real kubectl drives and observes.

// hollowNodes runs hollow nodes named names through cs until stop or the
// end of the test; cpu is each node's CPU capacity. Their leases are
// renewed every 300 ms, so a node lifecycle controller with a grace
// period of a second or more notices when they stop.
func hollowNodes(t *testing.T, cs kubernetes.Interface, cpu string, names ...string) (stop func()) {
	t.Helper()
	cfg := hollow.DefaultConfig()
	cfg.Client, cfg.Names, cfg.Logger = cs, names, slog.New(slog.DiscardHandler)
	cfg.Capacity = corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("110"),
	}
	cfg.LeaseInterval, cfg.StatusInterval = 300*time.Millisecond, 10*time.Second
	h, err := hollow.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hollow nodes %v: %v", names, err)
		}
	})
	t.Cleanup(stop)
	waitUntil(t, 20*time.Second, fmt.Sprintf("hollow nodes %v Ready", names), func(ctx context.Context) error {
		for _, name := range names {
			n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !nodeReady(n) {
				return fmt.Errorf("node %s not Ready: %v", name, n.Status.Conditions)
			}
		}
		return nil
	})
	return stop
}

func nodeReady(n *corev1.Node) bool {
	return slices.ContainsFunc(n.Status.Conditions, func(c corev1.NodeCondition) bool {
		return c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
	})
}

func podReady(p *corev1.Pod) bool {
	return slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
	})
}

// manifest writes yaml to a file of the test's and returns its path.
func manifest(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// mustRun runs kubectl and fails the test unless it exits 0.
func (k *kubectlRunner) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := k.run(t, args...)
	if code != 0 {
		t.Fatalf("kubectl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// TestUnschedulablePodWaitsForAFittingNode is the scheduler's acceptance
// scenario: a pod no node can take says why, in upstream's words, in its
// PodScheduled condition and a FailedScheduling event that `kubectl
// describe` shows; once a node that fits joins, the pod runs there.
func TestUnschedulablePodWaitsForAFittingNode(t *testing.T) {
	ms := startMasters(t, 1)
	cs := clientset(t, ms.apiConfig(t, 0))
	k := newKubectlRunner(t, ms.adminKubeconfig(t, 0))
	hollowNodes(t, cs, "1", "small-1", "small-2", "small-3")
	k.mustRun(t, "apply", "-f", manifest(t, `
apiVersion: v1
kind: Pod
metadata: {name: big}
spec:
  containers:
  - name: app
    image: registry.local/app:v1
    resources: {requests: {cpu: "3"}}
`))
	want := "0/3 nodes are available: 3 Insufficient cpu."
	waitUntil(t, 20*time.Second, "the pod to say why it is pending", func(ctx context.Context) error {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "big", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable && c.Message == want {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", p.Status.Conditions)
	})
	waitUntil(t, 20*time.Second, "kubectl describe to show the FailedScheduling event", func(ctx context.Context) error {
		out, _, _ := k.run(t, "describe", "pod", "big")
		if !strings.Contains(out, "FailedScheduling") || !strings.Contains(out, want) {
			return fmt.Errorf("describe:\n%s", out)
		}
		return nil
	})

	hollowNodes(t, cs, "4", "large-1")
	k.mustRun(t, "wait", "--for=condition=Ready", "pod/big", "--timeout=30s")
	if node := k.mustRun(t, "get", "pod", "big", "-o", "jsonpath={.spec.nodeName}"); node != "large-1" {
		t.Errorf("pod on %q, want large-1", node)
	}
	out := k.mustRun(t, "describe", "pod", "big")
	if !strings.Contains(out, "Successfully assigned default/big to large-1") {
		t.Errorf("describe after scheduling has no Scheduled event:\n%s", out)
	}
}

// TestNodeLossEvictsPods: a hollow node that stops renewing its lease is
// marked unreachable after the grace period and tainted; its pods leave
// their Service's ready addresses and are evicted once their toleration
// (a second here, set on the server) runs out.
func TestNodeLossEvictsPods(t *testing.T) {
	ms := startMastersWith(t, 1, "--node-monitor-grace-period=4s", "--default-toleration-seconds=1")
	cs := clientset(t, ms.apiConfig(t, 0))
	k := newKubectlRunner(t, ms.adminKubeconfig(t, 0))
	stopLost := hollowNodes(t, cs, "4", "doomed")
	hollowNodes(t, cs, "4", "survivor")
	k.mustRun(t, "apply", "-f", manifest(t, `
apiVersion: v1
kind: Pod
metadata: {name: victim, labels: {app: victim}}
spec:
  nodeSelector: {kubernetes.io/hostname: doomed}
  containers: [{name: app, image: registry.local/app:v1, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: victim}
spec:
  selector: {app: victim}
  ports: [{port: 80, targetPort: 8080}]
`))
	k.mustRun(t, "wait", "--for=condition=Ready", "pod/victim", "--timeout=30s")
	waitUntil(t, 20*time.Second, "the pod among the service's ready endpoints", func(ctx context.Context) error {
		ep, err := cs.CoreV1().Endpoints("default").Get(ctx, "victim", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 1 || ep.Subsets[0].Ports[0].Port != 8080 {
			return fmt.Errorf("subsets %+v", ep.Subsets)
		}
		return nil
	})

	stopLost()
	lost := time.Now()
	waitUntil(t, 20*time.Second, "the node unreachable and tainted", func(ctx context.Context) error {
		n, err := cs.CoreV1().Nodes().Get(ctx, "doomed", metav1.GetOptions{})
		if err != nil {
			return err
		}
		unknown := slices.ContainsFunc(n.Status.Conditions, func(c corev1.NodeCondition) bool {
			return c.Type == corev1.NodeReady && c.Status == corev1.ConditionUnknown
		})
		tainted := slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool {
			return t.Key == corev1.TaintNodeUnreachable && t.Effect == corev1.TaintEffectNoExecute
		})
		if !unknown || !tainted {
			return fmt.Errorf("conditions %v taints %v", n.Status.Conditions, n.Spec.Taints)
		}
		return nil
	})
	t.Logf("node unreachable %v after its last lease renewal", time.Since(lost))
	waitUntil(t, 20*time.Second, "the pod evicted and out of the ready endpoints", func(ctx context.Context) error {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "victim", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.DeletionTimestamp == nil || podReady(p) {
			return fmt.Errorf("pod deletionTimestamp %v ready %v", p.DeletionTimestamp, podReady(p))
		}
		ep, err := cs.CoreV1().Endpoints("default").Get(ctx, "victim", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, s := range ep.Subsets {
			if len(s.Addresses) > 0 {
				return fmt.Errorf("still a ready address: %+v", ep.Subsets)
			}
		}
		return nil
	})
	if n, err := cs.CoreV1().Nodes().Get(t.Context(), "survivor", metav1.GetOptions{}); err != nil || !nodeReady(n) || len(n.Spec.Taints) != 0 {
		t.Errorf("the live node: %v, taints %v", err, n.Spec.Taints)
	}
}
