package gc

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func ref(uid string, block bool) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs-" + uid, UID: types.UID(uid), BlockOwnerDeletion: &block}
}

func object(finalizers []string, refs ...metav1.OwnerReference) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "x", UID: "x-uid", Finalizers: finalizers, OwnerReferences: refs}}
}

func TestDecide(t *testing.T) {
	bg, fg, orphan := metav1.DeletePropagationBackground, metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan
	tests := []struct {
		name             string
		obj              *metav1.PartialObjectMetadata
		states           []ownerState
		hasDependents    bool
		dependentWaiting bool
		want             verdict
	}{
		{name: "no owners", obj: object(nil), want: verdict{}},
		{name: "owner there", obj: object(nil, ref("a", true)), states: []ownerState{solid}, want: verdict{}},
		{name: "owner gone", obj: object(nil, ref("a", true)), states: []ownerState{dangling}, want: verdict{delete: true, policy: bg}},
		{name: "owner gone, object has dependents: still background", obj: object(nil, ref("a", true)), states: []ownerState{dangling}, hasDependents: true, want: verdict{delete: true, policy: bg}},
		{name: "every owner gone", obj: object(nil, ref("a", true), ref("b", false)), states: []ownerState{dangling, dangling}, want: verdict{delete: true, policy: bg}},
		{name: "one owner of two gone: reference removed", obj: object(nil, ref("a", true), ref("b", false)), states: []ownerState{dangling, solid},
			want: verdict{removeRefs: []types.UID{"a"}}},
		{name: "owner waiting beside a solid one: reference removed", obj: object(nil, ref("a", true), ref("b", false)), states: []ownerState{solid, waiting},
			want: verdict{removeRefs: []types.UID{"b"}}},
		{name: "owner waiting, no dependents", obj: object(nil, ref("a", true)), states: []ownerState{waiting}, want: verdict{delete: true, policy: bg}},
		{name: "owner waiting, with dependents: foreground", obj: object(nil, ref("a", true)), states: []ownerState{waiting}, hasDependents: true,
			want: verdict{delete: true, policy: fg}},
		{name: "owner waiting, a dependent waits too: unblock first", obj: object(nil, ref("a", true)), states: []ownerState{waiting}, hasDependents: true, dependentWaiting: true,
			want: verdict{delete: true, policy: fg, unblock: true}},
		{name: "owner waiting, a dependent waits, nothing to unblock", obj: object(nil, ref("a", false)), states: []ownerState{waiting}, hasDependents: true, dependentWaiting: true,
			want: verdict{delete: true, policy: fg}},
		{name: "owner gone and one waiting, no dependents", obj: object(nil, ref("a", true), ref("b", true)), states: []ownerState{dangling, waiting}, want: verdict{delete: true, policy: bg}},
		{name: "its own orphan finalizer is honoured", obj: object([]string{metav1.FinalizerOrphanDependents}, ref("a", true)), states: []ownerState{dangling},
			want: verdict{delete: true, policy: orphan}},
		{name: "its own foreground finalizer is honoured", obj: object([]string{"example.com/x", metav1.FinalizerDeleteDependents}, ref("a", true)), states: []ownerState{dangling},
			want: verdict{delete: true, policy: fg}},
	}
	for _, tt := range tests {
		got := decide(tt.obj, tt.states, tt.hasDependents, tt.dependentWaiting)
		if got.delete != tt.want.delete || got.policy != tt.want.policy || got.unblock != tt.want.unblock || !slices.Equal(got.removeRefs, tt.want.removeRefs) {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestBlocks(t *testing.T) {
	m := object(nil, ref("a", true), ref("b", false), metav1.OwnerReference{UID: "c"})
	for uid, want := range map[types.UID]bool{"a": true, "b": false, "c": false, "d": false} {
		if got := blocks(m, uid); got != want {
			t.Errorf("blocks(owner %s): got %v, want %v", uid, got, want)
		}
	}
}

func TestFinalizingOf(t *testing.T) {
	now := metav1.NewTime(time.Now())
	deleting := func(f ...string) *metav1.PartialObjectMetadata {
		o := object(f)
		o.DeletionTimestamp = &now
		return o
	}
	tests := []struct {
		name string
		obj  *metav1.PartialObjectMetadata
		want finalizing
	}{
		{"not being deleted, with the orphan finalizer", object([]string{metav1.FinalizerOrphanDependents}), notFinalizing},
		{"being deleted, other finalizer", deleting("example.com/x"), notFinalizing},
		{"orphan", deleting("example.com/x", metav1.FinalizerOrphanDependents), orphaning},
		{"foreground", deleting(metav1.FinalizerDeleteDependents), deletingDependents},
		{"both: orphan first", deleting(metav1.FinalizerDeleteDependents, metav1.FinalizerOrphanDependents), orphaning},
	}
	for _, tt := range tests {
		if got := finalizingOf(tt.obj); got != tt.want {
			t.Errorf("%s: got %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestWithoutFinalizer(t *testing.T) {
	for _, tt := range []struct {
		in, want []string
		found    bool
	}{
		{[]string{"a", "orphan", "b"}, []string{"a", "b"}, true},
		{[]string{"orphan"}, []string{}, true},
		{[]string{"a"}, []string{"a"}, false},
		{nil, nil, false},
	} {
		got, found := withoutFinalizer(tt.in, "orphan")
		if !slices.Equal(got, tt.want) || found != tt.found {
			t.Errorf("withoutFinalizer(%q): got %q, %v, want %q, %v", tt.in, got, found, tt.want, tt.found)
		}
	}
}

func TestSameOwners(t *testing.T) {
	a, b := ref("a", true), ref("b", false)
	unblocked := ref("a", false)
	for _, tt := range []struct {
		x, y []metav1.OwnerReference
		want bool
	}{
		{nil, nil, true},
		{[]metav1.OwnerReference{a, b}, []metav1.OwnerReference{a, b}, true},
		{[]metav1.OwnerReference{a, b}, []metav1.OwnerReference{a}, false},
		{[]metav1.OwnerReference{a}, []metav1.OwnerReference{unblocked}, false},
	} {
		if got := sameOwners(tt.x, tt.y); got != tt.want {
			t.Errorf("sameOwners(%v, %v): got %v, want %v", tt.x, tt.y, got, tt.want)
		}
	}
}
