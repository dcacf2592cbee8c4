package kubeservice

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

func TestEndpoints(t *testing.T) {
	ips, port, skipped := Endpoints([]string{"192.168.1.11:6443", "127.0.0.1:6443", "192.168.1.10:6443", "192.168.1.12:7443", "[fd00::1]:6443", "master-1:6443", "0.0.0.0:6443"})
	if !slices.Equal(ips, []string{"192.168.1.10", "192.168.1.11"}) || port != 6443 {
		t.Errorf("got %v port %d", ips, port)
	}
	if !slices.Equal(skipped, []string{"127.0.0.1:6443", "192.168.1.12:7443", "[fd00::1]:6443", "master-1:6443", "0.0.0.0:6443"}) {
		t.Errorf("got skipped %v", skipped)
	}
}

func TestLocalEndpoint(t *testing.T) {
	ips, port, skipped := localEndpoint([]string{"127.0.0.1:6443"}, "192.168.1.20")
	if !slices.Equal(ips, []string{"192.168.1.20"}) || port != 6443 || len(skipped) != 0 {
		t.Errorf("got %v %d %v", ips, port, skipped)
	}
	for _, node := range []string{"", "127.0.0.1", "fd00::1"} {
		if ips, _, _ := localEndpoint([]string{"127.0.0.1:6443"}, node); len(ips) != 0 {
			t.Errorf("node %q: got %v", node, ips)
		}
	}
}

// TestKeeper runs the keeper's passes against a real API server.
func TestKeeper(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ctx := t.Context()
	var mu sync.Mutex
	masters := []string{"192.168.1.10:6443", "192.168.1.11:6443"}
	cfg := DefaultConfig()
	cfg.Client, cfg.Logger = cs, slog.New(slog.DiscardHandler)
	cfg.Masters = func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(masters) }
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.sync(ctx); err != nil {
		t.Fatal(err)
	}
	svc, err := cs.CoreV1().Services(Namespace).Get(ctx, Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p := svc.Spec.Ports; svc.Spec.ClusterIP != "10.96.0.1" || len(p) != 1 || p[0].Name != "https" || p[0].Port != 443 || p[0].TargetPort.IntValue() != 6443 || svc.Labels["provider"] != "kubernetes" {
		t.Errorf("service %+v", svc.Spec)
	}
	state := func() string {
		t.Helper()
		ep, err := cs.CoreV1().Endpoints(Namespace).Get(ctx, Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sl, err := cs.DiscoveryV1().EndpointSlices(Namespace).Get(ctx, Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, s := range ep.Subsets {
			for _, a := range s.Addresses {
				fmt.Fprintf(&b, "ep %s:%d ", a.IP, s.Ports[0].Port)
			}
		}
		for _, e := range sl.Endpoints {
			fmt.Fprintf(&b, "slice %s:%d ready=%v ", e.Addresses[0], *sl.Ports[0].Port, *e.Conditions.Ready)
		}
		fmt.Fprintf(&b, "rv %s/%s label %s", ep.ResourceVersion, sl.ResourceVersion, sl.Labels["kubernetes.io/service-name"])
		return b.String()
	}
	first := state()
	if !strings.HasPrefix(first, "ep 192.168.1.10:6443 ep 192.168.1.11:6443 slice 192.168.1.10:6443 ready=true slice 192.168.1.11:6443 ready=true rv ") || !strings.HasSuffix(first, " label kubernetes") {
		t.Errorf("got %s", first)
	}
	// Nothing changed: nothing is written.
	if err := k.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if again := state(); again != first {
		t.Errorf("an unchanged pass wrote: %s, then %s", first, again)
	}
	// A master goes, another comes on a new address.
	mu.Lock()
	masters = []string{"192.168.1.11:6443", "192.168.1.12:6443"}
	mu.Unlock()
	if err := k.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := state(); !strings.HasPrefix(got, "ep 192.168.1.11:6443 ep 192.168.1.12:6443 slice 192.168.1.11:6443 ready=true slice 192.168.1.12:6443 ready=true ") {
		t.Errorf("after the change: %s", got)
	}
	// None a pod can reach: no endpoints (the service refuses at once).
	mu.Lock()
	masters = []string{"127.0.0.1:6443"}
	mu.Unlock()
	if err := k.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := state(); !strings.HasPrefix(got, "rv ") {
		t.Errorf("with only a loopback master: %s", got)
	}
}
