package master

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestGarbageCollector: the master runs the garbage collector while it
// leads: a deployment deleted in the background takes the replicaset its
// controller made and that one's pods with it; one deleted in the
// foreground goes after them.
func TestGarbageCollector(t *testing.T) {
	dataDir, _ := startMaster(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", KubeconfigPath(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const ns = "default"
	// left counts the replicasets and pods of app name.
	left := func(name string) (rss, pods int, err error) {
		sel := metav1.ListOptions{LabelSelector: "app=" + name}
		rl, err := cs.AppsV1().ReplicaSets(ns).List(ctx, sel)
		if err != nil {
			return 0, 0, err
		}
		pl, err := cs.CoreV1().Pods(ns).List(ctx, sel)
		if err != nil {
			return 0, 0, err
		}
		return len(rl.Items), len(pl.Items), nil
	}
	waitLeft := func(what, name string, wantRSs, wantPods int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			rss, pods, err := left(name)
			if err == nil && rss == wantRSs && pods == wantPods {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s has %d replicasets and %d pods (%v), want %d and %d", what, name, rss, pods, err, wantRSs, wantPods)
			}
			time.Sleep(20 * time.Millisecond) // between polls
		}
	}
	two := int32(2)
	for _, name := range []string{"bg", "fg"} {
		labels := map[string]string{"app": name}
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DeploymentSpec{Replicas: &two, Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitLeft("the controllers' work", name, 1, 2)
	}

	bg, fg := metav1.DeletePropagationBackground, metav1.DeletePropagationForeground
	if err := cs.AppsV1().Deployments(ns).Delete(ctx, "bg", metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
		t.Fatal(err)
	}
	waitLeft("after the background delete", "bg", 0, 0)
	waitLeft("after the background delete", "fg", 1, 2)
	if err := cs.AppsV1().Deployments(ns).Delete(ctx, "fg", metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil {
		t.Fatal(err)
	}
	waitLeft("after the foreground delete", "fg", 0, 0)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := cs.AppsV1().Deployments(ns).Get(ctx, "fg", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment fg after its dependents went: got %v, want NotFound", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
