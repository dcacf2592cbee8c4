// Package apitest runs the Kubernetes API server in-process for the tests
// of the packages built on it (the controllers): a real single-node
// raftstore in a temporary directory, the registry and the API server over
// it, served by an httptest server until the test ends. It issues service
// account tokens but mounts none into pods (no controllers run).
//
//	cfg := apitest.Start(t) // the "default" namespace exists
//	cs := kubernetes.NewForConfigOrDie(cfg)
//	apitest.WaitFor(t, 20*time.Second, "the pod to go", func() error { ... })
package apitest

import (
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/controlplane/internal/apiserver"
	"github.com/skiff-sh/skiff/controlplane/internal/registry"
	"github.com/skiff-sh/skiff/controlplane/internal/satoken"
	"github.com/skiff-sh/skiff/raftstore/storetest"
)

// Start serves the API over a fresh single-node store until the test ends,
// and returns a client configuration for it (no client-side rate limit to
// speak of). It returns once the store has elected itself and the
// "default" namespace exists.
func Start(t testing.TB) *rest.Config {
	t.Helper()
	store := storetest.Start(t, "")
	scheme := apiserver.NewScheme()
	reg, err := registry.New(registry.Config{KV: store, Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	acfg := apiserver.DefaultConfig()
	acfg.Store, acfg.Scheme, acfg.Logger = reg, scheme, slog.New(slog.DiscardHandler)
	// Service account tokens are issued (serviceaccounts/token works), but
	// new pods get no token volume: no controller publishes the
	// kube-root-ca.crt it needs (--disable-admission-plugins=ServiceAccount).
	key, err := satoken.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if acfg.ServiceAccountTokens, err = satoken.NewSigner(key); err != nil {
		t.Fatal(err)
	}
	api, err := apiserver.New(acfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(api.Handler())
	t.Cleanup(ts.Close)
	cfg := &rest.Config{Host: ts.URL, QPS: 200, Burst: 400}
	cs := kubernetes.NewForConfigOrDie(cfg)
	WaitFor(t, 20*time.Second, "the store to elect itself", func() error {
		_, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: metav1.NamespaceDefault}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
	return cfg
}

// WaitFor polls cond until it returns nil, and fails the test with cond's
// last error when timeout passes first.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(10 * time.Millisecond) // between polls, not before an assertion
	}
}
