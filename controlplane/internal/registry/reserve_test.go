package registry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/raftstore"
)

const slotPrefix = "/test/slots/"

// slotted is a resource whose objects each hold a slot (data["slot"], one
// of 1,000,000), chosen at random when unset, as services hold cluster IPs.
var slotted = &Resource{
	GroupResource: corev1.Resource("configmaps"),
	Kind:          corev1.SchemeGroupVersion.WithKind("ConfigMap"),
	Namespaced:    true,
	New:           func() runtime.Object { return &corev1.ConfigMap{} },
	NewList:       func() runtime.Object { return &corev1.ConfigMapList{} },
	Reservations: &Reservations{
		Prefixes: []string{slotPrefix},
		Keys: func(obj runtime.Object) []string {
			return []string{slotPrefix + obj.(*corev1.ConfigMap).Data["slot"]}
		},
		Assign: func(obj, _ runtime.Object, held func(string) bool) error {
			cm := obj.(*corev1.ConfigMap)
			if s := cm.Data["slot"]; s != "" {
				if held(slotPrefix + s) {
					return apierrors.NewInvalid(cm.GroupVersionKind().GroupKind(), cm.Name,
						field.ErrorList{field.Invalid(field.NewPath("data", "slot"), s, "already held")})
				}
				return nil
			}
			for range 64 {
				if s := fmt.Sprint(rand.IntN(1_000_000)); !held(slotPrefix + s) {
					cm.Data = map[string]string{"slot": s}
					return nil
				}
			}
			return fmt.Errorf("no free slot")
		},
	},
}

// countingKV counts the reads of the slots, and fails them on request.
type countingKV struct {
	KV
	lists, gets, linearizable atomic.Int64
	fail                      atomic.Bool
}

func (c *countingKV) List(ctx context.Context, prefix string, o raftstore.ListOptions) (raftstore.ListResult, error) {
	if strings.HasPrefix(prefix, slotPrefix) {
		c.lists.Add(1)
	}
	return c.KV.List(ctx, prefix, o)
}

func (c *countingKV) Get(ctx context.Context, key string, o raftstore.ReadOptions) (*raftstore.KeyValue, int64, error) {
	if strings.HasPrefix(key, slotPrefix) {
		c.gets.Add(1)
		if !o.Stale {
			c.linearizable.Add(1)
		}
		if c.fail.Load() {
			return nil, 0, errors.New("the store is down")
		}
	}
	return c.KV.Get(ctx, key, o)
}

// A create reads the few keys its Assign asks about, not every key held:
// the cost of a create does not grow with the objects that hold keys.
func TestReservationsReadOnlyTheKeysAsked(t *testing.T) {
	kv := &countingKV{KV: startRaft(t)}
	st, err := New(Config{KV: kv, Scheme: testScheme(t), Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	seen := map[string]bool{}
	for i := range n {
		out := mustCreate(t, st, slotted, "ns", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i)}})
		s := out.(*corev1.ConfigMap).Data["slot"]
		if s == "" || seen[s] {
			t.Fatalf("create %d got slot %q (seen: %v)", i, s, seen[s])
		}
		seen[s] = true
	}
	if got := kv.lists.Load(); got != 0 {
		t.Errorf("%d lists of the slots for %d creates, want 0", got, n)
	}
	// One read per create, a second one now and then when a random slot
	// is taken (1 in 5,000 here); the first of each write linearizable.
	if got := kv.gets.Load(); got < n || got > n+5 {
		t.Errorf("%d reads of slots for %d creates, want %d to %d", got, n, n, n+5)
	}
	if got := kv.linearizable.Load(); got != n {
		t.Errorf("%d linearizable reads of slots for %d creates, want one each", got, n)
	}

	// What is held is refused; what a delete frees is free at once (the
	// first read of each write is linearizable).
	var held string
	for s := range seen {
		held = s
		break
	}
	_, err = st.Create(t.Context(), slotted, "ns", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "dup"}, Data: map[string]string{"slot": held}}, CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("create holding slot %s, held by another: %v, want 422 Invalid", held, err)
	}
	for i := range n {
		out, err := st.Get(t.Context(), slotted, "ns", fmt.Sprintf("cm-%d", i), GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if out.(*corev1.ConfigMap).Data["slot"] != held {
			continue
		}
		if _, err := st.Delete(t.Context(), slotted, "ns", fmt.Sprintf("cm-%d", i), DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	again := mustCreate(t, st, slotted, "ns", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "again"}, Data: map[string]string{"slot": held}}).(*corev1.ConfigMap)

	// An update keeps its own slot, and cannot take another's.
	again.Labels = map[string]string{"updated": "yes"}
	if _, err := st.Update(t.Context(), slotted, "ns", "again", again, UpdateOptions{}); err != nil {
		t.Fatalf("an update keeping its slot: %v", err)
	}
	other, err := st.Get(t.Context(), slotted, "ns", "cm-0", GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.GuaranteedUpdate(t.Context(), slotted, "ns", "again", func(cur runtime.Object) (runtime.Object, error) {
		cm := cur.(*corev1.ConfigMap).DeepCopy()
		cm.Data["slot"] = other.(*corev1.ConfigMap).Data["slot"]
		return cm, nil
	}, UpdateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("an update taking another's slot: %v, want 422 Invalid", err)
	}

	// A read that fails fails the write, with the store's error, not a
	// verdict on the slot.
	kv.fail.Store(true)
	_, err = st.Create(t.Context(), slotted, "ns", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unread"}}, CreateOptions{})
	if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), "the store is down") {
		t.Fatalf("a create whose read failed: %v, want 500 with the read's error", err)
	}
}
