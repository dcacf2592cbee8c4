package rootca

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

const testCA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func TestPublishes(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ctx := t.Context()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "early"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Client, cfg.CACert, cfg.Logger = cs, []byte(testCA), slog.New(slog.DiscardHandler)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	published := func(ns string) func() error {
		return func() error {
			cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(cm.Data) != 1 || cm.Data[DataKey] != testCA || cm.Annotations[descriptionKey] != description {
				return fmt.Errorf("got data %q, annotations %v", cm.Data, cm.Annotations)
			}
			return nil
		}
	}
	apitest.WaitFor(t, 20*time.Second, "the CA in a namespace that existed before", published("early"))
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "late"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	apitest.WaitFor(t, 20*time.Second, "the CA in a new namespace", published("late"))

	if err := cs.CoreV1().ConfigMaps("late").Delete(ctx, Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	apitest.WaitFor(t, 20*time.Second, "a deleted copy to come back", published("late"))

	// A copy changed by hand is mended; its labels stay.
	cm, err := cs.CoreV1().ConfigMaps("early").Get(ctx, Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[DataKey], cm.Data["extra"], cm.Labels = "tampered", "x", map[string]string{"team": "a"}
	if _, err := cs.CoreV1().ConfigMaps("early").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	apitest.WaitFor(t, 20*time.Second, "a changed copy mended", published("early"))
	if cm, err := cs.CoreV1().ConfigMaps("early").Get(ctx, Name, metav1.GetOptions{}); err != nil || cm.Labels["team"] != "a" {
		t.Errorf("mended copy: labels %v, %v; want team=a kept", cm.Labels, err)
	}
}

func TestConfigRequiresCA(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Client = kubernetes.NewForConfigOrDie(&rest.Config{Host: "https://127.0.0.1:1"}) // never reached
	if _, err := New(cfg); err == nil {
		t.Error("New without CACert succeeded")
	}
}
