package deployment

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
)

// Annotations and labels the controller writes, as in Kubernetes.
const (
	RevisionAnnotation        = "deployment.kubernetes.io/revision"
	RevisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"
	DesiredReplicasAnnotation = "deployment.kubernetes.io/desired-replicas"
	MaxReplicasAnnotation     = "deployment.kubernetes.io/max-replicas"
	ChangeCauseAnnotation     = "kubernetes.io/change-cause"
	lastAppliedAnnotation     = "kubectl.kubernetes.io/last-applied-configuration"
	rollbackToAnnotation      = "deprecated.deployment.rollback.to"
	// HashLabel is the label that tells a Deployment's ReplicaSets (and
	// their pods) apart: the hash of the template they were made from.
	HashLabel = appsv1.DefaultDeploymentUniqueLabelKey

	// maxRevisionHistoryChars bounds the revision-history annotation.
	maxRevisionHistoryChars = 2000
)

// templateHash is a stable hash of template and the collision count, in
// the alphabet of names, so "<deployment>-<hash>" is a valid name. A
// collision count bump gives a new name for the same template.
func templateHash(template *corev1.PodTemplateSpec, collisions *int32) string {
	h := fnv.New32a()
	// JSON of a typed object is deterministic: fields in order, map keys
	// sorted.
	b, err := json.Marshal(template)
	if err != nil {
		panic(fmt.Sprintf("deployment: pod template does not encode: %v", err)) // typed struct: cannot happen
	}
	h.Write(b)
	if collisions != nil {
		var c [4]byte
		binary.LittleEndian.PutUint32(c[:], uint32(*collisions))
		h.Write(c[:])
	}
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// equalIgnoringHash reports whether two templates are the same but for
// the hash label.
func equalIgnoringHash(a, b *corev1.PodTemplateSpec) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	delete(a.Labels, HashLabel)
	delete(b.Labels, HashLabel)
	if len(a.Labels) == 0 {
		a.Labels = nil
	}
	if len(b.Labels) == 0 {
		b.Labels = nil
	}
	return apiequality.Semantic.DeepEqual(a, b)
}

func replicas(rs *appsv1.ReplicaSet) int32 {
	if rs == nil || rs.Spec.Replicas == nil {
		return 0
	}
	return *rs.Spec.Replicas
}

func desired(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

// revision is rs's revision annotation, 0 when missing or bad.
func revision(obj metav1.Object) int64 {
	n, err := strconv.ParseInt(obj.GetAnnotations()[RevisionAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

func maxRevision(sets []*appsv1.ReplicaSet) int64 {
	var most int64
	for _, rs := range sets {
		most = max(most, revision(rs))
	}
	return most
}

// byCreation sorts oldest first, ties by name.
func byCreation(sets []*appsv1.ReplicaSet) {
	sort.SliceStable(sets, func(i, j int) bool {
		a, b := sets[i], sets[j]
		if a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.Name < b.Name
		}
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	})
}

// bySize sorts larger first; among equals older first, or newer first
// when newerFirst.
func bySize(sets []*appsv1.ReplicaSet, newerFirst bool) {
	sort.SliceStable(sets, func(i, j int) bool {
		a, b := sets[i], sets[j]
		if replicas(a) != replicas(b) {
			return replicas(a) > replicas(b)
		}
		if a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.Name < b.Name
		}
		if newerFirst {
			return b.CreationTimestamp.Before(&a.CreationTimestamp)
		}
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	})
}

// findNew returns the oldest ReplicaSet whose template is the
// Deployment's, or nil.
func findNew(d *appsv1.Deployment, sets []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	sorted := append([]*appsv1.ReplicaSet(nil), sets...)
	byCreation(sorted)
	for _, rs := range sorted {
		if equalIgnoringHash(&rs.Spec.Template, &d.Spec.Template) {
			return rs
		}
	}
	return nil
}

func active(sets []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, rs := range sets {
		if rs != nil && replicas(rs) > 0 {
			out = append(out, rs)
		}
	}
	return out
}

func sumReplicas(sets []*appsv1.ReplicaSet) (spec, actual, ready, available int32) {
	for _, rs := range sets {
		if rs == nil {
			continue
		}
		spec += replicas(rs)
		actual += rs.Status.Replicas
		ready += rs.Status.ReadyReplicas
		available += rs.Status.AvailableReplicas
	}
	return
}

// scaledValue resolves an int-or-percent against total, rounding up or
// down.
func scaledValue(v *intstr.IntOrString, total int, roundUp bool) int {
	if v == nil {
		return 0
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(v, total, roundUp)
	if err != nil {
		return 0 // the API validates both forms
	}
	return n
}

// fenceposts returns a rolling update's maxSurge and maxUnavailable as
// numbers of pods: surge rounds up, unavailable down, and both zero (a
// percentage rounded away) means one unavailable so the rollout moves.
func fenceposts(d *appsv1.Deployment) (surge, unavailable int32) {
	ru := d.Spec.Strategy.RollingUpdate
	if ru == nil {
		return 0, 0
	}
	n := int(desired(d))
	s, u := scaledValue(ru.MaxSurge, n, true), scaledValue(ru.MaxUnavailable, n, false)
	if s == 0 && u == 0 {
		u = 1
	}
	return int32(s), int32(u)
}

func isRolling(d *appsv1.Deployment) bool {
	return d.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType
}

// maxSurge is the pods a rolling update may run above spec.replicas.
func maxSurge(d *appsv1.Deployment) int32 {
	if !isRolling(d) {
		return 0
	}
	s, _ := fenceposts(d)
	return s
}

// maxUnavailable is the pods a rolling update may lack below
// spec.replicas (0 for Recreate).
func maxUnavailable(d *appsv1.Deployment) int32 {
	if !isRolling(d) || desired(d) == 0 {
		return 0
	}
	_, u := fenceposts(d)
	return min(u, desired(d))
}

// skipCopy is the annotations a Deployment keeps for itself.
func skipCopy(key string) bool {
	switch key {
	case lastAppliedAnnotation, RevisionAnnotation, RevisionHistoryAnnotation, DesiredReplicasAnnotation, MaxReplicasAnnotation, rollbackToAnnotation:
		return true
	}
	return false
}

// copyAnnotations copies d's annotations (change-cause among them) to rs;
// it reports a change.
func copyAnnotations(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	changed := false
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	for k, v := range d.Annotations {
		if skipCopy(k) {
			continue
		}
		if old, ok := rs.Annotations[k]; ok && old == v {
			continue
		}
		rs.Annotations[k] = v
		changed = true
	}
	return changed
}

// setNewAnnotations gives the new ReplicaSet d's annotations and the
// revision rev; a set whose older revision comes back (a rollback) keeps
// that revision in its revision history. It reports a change.
func setNewAnnotations(d *appsv1.Deployment, rs *appsv1.ReplicaSet, rev string, exists bool) bool {
	changed := copyAnnotations(d, rs)
	old, had := rs.Annotations[RevisionAnnotation]
	oldN, err := strconv.ParseInt(old, 10, 64)
	if err != nil && old != "" {
		return false
	}
	newN, err := strconv.ParseInt(rev, 10, 64)
	if err != nil {
		return false
	}
	if oldN < newN {
		rs.Annotations[RevisionAnnotation] = rev
		changed = true
		if had {
			history := rs.Annotations[RevisionHistoryAnnotation]
			if history == "" {
				rs.Annotations[RevisionHistoryAnnotation] = old
			} else {
				olds := strings.Split(history, ",")
				total := len(history) + len(old) + 1
				start := 0
				for total > maxRevisionHistoryChars && start < len(olds) {
					total -= len(olds[start]) + 1
					start++
				}
				if total <= maxRevisionHistoryChars {
					rs.Annotations[RevisionHistoryAnnotation] = strings.Join(append(olds[start:], old), ",")
				}
			}
		}
	}
	if !exists && setReplicasAnnotations(rs, desired(d), desired(d)+maxSurge(d)) {
		changed = true
	}
	return changed
}

// setReplicasAnnotations records on rs the Deployment's size and its size
// with surge, which proportional scaling reads; it reports a change.
func setReplicasAnnotations(rs *appsv1.ReplicaSet, want, most int32) bool {
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	w, m := strconv.Itoa(int(want)), strconv.Itoa(int(most))
	if rs.Annotations[DesiredReplicasAnnotation] == w && rs.Annotations[MaxReplicasAnnotation] == m {
		return false
	}
	rs.Annotations[DesiredReplicasAnnotation], rs.Annotations[MaxReplicasAnnotation] = w, m
	return true
}

func intAnnotation(rs *appsv1.ReplicaSet, key string) (int32, bool) {
	v, ok := rs.Annotations[key]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, false
	}
	return int32(n), true
}

// newReplicaSet builds the ReplicaSet of d's current template.
func newReplicaSet(d *appsv1.Deployment) *appsv1.ReplicaSet {
	t := d.Spec.Template.DeepCopy()
	hash := templateHash(&d.Spec.Template, d.Status.CollisionCount)
	t.Labels = maps.Clone(t.Labels)
	if t.Labels == nil {
		t.Labels = map[string]string{}
	}
	t.Labels[HashLabel] = hash
	sel := d.Spec.Selector.DeepCopy()
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[HashLabel] = hash
	zero := int32(0)
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: d.Name + "-" + hash, Namespace: d.Namespace,
			OwnerReferences: []metav1.OwnerReference{controllerRef(d)},
			Labels:          maps.Clone(t.Labels),
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: &zero, MinReadySeconds: d.Spec.MinReadySeconds, Selector: sel, Template: *t},
	}
}

func controllerRef(d *appsv1.Deployment) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{
		APIVersion: controllerKind.GroupVersion().String(), Kind: controllerKind.Kind,
		Name: d.Name, UID: d.UID, Controller: &yes, BlockOwnerDeletion: &yes,
	}
}
