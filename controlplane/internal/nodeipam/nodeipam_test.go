package nodeipam

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"
)

// run starts a controller for cidr/mask until stop is called or the test ends.
func run(t *testing.T, cs kubernetes.Interface, cidr string, mask int) (stop func()) {
	t.Helper()
	return runConfig(t, config(cs, cidr, mask))
}

func config(cs kubernetes.Interface, cidr string, mask int) Config {
	cfg := DefaultConfig()
	cfg.Client, cfg.Logger, cfg.ClusterCIDR, cfg.NodeMaskSize = cs, slog.New(slog.DiscardHandler), netip.MustParsePrefix(cidr), mask
	return cfg
}

// runConfig starts a controller with cfg until stop is called or the test
// ends.
func runConfig(t *testing.T, cfg Config) (stop func()) {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func cidrs(t *testing.T, cs kubernetes.Interface) map[string]string {
	t.Helper()
	list, err := cs.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, n := range list.Items {
		got[n.Name] = n.Spec.PodCIDR
	}
	return got
}

func createNode(t *testing.T, cs kubernetes.Interface, name, cidr string) {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if cidr != "" {
		n.Spec.PodCIDR, n.Spec.PodCIDRs = cidr, []string{cidr}
	}
	if _, err := cs.CoreV1().Nodes().Create(t.Context(), n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestDistinctRanges: nodes get distinct /24s, a range a node brought is
// kept and never given to another, a restarted controller (new leader)
// does not hand out a range again, and a full cluster CIDR is reported and
// resolved when a node goes.
func TestDistinctRanges(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	createNode(t, cs, "own", "10.250.0.0/26")
	stop := run(t, cs, "10.250.0.0/24", 26) // four ranges
	createNode(t, cs, "a", "")
	createNode(t, cs, "b", "")
	apitest.WaitFor(t, 20*time.Second, "a and b to get ranges", func() error {
		got := cidrs(t, cs)
		if got["a"] == "" || got["b"] == "" {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	stop()
	run(t, cs, "10.250.0.0/24", 26)
	createNode(t, cs, "c", "")
	apitest.WaitFor(t, 20*time.Second, "c to get the last range", func() error {
		if cidrs(t, cs)["c"] == "" {
			return fmt.Errorf("c has none")
		}
		return nil
	})
	createNode(t, cs, "d", "") // no range left
	apitest.WaitFor(t, 20*time.Second, "d to get a CIDRNotAvailable event", func() error {
		evs, err := cs.CoreV1().Events("").List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=d,reason=CIDRNotAvailable"})
		if err != nil {
			return err
		}
		if len(evs.Items) == 0 {
			return fmt.Errorf("no event yet")
		}
		return nil
	})
	got := cidrs(t, cs)
	seen := map[string]string{}
	for node, c := range got {
		if c == "" {
			if node != "d" {
				t.Errorf("node %s has no range", node)
			}
			continue
		}
		if other, dup := seen[c]; dup {
			t.Errorf("nodes %s and %s both have %s", node, other, c)
		}
		seen[c] = node
		if p := netip.MustParsePrefix(c); p.Bits() != 26 || !netip.MustParsePrefix("10.250.0.0/24").Contains(p.Addr()) {
			t.Errorf("node %s: range %s outside the cluster CIDR or not a /26", node, c)
		}
	}
	if got["own"] != "10.250.0.0/26" {
		t.Errorf("own: got %s, want the range it brought", got["own"])
	}
	if err := cs.CoreV1().Nodes().Delete(t.Context(), "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	apitest.WaitFor(t, 20*time.Second, "d to get a's range", func() error {
		if d := cidrs(t, cs)["d"]; d != got["a"] {
			return fmt.Errorf("d has %q, want %s", d, got["a"])
		}
		return nil
	})
}

// TestCacheLaggingOwnWrites: a round over an informer cache that does not
// show the ranges the controller wrote yet (its watch lags its writes)
// neither writes those nodes again nor hands their ranges to another node.
// The controller writes to one fake API and reads from another, whose
// nodes never show a range.
func TestCacheLaggingOwnWrites(t *testing.T) {
	api, lagging := fake.NewClientset(), fake.NewClientset()
	for _, name := range []string{"a", "b"} {
		createNode(t, api, name, "")
		createNode(t, lagging, name, "")
	}
	cfg := config(api, "10.250.0.0/24", 26)
	cfg.Informers = sharedinformers.New(lagging, 1)
	runConfig(t, cfg)
	apitest.WaitFor(t, 20*time.Second, "a and b to get ranges", func() error {
		if got := cidrs(t, api); got["a"] == "" || got["b"] == "" {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	first := cidrs(t, api)
	// c's arrival in the lagging cache starts a round in which a and b
	// still show no range.
	createNode(t, api, "c", "")
	createNode(t, lagging, "c", "")
	apitest.WaitFor(t, 20*time.Second, "c to get a range", func() error {
		if cidrs(t, api)["c"] == "" {
			return fmt.Errorf("c has none")
		}
		return nil
	})
	got := cidrs(t, api)
	if got["a"] != first["a"] || got["b"] != first["b"] {
		t.Errorf("a and b got new ranges: %v, then %v", first, got)
	}
	if got["c"] == got["a"] || got["c"] == got["b"] || got["a"] == got["b"] {
		t.Errorf("a range given twice: %v", got)
	}
	updates := map[string]int{}
	for _, a := range api.Actions() {
		if u, ok := a.(k8stesting.UpdateAction); ok && a.GetVerb() == "update" && a.GetResource().Resource == "nodes" {
			updates[u.GetObject().(*corev1.Node).Name]++
		}
	}
	if updates["a"] != 1 || updates["b"] != 1 || updates["c"] != 1 {
		t.Errorf("node updates: %v, want one each", updates)
	}
}
