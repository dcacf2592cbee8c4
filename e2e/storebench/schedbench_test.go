package storebench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/agent/hollow"
)

// The scheduling benchmark (issue 5): three masters, hollow nodes, and
// pods created through the API as fast as 64 clients can; the leader's
// scheduler binds them and the hollow nodes run them.
const (
	// targetBindRate is the least pods bound per second, end to end.
	targetBindRate = 1000
	// schedCreators is how many clients create the pods.
	schedCreators = 64
	// schedClusterCIDR is the masters' --cluster-cidr: a /24 for each of
	// 32,768 nodes, outside the service CIDR (10.96.0.0/12).
	schedClusterCIDR = "10.128.0.0/9"
)

// schedSize is one benchmark size: nodes and pods.
type schedSize struct{ nodes, pods int }

// loadSchedSizes reads SCHEDBENCH_SIZES ("1000x10000,5000x30000", the
// default) into sizes.
func loadSchedSizes(b *testing.B) []schedSize {
	b.Helper()
	v := os.Getenv("SCHEDBENCH_SIZES")
	if v == "" {
		v = "1000x10000,5000x30000"
	}
	var sizes []schedSize
	for _, f := range strings.Split(v, ",") {
		n, p, ok := strings.Cut(strings.TrimSpace(f), "x")
		nodes, err1 := strconv.Atoi(n)
		pods, err2 := strconv.Atoi(p)
		if !ok || err1 != nil || err2 != nil || nodes <= 0 || pods <= 0 {
			b.Fatalf("SCHEDBENCH_SIZES=%q: want NODESxPODS[,NODESxPODS...]", v)
		}
		sizes = append(sizes, schedSize{nodes, pods})
	}
	return sizes
}

// schedResult is one size's figures.
type schedResult struct {
	size schedSize
	// created and bound are how long after the first create the last pod
	// was created and bound; running when the last was Running.
	created, bound, running time.Duration
	// steady is the bind rate between 10% and 90% of the pods bound.
	steady float64
	other  float64
	// cpuMS is the CPU time the masters and this process (the clients and
	// the hollow nodes) spent per pod, from the first create to the last
	// Running: the cost that bounds the rate on a busy machine.
	cpuMS float64
}

func BenchmarkScheduling(b *testing.B) {
	s := loadSettings(b)
	// This process stands in for the load: 64 clients and every hollow
	// kubelet, which on a real cluster run elsewhere. They share the 2 cores
	// with the masters, so the collector runs less often here (as the
	// masters' --gc-percent does): at GOGC=100 it took a fifth of this
	// process's CPU.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	ctx := benchContext(b)
	var results []schedResult
	for _, size := range loadSchedSizes(b) {
		b.Run(fmt.Sprintf("nodes=%d/pods=%d", size.nodes, size.pods), func(b *testing.B) {
			// A /24 of pods per node, as the masters hand out: the default
			// cluster CIDR (a /16) has room for 256 nodes only, and the node
			// IPAM controller would report every other node out of ranges.
			c, err := startSkiffWith(ctx, b, s, "--cluster-cidr", schedClusterCIDR)
			if err != nil {
				b.Fatalf("skiff: start cluster: %v", err)
			}
			api, err := newAPICluster(ctx, c.(*skiffCluster))
			if err != nil {
				b.Fatalf("skiff: %v", err)
			}
			b.Cleanup(api.close)
			before := sampleCPU(api.sc.ps)
			r, err := api.schedule(ctx, b, size)
			if err != nil {
				b.Fatalf("skiff: %v", err)
			}
			r.other = before.otherCores(sampleCPU(api.sc.ps))
			results = append(results, r)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(size.pods)/r.bound.Seconds(), "pods-bound/s")
			b.ReportMetric(r.steady, "steady-pods-bound/s")
			b.ReportMetric(float64(size.pods)/r.created.Seconds(), "pods-created/s")
			b.ReportMetric(r.cpuMS, "cpu-ms/pod")
		})
	}
	var t strings.Builder
	fmt.Fprintf(&t, "Scheduling benchmark: 3 masters on 127.0.0.1, hollow nodes (4 cpu, 16Gi, 110 pods; lease every 10 s; one process, through a follower) through the API, pods (100m cpu, 100Mi) created by %d clients round-robin over the masters as fast as they go\n", schedCreators)
	fmt.Fprintf(&t, "  %-22s %10s %10s %10s %12s %12s %10s %8s\n", "size", "created s", "bound s", "running s", "bound/s", "steady b/s", "cpu ms/pod", "other")
	for _, r := range results {
		fmt.Fprintf(&t, "  %-22s %10.2f %10.2f %10.2f %12.0f %12.0f %10.2f %8.2f\n", fmt.Sprintf("%d nodes, %d pods", r.size.nodes, r.size.pods),
			r.created.Seconds(), r.bound.Seconds(), r.running.Seconds(), float64(r.size.pods)/r.bound.Seconds(), r.steady, r.cpuMS, r.other)
	}
	t.WriteString("  (bound/s: all pods over the time from the first create to the last bind, creation included; steady: between 10% and 90% bound; cpu ms/pod: the masters' and the clients' CPU per pod up to the last Running; other: cores busy outside the benchmark)\ntargets:\n")
	for _, r := range results {
		rate := float64(r.size.pods) / r.bound.Seconds()
		verdict := "PASS"
		if rate < targetBindRate {
			verdict = "MISS"
		}
		fmt.Fprintf(&t, "  pods bound/s >= %d, %d nodes / %d pods       %6.0f   %s\n", targetBindRate, r.size.nodes, r.size.pods, rate, verdict)
	}
	fmt.Print(t.String())
	b.Log("\n" + t.String())
}

// schedule registers size.nodes hollow nodes (through a follower), creates
// size.pods pods and times their binding and running.
func (a *apiCluster) schedule(ctx context.Context, b *testing.B, size schedSize) (schedResult, error) {
	r := schedResult{size: size}
	ns := fmt.Sprintf("sched-%d", size.nodes)
	if err := a.createNamespace(ctx, ns); err != nil {
		return r, err
	}
	hctx, stopHollow := context.WithCancel(ctx)
	var hollowWG sync.WaitGroup
	defer func() { stopHollow(); hollowWG.Wait() }()
	// One hollow process for all the nodes, as one kubemark host: one pod
	// watch decodes each event once (three would triple the benchmark's own
	// CPU on this 2-core machine). It talks to a follower.
	hollowErr := make(chan error, 1)
	progress := newSchedProgress(ns, size.pods)
	cfg := hollow.DefaultConfig()
	cfg.OnPod = progress.observe
	cfg.Client, cfg.Logger, cfg.Count, cfg.Prefix = a.clients[1%len(a.clients)], slog.New(slog.DiscardHandler), size.nodes, "hollow-"
	cfg.Parallelism, cfg.StatusInterval = 48, 0
	cfg.Capacity = corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("110"),
	}
	h, err := hollow.New(cfg)
	if err != nil {
		return r, err
	}
	hollowWG.Add(1)
	go func() {
		defer hollowWG.Done()
		if err := h.Run(hctx); err != nil {
			hollowErr <- err
		}
	}()
	start := time.Now()
	for {
		list, err := a.clients[0].CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return r, err
		}
		// Ready, and given its pod range by the node IPAM controller (the
		// masters' writes of setting up, not of scheduling).
		ready := 0
		for i := range list.Items {
			for _, c := range list.Items[i].Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && list.Items[i].Spec.PodCIDR != "" {
					ready++
				}
			}
		}
		if ready == size.nodes {
			break
		}
		select {
		case err := <-hollowErr:
			return r, fmt.Errorf("hollow nodes: %w", err)
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	b.Logf("%d hollow nodes Ready in %v", size.nodes, time.Since(start).Round(time.Millisecond))

	first := time.Now()
	progress.start(first)
	cpuBefore := sampleCPU(a.sc.ps)

	// Profiles (APIBENCH_PROFILE_DIR) are taken from 10% bound on: the
	// steady state, not the connection pools filling.
	profiled := make(chan func(), 1)
	pctx, stopProfiling := context.WithCancel(ctx)
	go func() {
		select {
		case <-progress.tenth:
			profiled <- a.profile(pctx, b, os.Getenv("APIBENCH_PROFILE_DIR"), fmt.Sprintf("sched-%d", size.nodes), 10*time.Second)
		case <-pctx.Done():
			profiled <- func() {}
		}
	}()
	defer func() { stopProfiling(); (<-profiled)() }()
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range schedCreators {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(size.pods) || ctx.Err() != nil {
					return
				}
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i)},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.local/app:v1",
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("100Mi"),
						}}}}},
				}
				for attempt := 0; ; attempt++ {
					// As Create, without decoding the pod sent back (the
					// clients' CPU, on a real cluster elsewhere).
					err := a.client().CoreV1().RESTClient().Post().Namespace(ns).Resource("pods").Body(pod).Do(ctx).Error()
					if err == nil || attempt == 5 {
						if err != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, err)
						}
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	r.created = time.Since(first)
	if n := failed.Load(); n > 0 {
		return r, fmt.Errorf("%d creates failed, first: %v", n, firstErr.Load())
	}
	select {
	case <-progress.done:
	case <-time.After(10 * time.Minute):
		bound, running := progress.counts()
		return r, fmt.Errorf("%d of %d pods bound and %d Running after 10 minutes", bound, size.pods, running)
	case err := <-hollowErr:
		return r, fmt.Errorf("hollow nodes: %w", err)
	}
	var split strings.Builder
	if cpuAfter := sampleCPU(a.sc.ps); cpuBefore.ok && cpuAfter.ok {
		r.cpuMS = (cpuAfter.ours - cpuBefore.ours) * 1000 / float64(size.pods)
		for i := range cpuAfter.each {
			who := "this process (clients, hollow nodes)"
			if i > 0 {
				who = a.sc.ps[i-1].name
			}
			fmt.Fprintf(&split, "; %s %.2f", who, (cpuAfter.each[i]-cpuBefore.each[i])*1000/float64(size.pods))
		}
	}
	p := progress
	p.mu.Lock()
	r.bound, r.running = p.tBound, p.tRunning
	r.steady = float64(size.pods*9/10-size.pods/10) / (p.t90 - p.t10).Seconds()
	t10, t90 := p.t10, p.t90
	p.mu.Unlock()
	b.Logf("%d pods: created in %v, all bound %v and Running %v after the first create (10%% bound after %v, 90%% after %v); steady %0.f binds/s; %.2f ms CPU per pod%s",
		size.pods, r.created.Round(time.Millisecond), r.bound.Round(time.Millisecond), r.running.Round(time.Millisecond),
		t10.Round(time.Millisecond), t90.Round(time.Millisecond), r.steady, r.cpuMS, split.String())
	return r, nil
}

// schedProgress times the binds and the Runnings from the hollow nodes' own
// pod watch (hollow.Config.OnPod), so that the benchmark adds no watch of
// its own to the masters' work: the first version of a pod that the nodes
// see is bound, on the follower serving them, a little after the leader
// bound it.
type schedProgress struct {
	ns   string
	pods int
	// tenth is closed at 10% bound, done when every pod is Running.
	tenth, done chan struct{}

	mu             sync.Mutex
	first          time.Time // zero until start
	bound, running map[string]bool
	// t10, t90, tBound and tRunning are how long after first 10%, 90% and
	// all of the pods were bound, and all were Running.
	t10, t90, tBound, tRunning time.Duration
}

func newSchedProgress(ns string, pods int) *schedProgress {
	return &schedProgress{ns: ns, pods: pods, tenth: make(chan struct{}), done: make(chan struct{}),
		bound: map[string]bool{}, running: map[string]bool{}}
}

// start sets the time the durations count from: the first create.
func (p *schedProgress) start(first time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.first = first
}

// observe takes one version of a pod that a hollow node saw.
func (p *schedProgress) observe(pod *corev1.Pod) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.first.IsZero() || pod.Namespace != p.ns || pod.Spec.NodeName == "" {
		return
	}
	now := time.Since(p.first)
	if !p.bound[pod.Name] {
		p.bound[pod.Name] = true
		switch len(p.bound) {
		case p.pods / 10:
			p.t10 = now
			close(p.tenth)
		case p.pods * 9 / 10:
			p.t90 = now
		case p.pods:
			p.tBound = now
		}
	}
	if pod.Status.Phase == corev1.PodRunning && !p.running[pod.Name] {
		p.running[pod.Name] = true
		if len(p.running) == p.pods {
			p.tRunning = now
			close(p.done)
		}
	}
}

// counts returns how many pods were seen bound and Running.
func (p *schedProgress) counts() (bound, running int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.bound), len(p.running)
}
