package storebench

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/agent/hollow"
)

// The node-loss benchmark (issue 5): how long after a worker dies its pods
// run again elsewhere. Hollow nodes heartbeat with leases every second and
// the masters run with a 4 s node monitor grace period (what gossip gives
// a real worker: dead in about 5 s) and pods tolerating an unreachable
// node for 0 s (Skiff's default is 30 s, Kubernetes' 300 s).
const (
	// targetNodeLoss is the most time from a worker's death to its pods'
	// replacements Running and Ready.
	targetNodeLoss = 10 * time.Second
	nodeLossGrace  = "4s"
	nodeLossNodes  = 6
	nodeLossPods   = 30
)

func BenchmarkNodeLoss(b *testing.B) {
	s := loadSettings(b)
	ctx := benchContext(b)
	c, err := startSkiffWith(ctx, b, s, "--node-monitor-grace-period="+nodeLossGrace, "--default-toleration-seconds=0")
	if err != nil {
		b.Fatalf("skiff: start cluster: %v", err)
	}
	api, err := newAPICluster(ctx, c.(*skiffCluster))
	if err != nil {
		b.Fatalf("skiff: %v", err)
	}
	b.Cleanup(api.close)
	cs := api.clients[0]

	// Each node its own hollow runner, so one can die alone.
	stops := map[string]func(){}
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range nodeLossNodes {
		name := fmt.Sprintf("loss-%d", i)
		cfg := hollow.DefaultConfig()
		cfg.Client, cfg.Names, cfg.Logger = api.clients[i%len(api.clients)], []string{name}, slog.New(slog.DiscardHandler)
		cfg.LeaseInterval, cfg.StatusInterval = time.Second, 0
		h, err := hollow.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		hctx, cancel := context.WithCancel(ctx)
		wg.Go(func() {
			if err := h.Run(hctx); err != nil {
				b.Errorf("hollow %s: %v", name, err)
			}
		})
		stops[name] = sync.OnceFunc(cancel)
		defer stops[name]()
	}

	replicas := int32(nodeLossPods)
	labels := map[string]string{"app": "loss"}
	if err := retryCreate(ctx, func() error {
		_, err := cs.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "loss"},
			Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.local/app:v1"}}},
			}},
		}, metav1.CreateOptions{})
		return err
	}); err != nil {
		b.Fatalf("deployment: %v", err)
	}
	// running counts the deployment's live pods Running and Ready, off the
	// given node, and how many are on it.
	running := func(off string) (n, on int, err error) {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=loss"})
		if err != nil {
			return 0, 0, err
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
				continue
			}
			ready := false
			for _, c := range p.Status.Conditions {
				ready = ready || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
			}
			switch {
			case p.Spec.NodeName == off:
				on++
			case ready:
				n++
			}
		}
		return n, on, nil
	}
	victim := "loss-0"
	var onVictim int
	if err := poll(ctx, 60*time.Second, func() error {
		n, _, err := running("")
		if err != nil {
			return err
		}
		if n != nodeLossPods {
			return fmt.Errorf("%d of %d pods Running and Ready", n, nodeLossPods)
		}
		if _, onVictim, err = running(victim); err != nil || onVictim == 0 {
			return fmt.Errorf("no pod on %s yet (%v)", victim, err)
		}
		return nil
	}); err != nil {
		b.Fatalf("deployment not up: %v", err)
	}

	stops[victim]()
	died := time.Now()
	var unreachable time.Duration
	if err := poll(ctx, 2*time.Minute, func() error {
		if unreachable == 0 {
			if n, err := cs.CoreV1().Nodes().Get(ctx, victim, metav1.GetOptions{}); err == nil {
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionUnknown {
						unreachable = time.Since(died)
					}
				}
			}
		}
		n, _, err := running(victim)
		if err != nil {
			return err
		}
		if n != nodeLossPods {
			return fmt.Errorf("%d of %d pods Running and Ready off %s", n, nodeLossPods, victim)
		}
		return nil
	}); err != nil {
		b.Fatalf("replacements: %v", err)
	}
	took := time.Since(died)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(took.Seconds(), "s-to-replacements")
	b.ReportMetric(unreachable.Seconds(), "s-to-unreachable")
	verdict := "PASS"
	if took > targetNodeLoss {
		verdict = "MISS"
	}
	var t strings.Builder
	fmt.Fprintf(&t, "Node loss: 3 masters, %d hollow nodes (lease every 1 s), a Deployment of %d pods (%d on the node that dies); --node-monitor-grace-period=%s --default-toleration-seconds=0\n", nodeLossNodes, nodeLossPods, onVictim, nodeLossGrace)
	fmt.Fprintf(&t, "  node Ready=Unknown after   %6.2f s (grace period from the last lease renewal)\n", unreachable.Seconds())
	fmt.Fprintf(&t, "  all %d pods Running again  %6.2f s after the node died\n", nodeLossPods, took.Seconds())
	fmt.Fprintf(&t, "targets:\n  node loss to replacements Running <= %v         %6.2f s   %s\n", targetNodeLoss, took.Seconds(), verdict)
	fmt.Print(t.String())
	b.Log("\n" + t.String())
}

// poll runs cond every 100 ms until it returns nil or timeout passes.
func poll(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// retryCreate retries create for a few seconds: the namespace's default
// service account may not exist yet.
func retryCreate(ctx context.Context, create func() error) error {
	return poll(ctx, 20*time.Second, create)
}
