package netproxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/controlplane/testapi"
)

// BenchmarkChangeToKernel is the network programming latency end to end:
// a real API server holds N services × 10 endpoints, a Proxy programs them
// into the iptables of a fresh network namespace, then one op moves one
// endpoint of one service (an EndpointSlice update through the API) and
// waits until the Proxy has written it to the kernel. Reported: p50 and
// p99 of observed→kernel (from the informer seeing the change, the issue's
// measure) and of update→kernel (from the API call).
func BenchmarkChangeToKernel(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: a network namespace and iptables")
	}
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		b.Skip("needs iptables-restore")
	}
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) { benchChangeToKernel(b, n) })
	}
}

func benchChangeToKernel(b *testing.B, n int) {
	cfg := testapi.Start(b)
	cfg.QPS, cfg.Burst = -1, 0
	cs := kubernetes.NewForConfigOrDie(rest.CopyConfig(cfg))
	ctx := context.Background()
	ns := "bench"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	slicesOf := make([]*discoveryv1.EndpointSlice, n)
	sem := make(chan struct{}, 32)
	errs := make(chan error, n)
	for i := range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			name := fmt.Sprintf("svc-%05d", i)
			_, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
			}, metav1.CreateOptions{})
			if err != nil {
				errs <- err
				return
			}
			port, proto, pname := int32(8080), corev1.ProtocolTCP, "http"
			sl := &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Name: name + "-a", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}},
			}
			for e := range 10 {
				// Over 1,000 nodes: 100 of the 100,000 endpoints at
				// 10,000 services are on node-0, the Proxy's, about
				// what one node runs (110 pods at most).
				node := fmt.Sprintf("node-%d", (i*10+e)%1000)
				sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
					Addresses: []string{fmt.Sprintf("10.%d.%d.%d", 64+i/256%64, i%256, e+1)}, NodeName: &node,
				})
			}
			created, err := cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, sl, metav1.CreateOptions{})
			if err != nil {
				errs <- err
				return
			}
			slicesOf[i] = created
		}()
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}

	// The Proxy's sync loop (and every iptables command it runs) lives in
	// Run's goroutine: lock it to a thread switched into a new namespace.
	nsName := fmt.Sprintf("skpb%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", nsName).CombinedOutput(); err != nil {
		b.Fatalf("ip netns add: %v: %s", err, out)
	}
	b.Cleanup(func() { exec.Command("ip", "netns", "del", nsName).Run() })
	syncs := make(chan SyncInfo, 1024)
	pcfg := DefaultConfig()
	pcfg.Client = kubernetes.NewForConfigOrDie(rest.CopyConfig(cfg))
	pcfg.NodeName, pcfg.NodeIPs = "node-0", []netip.Addr{netip.MustParseAddr("192.0.2.10")}
	pcfg.DNSListen = netip.AddrPort{} // no DNS server: its listeners would not be in the namespace
	pcfg.OnSync = func(si SyncInfo) { syncs <- si }
	pcfg.Logger = quietLogger()
	p, err := New(pcfg)
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is discarded with the goroutine
		f, err := os.Open("/run/netns/" + nsName)
		if err == nil {
			err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
			f.Close()
		}
		if err != nil {
			done <- err
			return
		}
		done <- p.Run(runCtx)
	}()
	b.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	select {
	case <-p.Synced():
	case err := <-done:
		b.Fatalf("proxy: %v", err)
	case <-time.After(5 * time.Minute):
		b.Fatal("no first sync within 5 minutes")
	}
	for len(syncs) > 0 {
		<-syncs
	}

	var observed, sinceUpdate []time.Duration
	b.ResetTimer()
	for i := range b.N {
		sl := slicesOf[(i*7919)%n].DeepCopy()
		sl.Endpoints[0].Addresses = []string{fmt.Sprintf("10.200.%d.%d", i/250%250, i%250+1)}
		start := time.Now()
		updated, err := cs.DiscoveryV1().EndpointSlices(ns).Update(ctx, sl, metav1.UpdateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		slicesOf[(i*7919)%n] = updated
		for {
			si := <-syncs
			if si.SinceObserved > 0 && !si.Full {
				observed = append(observed, si.SinceObserved)
				sinceUpdate = append(sinceUpdate, time.Since(start))
				break
			}
		}
	}
	b.StopTimer()
	report := func(d []time.Duration, name string) {
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(d[(len(d)*99)/100].Microseconds())/1000, name+"-p99-ms")
	}
	report(observed, "observed-to-kernel")
	report(sinceUpdate, "update-to-kernel")
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
