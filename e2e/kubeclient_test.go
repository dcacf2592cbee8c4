package e2e

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// apiConfig waits until master i's Kubernetes API answers /readyz through
// its admin kubeconfig and returns a client-go config for it. A restart
// rewrites the kubeconfig (the tests give the API an ephemeral port), so
// call it again after restarting a master. The config has no client-side
// rate limit and a 20 s request timeout.
func (ms *masters) apiConfig(t *testing.T, i int) *rest.Config {
	t.Helper()
	path := ms.adminKubeconfig(t, i)
	var cfg *rest.Config
	waitUntil(t, 30*time.Second, fmt.Sprintf("%s's API through %s", ms.nodes[i].name, path), func(ctx context.Context) error {
		c, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return err
		}
		c.QPS, c.Burst, c.Timeout = 1000, 1000, 20*time.Second
		cs, err := kubernetes.NewForConfig(c)
		if err != nil {
			return err
		}
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Raw()
		if err != nil {
			return err
		}
		if string(body) != "ok" && string(body) != "ok\n" {
			return fmt.Errorf("readyz: got %q, want ok", body)
		}
		cfg = c
		return nil
	})
	return cfg
}

// clientset returns a clientset for cfg.
func clientset(t *testing.T, cfg *rest.Config) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("clientset for %s: %v", cfg.Host, err)
	}
	return cs
}

// hostPort returns the host:port of cfg's API URL.
func hostPort(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	u, err := url.Parse(cfg.Host)
	if err != nil || u.Host == "" {
		t.Fatalf("API URL %q: %v", cfg.Host, err)
	}
	return u.Host
}
