package controllerref

import (
	"cmp"
	"log/slog"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

func TestClaim(t *testing.T) {
	kind := appsv1.SchemeGroupVersion.WithKind("DaemonSet")
	set := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns", UID: "set-uid"},
		Spec:       appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}}},
	}
	other := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "o", Namespace: "ns", UID: "other-uid"}}
	now := metav1.Now()
	tests := []struct {
		name       string
		ns         string
		labels     map[string]string
		owner      *appsv1.DaemonSet
		deleting   bool
		claimed    bool
		controller types.UID // the pod's controller after Claim ("" none)
	}{
		{name: "owned-match", labels: map[string]string{"app": "a"}, owner: set, claimed: true, controller: "set-uid"},
		{name: "owned-mismatch", labels: map[string]string{"app": "b"}, owner: set, controller: ""},
		{name: "owned-mismatch-deleting", labels: map[string]string{"app": "b"}, owner: set, deleting: true, claimed: true, controller: "set-uid"},
		{name: "owned-not-member", labels: map[string]string{"app": "a"}, owner: set, controller: ""},
		{name: "orphan-match", labels: map[string]string{"app": "a"}, claimed: true, controller: "set-uid"},
		{name: "orphan-mismatch", labels: map[string]string{"app": "b"}, controller: ""},
		{name: "orphan-not-member", labels: map[string]string{"app": "a"}, controller: ""},
		{name: "orphan-deleting", labels: map[string]string{"app": "a"}, deleting: true, controller: ""},
		{name: "orphan-elsewhere", ns: "other", labels: map[string]string{"app": "a"}, controller: ""},
		{name: "others", labels: map[string]string{"app": "a"}, owner: other, controller: "other-uid"},
	}
	cs := fake.NewClientset()
	for _, tt := range tests {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: tt.name, Namespace: cmp.Or(tt.ns, "ns"), Labels: tt.labels}}
		if tt.owner != nil {
			p.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(tt.owner, kind)}
		}
		if tt.deleting {
			p.DeletionTimestamp = &now
			p.Finalizers = []string{"test"}
		}
		if _, err := cs.CoreV1().Pods(p.Namespace).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	m := New("test.controller", kind, cs, slog.New(slog.DiscardHandler))
	factory := informers.NewSharedInformerFactory(cs, 0)
	pods := factory.Core().V1().Pods().Informer()
	if err := m.Index(pods); err != nil {
		t.Fatal(err)
	}
	factory.Start(t.Context().Done())
	t.Cleanup(factory.Shutdown)
	if !cache.WaitForCacheSync(t.Context().Done(), pods.HasSynced) {
		t.Fatal("pod cache did not sync")
	}

	member := func(p *corev1.Pod) bool { return p.Name != "owned-not-member" && p.Name != "orphan-not-member" }
	claimed, err := m.Claim(t.Context(), set, set.Spec.Selector, member)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	var got []string
	for _, p := range claimed {
		got = append(got, p.Name)
	}
	for _, tt := range tests {
		if slices.Contains(got, tt.name) != tt.claimed {
			t.Errorf("%s: claimed %v, want %v", tt.name, !tt.claimed, tt.claimed)
		}
		p, err := cs.CoreV1().Pods(cmp.Or(tt.ns, "ns")).Get(t.Context(), tt.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var uid types.UID
		if ref := metav1.GetControllerOf(p); ref != nil {
			uid = ref.UID
		}
		if uid != tt.controller {
			t.Errorf("%s: controller %q, want %q", tt.name, uid, tt.controller)
		}
	}
}

func TestClaimBadSelector(t *testing.T) {
	m := New("test.controller", appsv1.SchemeGroupVersion.WithKind("StatefulSet"), fake.NewClientset(), slog.New(slog.DiscardHandler))
	set := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns"}}
	bad := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Bogus"}}}
	_, err := m.Claim(t.Context(), set, bad, func(*corev1.Pod) bool { return true })
	if err == nil {
		t.Fatal("Claim with a bad selector: got nil error, want one")
	}
	if want := "statefulset: selector of ns/s: "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got error %q, want prefix %q", err, want)
	}
}

func TestOf(t *testing.T) {
	kind := appsv1.SchemeGroupVersion.WithKind("DaemonSet")
	yes, no := true, false
	ref := func(apiVersion, k string, controller *bool) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: k, Name: "owner", UID: "u", Controller: controller}}
	}
	for name, tc := range map[string]struct {
		refs []metav1.OwnerReference
		want bool
	}{
		"the kind's controller":      {ref("apps/v1", "DaemonSet", &yes), true},
		"no owner":                   {nil, false},
		"an owner, not a controller": {ref("apps/v1", "DaemonSet", &no), false},
		"another kind":               {ref("apps/v1", "StatefulSet", &yes), false},
		"another API version":        {ref("extensions/v1beta1", "DaemonSet", &yes), false},
	} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: tc.refs}}
		got := Of(pod, kind)
		if (got != nil) != tc.want || got != nil && got.Name != "owner" {
			t.Errorf("%s: Of = %v, want found %v", name, got, tc.want)
		}
	}
}
