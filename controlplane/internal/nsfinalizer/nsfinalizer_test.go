package nsfinalizer

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

// startAPI runs the API in-process and returns a client and a namespace
// controller for it.
func startAPI(t *testing.T) (kubernetes.Interface, *Controller) {
	t.Helper()
	rc := apitest.Start(t)
	cs := kubernetes.NewForConfigOrDie(rc)
	cfg := DefaultConfig()
	cfg.Client, cfg.Metadata, cfg.Discovery, cfg.Logger = cs, metadata.NewForConfigOrDie(rc), discovery.NewDiscoveryClientForConfigOrDie(rc), slog.New(slog.DiscardHandler)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, c
}

var waitFor = apitest.WaitFor

// run runs c until the test ends and checks Run returned nil.
func run(t *testing.T, c *Controller) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return within 20s of its context ending")
		}
	})
}

func TestNamespaceDeletion(t *testing.T) {
	cs, c := startAPI(t)
	ctx := t.Context()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	om := func(name string, finalizers ...string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: "team", Finalizers: finalizers, Labels: map[string]string{"app": "web"}}
	}
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cs.CoreV1().ConfigMaps("team").Create(ctx, &corev1.ConfigMap{ObjectMeta: om("plain")}, metav1.CreateOptions{}))
	must(cs.CoreV1().ConfigMaps("team").Create(ctx, &corev1.ConfigMap{ObjectMeta: om("held", "example.com/hold")}, metav1.CreateOptions{}))
	must(cs.CoreV1().Secrets("team").Create(ctx, &corev1.Secret{ObjectMeta: om("s")}, metav1.CreateOptions{}))
	must(cs.CoreV1().Pods("team").Create(ctx, &corev1.Pod{ObjectMeta: om("p"), Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{}))
	must(cs.AppsV1().Deployments("team").Create(ctx, &appsv1.Deployment{ObjectMeta: om("web"), Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}}},
	}}, metav1.CreateOptions{}))
	must(cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"}}, metav1.CreateOptions{}))

	// Without the controller a deleted namespace stays Terminating, and
	// nothing new may be created in it.
	if err := cs.CoreV1().Namespaces().Delete(ctx, "team", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	ns, err := cs.CoreV1().Namespaces().Get(ctx, "team", metav1.GetOptions{})
	if err != nil || ns.Status.Phase != corev1.NamespaceTerminating || ns.DeletionTimestamp == nil {
		t.Fatalf("deleted namespace: got %v, %v, want it Terminating", ns, err)
	}
	_, err = cs.CoreV1().ConfigMaps("team").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "late"}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "unable to create new content in namespace team because it is being terminated") {
		t.Fatalf("create in a Terminating namespace: got %v, want 403", err)
	}
	if st := err.(apierrors.APIStatus).Status(); st.Details == nil || len(st.Details.Causes) != 1 || st.Details.Causes[0].Type != corev1.NamespaceTerminatingCause {
		t.Errorf("403 details: got %+v, want the NamespaceTerminating cause", st.Details)
	}

	// The controller deletes the content; the held configmap remains, and
	// the namespace says so.
	run(t, c)
	waitFor(t, 20*time.Second, "only the held configmap to remain", func() error {
		ns, err := cs.CoreV1().Namespaces().Get(ctx, "team", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range ns.Status.Conditions {
			if cond.Type == corev1.NamespaceContentRemaining && cond.Message == "Some resources are remaining: configmaps has 1 resource instances" {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", ns.Status.Conditions)
	})
	for _, check := range []func() (int, error){
		func() (int, error) {
			l, err := cs.CoreV1().Pods("team").List(ctx, metav1.ListOptions{})
			return len(l.Items), err
		},
		func() (int, error) {
			l, err := cs.CoreV1().Secrets("team").List(ctx, metav1.ListOptions{})
			return len(l.Items), err
		},
		func() (int, error) {
			l, err := cs.AppsV1().Deployments("team").List(ctx, metav1.ListOptions{})
			return len(l.Items), err
		},
	} {
		if n, err := check(); err != nil || n != 0 {
			t.Errorf("content left: %d, %v", n, err)
		}
	}

	// Once the finalizer goes, so does the namespace, and nothing of it
	// comes back with a namespace of the same name.
	patch := []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`)
	must(cs.CoreV1().ConfigMaps("team").Patch(ctx, "held", types.JSONPatchType, patch, metav1.PatchOptions{}))
	waitFor(t, 20*time.Second, "the namespace to go", func() error {
		_, err := cs.CoreV1().Namespaces().Get(ctx, "team", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("namespace still there: %v", err)
	})
	must(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}, metav1.CreateOptions{}))
	if l, err := cs.CoreV1().ConfigMaps("team").List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Errorf("configmaps in the new namespace: got %d, %v, want none", len(l.Items), err)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "elsewhere", metav1.GetOptions{}); err != nil {
		t.Errorf("another namespace's configmap: %v", err)
	}
}
