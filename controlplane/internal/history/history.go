// Package history keeps the rollout history of the workload controllers
// that record their pod templates as ControllerRevisions (apps/v1), the
// StatefulSet and DaemonSet controllers, in the format kubectl reads:
//
//	owned := history.Owned(owner, cachedRevisions)
//	update, collisions, err := history.For(client, owner, ownerKind, template).Sync(ctx, owned, collisionCount)
//	err = history.Truncate(ctx, client, owned, live, limit) // revisionHistoryLimit
//
// A revision is named "<owner>-<hash>", labelled with the template's labels
// (so the owner's selector finds it, as `kubectl rollout history` lists
// them) and controller-revision-hash, controlled by its owner, and holds in
// data the strategic merge patch that restores its template:
// {"spec":{"template":{...,"$patch":"replace"}}}, byte for byte what
// kubectl computes from a set, so `kubectl rollout undo` applies it and
// recognises a template that already matches. Revision numbers grow: a
// template seen before gets its old revision back under a new number.
package history

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
)

// HashLabel labels revisions and the pods made from them with the
// revision's hash (apps/v1 ControllerRevisionHashLabelKey).
const HashLabel = appsv1.ControllerRevisionHashLabelKey

// maxCollisions bounds how many names Sync tries for one template.
const maxCollisions = 16

// ErrCollisions is returned by Sync when every name it tried for a template
// was taken by a revision with other data or another owner.
var ErrCollisions = errors.New("history: too many controller revision name collisions")

// History records one owner's templates. See the package comment.
type History struct {
	client   kubernetes.Interface
	owner    metav1.Object
	kind     schema.GroupVersionKind
	template corev1.PodTemplateSpec
}

// For returns the history of owner (of kind ownerKind), whose current pod
// template is template.
func For(client kubernetes.Interface, owner metav1.Object, ownerKind schema.GroupVersionKind, template corev1.PodTemplateSpec) *History {
	return &History{client: client, owner: owner, kind: ownerKind, template: template}
}

// Patch returns the data of a revision of template: the strategic merge
// patch that puts template back in place.
func Patch(template corev1.PodTemplateSpec) ([]byte, error) {
	raw, err := json.Marshal(template)
	if err != nil {
		return nil, err
	}
	var t map[string]any
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, err
	}
	t["$patch"] = "replace"
	return json.Marshal(map[string]any{"spec": map[string]any{"template": t}})
}

// Hash returns the hash naming a revision with data, given the owner's
// collision count: FNV-32a of both, in the alphabet of generated names.
func Hash(data []byte, collisionCount int32) string {
	h := fnv.New32a()
	h.Write(data)
	if collisionCount != 0 {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(collisionCount))
		h.Write(b[:])
	}
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// Name returns the name of owner's revision with hash.
func Name(owner, hash string) string {
	const max = 253 - 1 - 10 // room for "-" and a hash
	if len(owner) > max {
		owner = owner[:max]
	}
	return owner + "-" + hash
}

// Owned returns the revisions among all that owner controls, oldest
// revision number first.
func Owned(owner metav1.Object, all []*appsv1.ControllerRevision) []*appsv1.ControllerRevision {
	var out []*appsv1.ControllerRevision
	for _, r := range all {
		if ref := metav1.GetControllerOfNoCopy(r); ref != nil && ref.UID == owner.GetUID() {
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b *appsv1.ControllerRevision) int {
		return cmp.Or(cmp.Compare(a.Revision, b.Revision), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// Sync makes sure the current template has a revision with the highest
// revision number among owned (the owner's revisions, from Owned) and
// returns it, with the collision count to record in the owner's status
// (grown by each name found taken by other data).
func (h *History) Sync(ctx context.Context, owned []*appsv1.ControllerRevision, collisionCount int32) (*appsv1.ControllerRevision, int32, error) {
	data, err := Patch(h.template)
	if err != nil {
		return nil, collisionCount, err
	}
	var last int64
	for _, r := range owned {
		last = max(last, r.Revision)
	}
	// The newest revision with the same data, if any, is the template's.
	for i := len(owned) - 1; i >= 0; i-- {
		r := owned[i]
		if !bytes.Equal(r.Data.Raw, data) {
			continue
		}
		if r.Revision == last {
			return r, collisionCount, nil
		}
		return h.renumber(ctx, r, last+1, collisionCount)
	}
	ns := h.owner.GetNamespace()
	for range maxCollisions {
		hash := Hash(data, collisionCount)
		labels := maps.Clone(h.template.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		labels[HashLabel] = hash
		rev := &appsv1.ControllerRevision{
			ObjectMeta: metav1.ObjectMeta{
				Name: Name(h.owner.GetName(), hash), Namespace: ns, Labels: labels,
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(h.owner, h.kind)},
			},
			Data:     runtime.RawExtension{Raw: data},
			Revision: last + 1,
		}
		created, err := h.client.AppsV1().ControllerRevisions(ns).Create(ctx, rev, metav1.CreateOptions{})
		if err == nil {
			return created, collisionCount, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, collisionCount, fmt.Errorf("history: create revision %s/%s: %w", ns, rev.Name, err)
		}
		// Ours with the same data, not yet in the caller's cache: it is
		// the template's. Anything else at that name is a collision.
		found, err := h.client.AppsV1().ControllerRevisions(ns).Get(ctx, rev.Name, metav1.GetOptions{})
		if err != nil {
			return nil, collisionCount, fmt.Errorf("history: read revision %s/%s: %w", ns, rev.Name, err)
		}
		if ref := metav1.GetControllerOfNoCopy(found); ref != nil && ref.UID == h.owner.GetUID() && bytes.Equal(found.Data.Raw, data) {
			if found.Revision >= last {
				return found, collisionCount, nil
			}
			return h.renumber(ctx, found, last+1, collisionCount)
		}
		collisionCount++
	}
	return nil, collisionCount, ErrCollisions
}

// renumber gives r revision number n.
func (h *History) renumber(ctx context.Context, r *appsv1.ControllerRevision, n int64, collisionCount int32) (*appsv1.ControllerRevision, int32, error) {
	c := r.DeepCopy()
	c.Revision = n
	updated, err := h.client.AppsV1().ControllerRevisions(c.Namespace).Update(ctx, c, metav1.UpdateOptions{})
	if err != nil {
		return nil, collisionCount, fmt.Errorf("history: renumber revision %s/%s to %d: %w", c.Namespace, c.Name, n, err)
	}
	return updated, collisionCount, nil
}

// Truncate deletes the oldest of owned (from Owned) beyond limit, never
// one whose name is in live (revisions that pods still run or the status
// names).
func Truncate(ctx context.Context, client kubernetes.Interface, owned []*appsv1.ControllerRevision, live map[string]bool, limit int) error {
	var old []*appsv1.ControllerRevision
	for _, r := range owned {
		if !live[r.Name] {
			old = append(old, r)
		}
	}
	for i := 0; i < len(old)-max(limit, 0); i++ {
		r := old[i]
		uid := r.UID
		err := client.AppsV1().ControllerRevisions(r.Namespace).Delete(ctx, r.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("history: delete revision %s/%s: %w", r.Namespace, r.Name, err)
		}
	}
	return nil
}
