package registry

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

const (
	orphanF     = metav1.FinalizerOrphanDependents
	foregroundF = metav1.FinalizerDeleteDependents
)

// TestDeletePropagation: the propagation policy of a delete sets the
// garbage collector's finalizers as kube-apiserver does; an object already
// being deleted may lose them but never gains one.
func TestDeletePropagation(t *testing.T) {
	policy := func(p metav1.DeletionPropagation) DeleteOptions { return DeleteOptions{PropagationPolicy: &p} }
	orphanDeps := func(b bool) DeleteOptions { return DeleteOptions{OrphanDependents: &b} }
	tests := []struct {
		name       string
		finalizers []string       // at creation
		first      *DeleteOptions // a delete before the one tested
		opts       DeleteOptions
		want       []string // finalizers after the delete; nil: the object is gone
	}{
		{name: "unset, no finalizers", opts: DeleteOptions{}},
		{name: "background", opts: policy(metav1.DeletePropagationBackground)},
		{name: "foreground", opts: policy(metav1.DeletePropagationForeground), want: []string{foregroundF}},
		{name: "orphan", opts: policy(metav1.DeletePropagationOrphan), want: []string{orphanF}},
		{name: "orphanDependents true", opts: orphanDeps(true), want: []string{orphanF}},
		{name: "orphanDependents false", opts: orphanDeps(false)},
		{name: "foreground beside another finalizer", finalizers: []string{"example.com/a"}, opts: policy(metav1.DeletePropagationForeground), want: []string{"example.com/a", foregroundF}},
		{name: "unset keeps an orphan finalizer set at creation", finalizers: []string{orphanF}, opts: DeleteOptions{}, want: []string{orphanF}},
		{name: "background drops an orphan finalizer set at creation", finalizers: []string{orphanF}, opts: policy(metav1.DeletePropagationBackground)},
		{name: "foreground replaces an orphan finalizer set at creation", finalizers: []string{"example.com/a", orphanF}, opts: policy(metav1.DeletePropagationForeground), want: []string{"example.com/a", foregroundF}},
		{name: "deleting: orphan does not replace foreground", first: ptr(policy(metav1.DeletePropagationForeground)), opts: policy(metav1.DeletePropagationOrphan), want: []string{foregroundF}},
		{name: "deleting: foreground is not added", finalizers: []string{"example.com/a"}, first: &DeleteOptions{}, opts: policy(metav1.DeletePropagationForeground), want: []string{"example.com/a"}},
		{name: "deleting: unset changes nothing", first: ptr(policy(metav1.DeletePropagationOrphan)), opts: DeleteOptions{}, want: []string{orphanF}},
		{name: "deleting: background ends a foreground wait", first: ptr(policy(metav1.DeletePropagationForeground)), opts: policy(metav1.DeletePropagationBackground)},
		{name: "deleting: background ends an orphan wait, another finalizer stays", finalizers: []string{"example.com/a"}, first: ptr(policy(metav1.DeletePropagationOrphan)), opts: policy(metav1.DeletePropagationBackground), want: []string{"example.com/a"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := newTestStore(t)
			ctx := t.Context()
			name := fmt.Sprintf("cm%d", i)
			cm := configMap("default", name, nil, nil)
			cm.Finalizers = tt.finalizers
			mustCreate(t, st, configMaps, "default", cm)
			if tt.first != nil {
				if _, err := st.Delete(ctx, configMaps, "default", name, *tt.first); err != nil {
					t.Fatalf("first delete: %v", err)
				}
			}
			out, err := st.Delete(ctx, configMaps, "default", name, tt.opts)
			if err != nil {
				t.Fatalf("Delete: %v", err)
			}
			got, err := st.Get(ctx, configMaps, "default", name, GetOptions{})
			if tt.want == nil {
				if !apierrors.IsNotFound(err) {
					t.Fatalf("Get after delete: got %v, %v, want NotFound", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get after delete: got %v, want the object held", err)
			}
			m := objMeta(t, got)
			if !slices.Equal(m.GetFinalizers(), tt.want) {
				t.Errorf("finalizers: got %q, want %q", m.GetFinalizers(), tt.want)
			}
			if g := m.GetDeletionGracePeriodSeconds(); m.GetDeletionTimestamp() == nil || g == nil || *g != 0 {
				t.Errorf("got deletionTimestamp %v, grace %v, want set, 0", m.GetDeletionTimestamp(), g)
			}
			if rvOf(t, out) != m.GetResourceVersion() || !slices.Equal(objMeta(t, out).GetFinalizers(), tt.want) {
				t.Errorf("Delete returned rv %s finalizers %q, want the stored rv %s, finalizers %q", rvOf(t, out), objMeta(t, out).GetFinalizers(), m.GetResourceVersion(), tt.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestDeletePropagationRules: dry runs write nothing; the finalizers of a
// foreground delete still only go away through updates; a pod waiting for
// its node keeps the finalizers it has until its grace period ends.
func TestDeletePropagationRules(t *testing.T) {
	st, rs := newTestStore(t)
	ctx := t.Context()
	fg := metav1.DeletePropagationForeground
	bg := metav1.DeletePropagationBackground

	mustCreate(t, st, configMaps, "default", configMap("default", "dry", nil, nil))
	before := rs.Revision()
	out, err := st.Delete(ctx, configMaps, "default", "dry", DeleteOptions{DryRun: true, PropagationPolicy: &fg})
	if err != nil || !slices.Equal(objMeta(t, out).GetFinalizers(), []string{foregroundF}) {
		t.Errorf("dry-run foreground delete: got %v, %v, want the object with %s", out, err, foregroundF)
	}
	if after := rs.Revision(); after != before {
		t.Errorf("store revision after a dry-run delete: got %d, want %d", after, before)
	}

	// An update may remove the finalizer (the garbage collector does), not add one.
	mustCreate(t, st, configMaps, "default", configMap("default", "fg", nil, nil))
	held, err := st.Delete(ctx, configMaps, "default", "fg", DeleteOptions{PropagationPolicy: &fg})
	if err != nil {
		t.Fatal(err)
	}
	swap := held.(*corev1.ConfigMap).DeepCopy()
	swap.Finalizers = []string{orphanF}
	if _, err := st.Update(ctx, configMaps, "default", "fg", swap, UpdateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "no new finalizers can be added if the object is being deleted") {
		t.Errorf("update swapping foregroundDeletion for orphan: got %v, want 422 no new finalizers", err)
	}
	done := held.(*corev1.ConfigMap).DeepCopy()
	done.Finalizers = nil
	if _, err := st.Update(ctx, configMaps, "default", "fg", done, UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, configMaps, "default", "fg", GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after the update removed foregroundDeletion: got %v, want NotFound", err)
	}

	// A pod on a node: foreground holds it beyond its grace period; while
	// the grace period runs a background delete does not drop the finalizer.
	graceful := *pods
	graceful.GracePeriod = func(obj runtime.Object, requested *int64) int64 {
		if requested != nil {
			return *requested
		}
		return 30
	}
	zero := int64(0)
	mustCreate(t, st, &graceful, "default", pod("default", "p", "node-1", nil))
	if _, err := st.Delete(ctx, &graceful, "default", "p", DeleteOptions{PropagationPolicy: &fg}); err != nil {
		t.Fatal(err)
	}
	got, err := st.Delete(ctx, &graceful, "default", "p", DeleteOptions{PropagationPolicy: &bg})
	if err != nil || !slices.Equal(objMeta(t, got).GetFinalizers(), []string{foregroundF}) || *objMeta(t, got).GetDeletionGracePeriodSeconds() != 30 {
		t.Fatalf("background delete during the grace period: got %v, %v, want foregroundDeletion kept, grace 30", got, err)
	}
	got, err = st.Delete(ctx, &graceful, "default", "p", DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil || !slices.Equal(objMeta(t, got).GetFinalizers(), []string{foregroundF}) {
		t.Fatalf("grace-0 delete: got %v, %v, want the pod held by foregroundDeletion", got, err)
	}
	if _, err := st.Get(ctx, &graceful, "default", "p", GetOptions{}); err != nil {
		t.Fatalf("after the grace-0 delete: got %v, want the pod held", err)
	}
	if _, err := st.Delete(ctx, &graceful, "default", "p", DeleteOptions{GracePeriodSeconds: &zero, PropagationPolicy: &bg}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, &graceful, "default", "p", GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("background delete after the grace period: got %v, want NotFound", err)
	}
}
