package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestServiceAllocationAcrossMasters: NodePort services created at the
// same time on three masters all get their own cluster IP and node port.
func TestServiceAllocationAcrossMasters(t *testing.T) {
	ms := startMasters(t, 3)
	clients := make([]*kubernetes.Clientset, 3)
	for i := range clients {
		clients[i] = clientset(t, ms.apiConfig(t, i))
	}
	const perMaster = 20
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		svcs []*corev1.Service
		errs []error
	)
	for i, cs := range clients {
		for j := range perMaster {
			wg.Add(1)
			go func() {
				defer wg.Done()
				svc, err := cs.CoreV1().Services("default").Create(t.Context(), &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s-%d-%d", i, j)},
					Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Port: 80}}},
				}, metav1.CreateOptions{})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("create through %s: %w", ms.nodes[i].name, err))
					return
				}
				svcs = append(svcs, svc)
			}()
		}
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	ips, ports := map[string]string{}, map[int32]string{}
	for _, svc := range svcs {
		ip, port := svc.Spec.ClusterIP, svc.Spec.Ports[0].NodePort
		if ip == "" || port == 0 {
			t.Errorf("%s: got cluster IP %q node port %d, want both allocated", svc.Name, ip, port)
		}
		if other, dup := ips[ip]; dup {
			t.Errorf("%s and %s both got cluster IP %s", other, svc.Name, ip)
		}
		if other, dup := ports[port]; dup {
			t.Errorf("%s and %s both got node port %d", other, svc.Name, port)
		}
		ips[ip], ports[port] = svc.Name, svc.Name
	}
	// Every master lists the same allocations.
	for i, cs := range clients {
		list, err := cs.CoreV1().Services("default").List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, svc := range list.Items {
			if owner, ok := ips[svc.Spec.ClusterIP]; ok && owner == svc.Name {
				n++
			}
		}
		if n != len(svcs) {
			t.Errorf("%s lists %d of the %d services with their allocated IPs", ms.nodes[i].name, n, len(svcs))
		}
	}
}

// TestReadyzWithoutQuorum: a master that cannot reach a quorum says it is
// not ready, on its status endpoint and on the Kubernetes API, and is ready
// again once a quorum is back.
func TestReadyzWithoutQuorum(t *testing.T) {
	ms := startMasters(t, 3)
	leader := ms.waitLeader(t)
	alone := (leader + 1) % 3
	cfg := ms.apiConfig(t, alone)
	cs := clientset(t, cfg)
	apiReadyz := func(ctx context.Context) (int, error) {
		var code int
		err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).StatusCode(&code).Error()
		return code, err
	}
	ms.kill(t, leader, (leader+2)%3)
	waitUntil(t, 20*time.Second, ms.nodes[alone].name+" to report not ready without a quorum", func(ctx context.Context) error {
		if err := ms.ready(ctx, alone); err == nil {
			return fmt.Errorf("status /readyz still 200")
		}
		if code, _ := apiReadyz(ctx); code != http.StatusServiceUnavailable {
			return fmt.Errorf("API /readyz: got %d, want 503", code)
		}
		return nil
	})
	ms.restart(t, leader)
	waitUntil(t, 30*time.Second, ms.nodes[alone].name+" to be ready again with a quorum", func(ctx context.Context) error {
		if err := ms.ready(ctx, alone); err != nil {
			return err
		}
		if code, err := apiReadyz(ctx); code != http.StatusOK {
			return fmt.Errorf("API /readyz: got %d (%v), want 200", code, err)
		}
		return nil
	})
}
