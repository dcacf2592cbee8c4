package clusterdns

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

// TestKeepsTheService: created with its fixed IP, and again when deleted.
func TestKeepsTheService(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	if _, err := cs.CoreV1().Namespaces().Get(t.Context(), Namespace, metav1.GetOptions{}); err != nil {
		if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultConfig()
	cfg.Client, cfg.Interval = cs, 100*time.Millisecond
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	check := func() error {
		s, err := cs.CoreV1().Services(Namespace).Get(t.Context(), Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if s.Spec.ClusterIP != "10.96.0.10" || len(s.Spec.Ports) != 2 || s.Spec.Selector != nil {
			return fmt.Errorf("service %+v", s.Spec)
		}
		return nil
	}
	apitest.WaitFor(t, 10*time.Second, "kube-dns created", check)
	if err := cs.CoreV1().Services(Namespace).Delete(t.Context(), Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	apitest.WaitFor(t, 10*time.Second, "kube-dns created again", check)
}
