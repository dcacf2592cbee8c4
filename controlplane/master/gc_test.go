package master

import (
	"fmt"
	"slices"
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
// leads: a deployment deleted in the background takes its replicaset and
// pods with it, one deleted in the foreground goes after them.
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
	build := func(name string) {
		t.Helper()
		labels := map[string]string{"app": name}
		spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}
		tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}
		sel := &metav1.LabelSelector{MatchLabels: labels}
		d, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: appsv1.DeploymentSpec{Selector: sel, Template: tmpl}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		yes := true
		rs, err := cs.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-1", OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: name, UID: d.UID, Controller: &yes, BlockOwnerDeletion: &yes}}},
			Spec:       appsv1.ReplicaSetSpec{Selector: sel, Template: tmpl},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			if _, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-1-%d", name, i), Labels: labels,
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes, BlockOwnerDeletion: &yes}}},
				Spec: spec,
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	left := func() ([]string, error) {
		var out []string
		rss, err := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, o := range rss.Items {
			out = append(out, "replicaset/"+o.Name)
		}
		ps, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, o := range ps.Items {
			out = append(out, "pod/"+o.Name)
		}
		slices.Sort(out)
		return out, nil
	}
	waitGone := func(what string, want ...string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got, err := left()
			if err == nil && slices.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: got %v (%v) left, want %v", what, got, err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	build("bg")
	build("fg")
	bg, fg := metav1.DeletePropagationBackground, metav1.DeletePropagationForeground
	if err := cs.AppsV1().Deployments(ns).Delete(ctx, "bg", metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
		t.Fatal(err)
	}
	waitGone("after the background delete", "pod/fg-1-0", "pod/fg-1-1", "replicaset/fg-1")
	if err := cs.AppsV1().Deployments(ns).Delete(ctx, "fg", metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil {
		t.Fatal(err)
	}
	waitGone("after the foreground delete")
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
