package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/skiff-sh/skiff/controlplane/client"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-sh/skiff/agent/hollow"
)

// runHollow runs hollow nodes against a cluster (`skiff hollow`) until ctx
// ends; the Nodes stay registered.
func runHollow(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("skiff hollow", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: skiff hollow --kubeconfig FILE [--count N] [--prefix P] [flags]\n\nRuns hollow nodes: Nodes that register, heartbeat and run pods through the API without containers (for scale tests).\n\n")
		fs.PrintDefaults()
	}
	def := hollow.DefaultConfig()
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the cluster (required)")
	count := fs.Int("count", 1, "number of hollow nodes")
	prefix := fs.String("prefix", def.Prefix, "node names are this prefix followed by 0..count-1")
	cpu := fs.String("cpu", def.Capacity.Cpu().String(), "CPU capacity of each node")
	memory := fs.String("memory", def.Capacity.Memory().String(), "memory capacity of each node")
	pods := fs.Int("pods", int(def.Capacity.Pods().Value()), "pod capacity of each node")
	leaseInterval := fs.Duration("lease-interval", def.LeaseInterval, "how often each node renews its Lease (0: no leases)")
	statusInterval := fs.Duration("status-interval", def.StatusInterval, "how often each node posts its conditions (0: only at registration)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *kubeconfig == "" {
		fs.Usage()
		return 2
	}
	cfg := def
	cfg.Count, cfg.Prefix, cfg.LeaseInterval, cfg.StatusInterval = *count, *prefix, *leaseInterval, *statusInterval
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	var err error
	cfg.Capacity = corev1.ResourceList{}
	for name, v := range map[corev1.ResourceName]string{corev1.ResourceCPU: *cpu, corev1.ResourceMemory: *memory, corev1.ResourcePods: fmt.Sprint(*pods)} {
		if cfg.Capacity[name], err = resource.ParseQuantity(v); err != nil {
			fmt.Fprintf(stderr, "skiff hollow: --%s %q: %v\n", name, v, err)
			return 2
		}
	}
	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintf(stderr, "skiff hollow: %v\n", err)
		return 1
	}
	// Thousands of nodes heartbeat and report pods through this one client,
	// as many requests at a time as they run in parallel.
	rc.QPS, rc.Burst = 500, 1000
	client.Protobuf(rc)
	if err := client.KeepConns(rc, 2*cfg.Parallelism); err != nil {
		fmt.Fprintf(stderr, "skiff hollow: %v\n", err)
		return 1
	}
	if cfg.Client, err = kubernetes.NewForConfig(rc); err != nil {
		fmt.Fprintf(stderr, "skiff hollow: %v\n", err)
		return 1
	}
	h, err := hollow.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "skiff hollow: %v\n", err)
		return 2
	}
	fmt.Fprintf(stdout, "running %d hollow nodes (%s0..%s%d) against %s\n", *count, *prefix, *prefix, *count-1, rc.Host)
	if err := h.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "skiff hollow: %v\n", err)
		return 1
	}
	return 0
}
