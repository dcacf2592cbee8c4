package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

// BenchmarkSchedule measures one decision and its assumption, as the
// scheduling loop makes them, on clusters of the sizes that
// already run 6 pods per node (three controllers' worth each).
func BenchmarkSchedule(b *testing.B) {
	for _, nodes := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			c := NewCache()
			for i := range nodes {
				n := mkNode(fmt.Sprintf("node-%05d", i), "64", "256Gi", 1_000_000, func(n *corev1.Node) { n.Labels["zone"] = fmt.Sprintf("z%d", i%3) })
				if i%10 == 0 {
					n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
				}
				c.SetNode(n)
			}
			for i := range nodes * 6 {
				p := mkPod(fmt.Sprintf("old-%d", i), "100m", "128Mi", on(fmt.Sprintf("node-%05d", i%nodes)), ownedBy(fmt.Sprintf("rs-%d", i%3)), hostPortOf(int32(9000+i%2), ""))
				if err := c.AddPod(p); err != nil {
					b.Fatal(err)
				}
			}
			pods := make([]*PodInfo, 1000)
			for i := range pods {
				pi, err := NewPodInfo(mkPod(fmt.Sprintf("new-%d", i), "100m", "128Mi", ownedBy("rs-new")))
				if err != nil {
					b.Fatal(err)
				}
				pods[i] = pi
			}
			rnd := rand.New(rand.NewPCG(1, 2))
			start := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				pi := pods[i%len(pods)]
				c.Lock()
				res, err := Schedule(&c.snap, pi, Options{Start: start, Rand: rnd})
				if err != nil {
					c.Unlock()
					b.Fatal(err)
				}
				start = (start + res.Evaluated) % nodes
				c.AssumeLocked(pi, res.Node)
				c.Unlock()
			}
		})
	}
}

// BenchmarkEndToEnd measures the throughput through the API: with
// the nodes and every pod already created (pending), it starts the
// scheduler and waits until a pod watch has seen every pod bound. It
// reports pods/s; the target is 1,000. One iteration is one whole run.
func BenchmarkEndToEnd(b *testing.B) {
	for _, size := range []struct{ nodes, pods int }{{1000, 10000}, {5000, 30000}} {
		b.Run(fmt.Sprintf("nodes=%d/pods=%d", size.nodes, size.pods), func(b *testing.B) {
			for range b.N {
				endToEnd(b, size.nodes, size.pods)
			}
		})
	}
}

func endToEnd(b *testing.B, nodes, pods int) {
	b.StopTimer()
	rc := apitest.Start(b)
	rc.QPS = -1 // no client-side limit: the server is what is measured
	cs := kubernetes.NewForConfigOrDie(rc)
	ctx := b.Context()
	parallel(b, nodes, func(i int) error {
		n := mkNode(fmt.Sprintf("node-%05d", i), "64", "256Gi", 110)
		status := n.Status
		created, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		created.Status = status
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
		return err
	})
	parallel(b, pods, func(i int) error {
		p := mkPod(fmt.Sprintf("p-%05d", i), "100m", "128Mi", ownedBy(fmt.Sprintf("00000000-0000-4000-8000-%012d", i%50)))
		p.Namespace, p.UID, p.Spec.SchedulerName = metav1.NamespaceDefault, "", ""
		p.Spec.Containers[0].Image = "busybox"
		_, err := cs.CoreV1().Pods(metav1.NamespaceDefault).Create(ctx, p, metav1.CreateOptions{})
		return err
	})
	list, err := cs.CoreV1().Pods(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	w, err := cs.CoreV1().Pods(metav1.NamespaceDefault).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()

	cfg := DefaultConfig()
	cfg.Client, cfg.Logger = cs, slog.New(slog.DiscardHandler)
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	began := time.Now()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	bound := map[string]bool{}
	timeout := time.After(5 * time.Minute)
	for len(bound) < pods {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatal("watch ended")
			}
			if p, isPod := ev.Object.(*corev1.Pod); isPod && p.Spec.NodeName != "" {
				bound[p.Name] = true
			}
		case <-timeout:
			b.Fatalf("%d of %d pods bound after 5 minutes", len(bound), pods)
		}
	}
	elapsed := time.Since(began)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(pods)/elapsed.Seconds(), "pods/s")
}

// parallel runs f(0..n-1) on 32 goroutines and fails b on the first error.
func parallel(b *testing.B, n int, f func(int) error) {
	var next atomic.Int64
	var g errgroup.Group
	for range 32 {
		g.Go(func() error {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := f(i); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
}
