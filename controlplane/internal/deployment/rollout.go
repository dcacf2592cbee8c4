package deployment

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// newAndOld splits d's ReplicaSets into the one of its current template
// (created when create is set and there is none) and the others, and
// brings the new one's revision and d's revision annotation up to date.
func (r *run) newAndOld(ctx context.Context, d *appsv1.Deployment, sets []*appsv1.ReplicaSet, create bool) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet, error) {
	found := findNew(d, sets)
	var olds []*appsv1.ReplicaSet
	for _, rs := range sets {
		if found == nil || rs.UID != found.UID {
			olds = append(olds, rs)
		}
	}
	newRS, err := r.newRS(ctx, d, found, olds, create)
	if err != nil {
		return nil, nil, err
	}
	return newRS, olds, nil
}

// newRS updates the existing new ReplicaSet's annotations (its revision is
// the highest plus one), or creates it when create is set.
func (r *run) newRS(ctx context.Context, d *appsv1.Deployment, existing *appsv1.ReplicaSet, olds []*appsv1.ReplicaSet, create bool) (*appsv1.ReplicaSet, error) {
	rev := strconv.FormatInt(maxRevision(olds)+1, 10)
	now := r.cfg.Now()
	if existing != nil {
		rs := existing.DeepCopy()
		changed := setNewAnnotations(d, rs, rev, true)
		if changed || rs.Spec.MinReadySeconds != d.Spec.MinReadySeconds {
			rs.Spec.MinReadySeconds = d.Spec.MinReadySeconds
			return r.updateRS(ctx, rs)
		}
		needsUpdate := setRevision(d, rs.Annotations[RevisionAnnotation])
		if hasDeadline(d) && condition(&d.Status, appsv1.DeploymentProgressing) == nil {
			setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonFoundNewRS, fmt.Sprintf("Found new replica set %q", rs.Name), now))
			needsUpdate = true
		}
		if needsUpdate {
			updated, err := r.updateStatus(ctx, d)
			if err != nil {
				return nil, err
			}
			*d = *updated
		}
		return rs, nil
	}
	if !create {
		return nil, nil
	}
	rs := newReplicaSet(d)
	n := newRSReplicas(d, append(append([]*appsv1.ReplicaSet(nil), olds...), rs), rs)
	rs.Spec.Replicas = &n
	setNewAnnotations(d, rs, rev, false)
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	created, err := r.cfg.Client.AppsV1().ReplicaSets(d.Namespace).Create(rctx, rs, metav1.CreateOptions{})
	cancel()
	existed := false
	switch {
	case apierrors.IsAlreadyExists(err):
		// Ours from an earlier run whose create the cache has not shown,
		// or a collision with another template under the same hash.
		rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
		there, gerr := r.cfg.Client.AppsV1().ReplicaSets(d.Namespace).Get(rctx, rs.Name, metav1.GetOptions{})
		cancel()
		if gerr != nil {
			return nil, gerr
		}
		if ref := metav1.GetControllerOf(there); ref != nil && ref.UID == d.UID && equalIgnoringHash(&d.Spec.Template, &there.Spec.Template) {
			created, existed = there, true
			break
		}
		if d.Status.CollisionCount == nil {
			d.Status.CollisionCount = new(int32)
		}
		*d.Status.CollisionCount++
		if _, err := r.updateStatus(ctx, d); err != nil {
			return nil, err
		}
		r.logger.Info("replica set name collision", "deployment", d.Namespace+"/"+d.Name, "replicaset", rs.Name, "collisionCount", *d.Status.CollisionCount)
		return nil, fmt.Errorf("%w: %s", ErrCollision, rs.Name)
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return nil, err
	case err != nil:
		msg := fmt.Sprintf("Failed to create new replica set %q: %v", rs.Name, err)
		if hasDeadline(d) {
			setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionFalse, ReasonFailedRSCreate, msg, now))
			if _, uerr := r.updateStatus(ctx, d); uerr != nil {
				r.logger.Debug("failed replica set create not recorded", "deployment", d.Namespace+"/"+d.Name, "err", uerr)
			}
		}
		r.rec.Event(d, corev1.EventTypeWarning, ReasonFailedRSCreate, msg)
		return nil, err
	}
	if !existed && n > 0 {
		r.rec.Eventf(d, corev1.EventTypeNormal, ReasonScaling, "Scaled up replica set %s from 0 to %d", created.Name, n)
	}
	needsUpdate := setRevision(d, rev)
	if !existed && hasDeadline(d) {
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonNewRSCreated, fmt.Sprintf("Created new replica set %q", created.Name), now))
		needsUpdate = true
	}
	if needsUpdate {
		updated, err := r.updateStatus(ctx, d)
		if err != nil {
			return nil, err
		}
		*d = *updated
	}
	return created, nil
}

// setRevision sets d's revision annotation; it reports a change.
func setRevision(d *appsv1.Deployment, rev string) bool {
	if d.Annotations[RevisionAnnotation] == rev {
		return false
	}
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	d.Annotations[RevisionAnnotation] = rev
	return true
}

func (r *run) updateRS(ctx context.Context, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	updated, err := r.cfg.Client.AppsV1().ReplicaSets(rs.Namespace).Update(rctx, rs, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("deployment: update replica set %s/%s: %w", rs.Namespace, rs.Name, err)
	}
	return updated, nil
}

// newRSReplicas is the size the new ReplicaSet may have now.
func newRSReplicas(d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) int32 {
	if !isRolling(d) {
		return desired(d)
	}
	if replicas(newRS) == desired(d) {
		return replicas(newRS)
	}
	// Pods a shrinking set has not deleted yet still count: its status
	// shows them until its controller has caught up.
	var total int32
	for _, rs := range all {
		if rs != nil {
			total += max(replicas(rs), rs.Status.Replicas)
		}
	}
	most := desired(d) + maxSurge(d)
	if total >= most {
		return replicas(newRS)
	}
	return replicas(newRS) + min(most-total, desired(d)-replicas(newRS))
}

// scaleRS sets rs's size to n (and its replicas annotations to d's) and
// records a ScalingReplicaSet event; it reports whether the size changed.
func (r *run) scaleRS(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet, n int32) (bool, *appsv1.ReplicaSet, error) {
	from := replicas(rs)
	cp := rs.DeepCopy()
	annotated := setReplicasAnnotations(cp, desired(d), desired(d)+maxSurge(d))
	if from == n && !annotated {
		return false, rs, nil
	}
	cp.Spec.Replicas = &n
	updated, err := r.updateRS(ctx, cp)
	if err != nil {
		return false, nil, err
	}
	if from != n {
		op := "up"
		if n < from {
			op = "down"
		}
		r.rec.Eventf(d, corev1.EventTypeNormal, ReasonScaling, "Scaled %s replica set %s from %d to %d", op, rs.Name, from, n)
		r.logger.Debug("scaled replica set", "deployment", d.Namespace+"/"+d.Name, "replicaset", rs.Name, "from", from, "to", n)
	}
	return from != n, updated, nil
}

// scaleTo is scaleRS that does nothing when the size is n already.
func (r *run) scaleTo(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet, n int32) (bool, *appsv1.ReplicaSet, error) {
	if replicas(rs) == n {
		return false, rs, nil
	}
	return r.scaleRS(ctx, d, rs, n)
}

// saturated reports whether rs runs all of d, available.
func saturated(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	if rs == nil {
		return false
	}
	n, ok := intAnnotation(rs, DesiredReplicasAnnotation)
	return ok && replicas(rs) == desired(d) && n == desired(d) && rs.Status.AvailableReplicas == desired(d)
}

// activeOrLatest is the one active ReplicaSet, or the latest when none is
// active; nil when several are.
func activeOrLatest(newRS *appsv1.ReplicaSet, olds []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	if newRS == nil && len(olds) == 0 {
		return nil
	}
	sorted := append([]*appsv1.ReplicaSet(nil), olds...)
	byCreation(sorted)
	for i, j := 0, len(sorted)-1; i < j; i, j = i+1, j-1 {
		sorted[i], sorted[j] = sorted[j], sorted[i]
	}
	act := active(append(sorted, newRS))
	switch len(act) {
	case 0:
		if newRS != nil {
			return newRS
		}
		return sorted[0]
	case 1:
		return act[0]
	}
	return nil
}

// scale brings d's ReplicaSets to its size: the one active set directly;
// otherwise, mid-rollout, the pods added or removed are shared among the
// active sets in proportion to their sizes.
func (r *run) scale(ctx context.Context, d *appsv1.Deployment, newRS *appsv1.ReplicaSet, olds []*appsv1.ReplicaSet) error {
	if one := activeOrLatest(newRS, olds); one != nil {
		_, _, err := r.scaleTo(ctx, d, one, desired(d))
		return err
	}
	if saturated(d, newRS) {
		for _, old := range active(olds) {
			if _, _, err := r.scaleTo(ctx, d, old, 0); err != nil {
				return err
			}
		}
		return nil
	}
	if !isRolling(d) {
		return nil
	}
	sets := active(append(append([]*appsv1.ReplicaSet(nil), olds...), newRS))
	total, _, _, _ := sumReplicas(sets)
	allowed := int32(0)
	if desired(d) > 0 {
		allowed = desired(d) + maxSurge(d)
	}
	toAdd := allowed - total
	switch {
	case toAdd > 0:
		bySize(sets, true)
	case toAdd < 0:
		bySize(sets, false)
	}
	sizes := make([]int32, len(sets))
	var added int32
	for i, rs := range sets {
		sizes[i] = replicas(rs)
		if toAdd != 0 {
			p := proportion(d, rs, toAdd, added)
			sizes[i] += p
			added += p
		}
	}
	// Rounding leftovers go to the largest set.
	if added != toAdd && len(sets) > 0 {
		sizes[0] = max(sizes[0]+toAdd-added, 0)
	}
	for i, rs := range sets {
		if _, _, err := r.scaleRS(ctx, d, rs, sizes[i]); err != nil {
			return err
		}
	}
	return nil
}

// proportion is rs's share of toAdd pods (negative: to remove) of which
// added are placed already.
func proportion(d *appsv1.Deployment, rs *appsv1.ReplicaSet, toAdd, added int32) int32 {
	if rs == nil || replicas(rs) == 0 || toAdd == 0 || toAdd == added {
		return 0
	}
	fraction := fraction(d, rs)
	allowed := toAdd - added
	if toAdd > 0 {
		return min(fraction, allowed)
	}
	return max(fraction, allowed)
}

// fraction is how much rs grows or shrinks when its deployment's
// max-replicas changes to the current size plus surge.
func fraction(d *appsv1.Deployment, rs *appsv1.ReplicaSet) int32 {
	if desired(d) == 0 {
		return -replicas(rs)
	}
	total := desired(d) + maxSurge(d)
	annotated, ok := intAnnotation(rs, MaxReplicasAnnotation)
	if !ok || annotated == 0 {
		annotated = d.Status.Replicas
	}
	if annotated == 0 {
		return 0
	}
	size := float64(replicas(rs)*total) / float64(annotated)
	return int32(math.Round(size)) - replicas(rs)
}

// rolling takes one step of a rolling update.
func (r *run) rolling(ctx context.Context, d *appsv1.Deployment, sets []*appsv1.ReplicaSet) error {
	newRS, olds, err := r.newAndOld(ctx, d, sets, true)
	if err != nil {
		return err
	}
	all := append(append([]*appsv1.ReplicaSet(nil), olds...), newRS)
	up, err := r.reconcileNew(ctx, d, all, newRS)
	if err != nil {
		return err
	}
	if up {
		return r.rolloutStatus(ctx, d, all, newRS)
	}
	down, err := r.reconcileOld(ctx, d, all, active(olds), newRS)
	if err != nil {
		return err
	}
	if down {
		return r.rolloutStatus(ctx, d, all, newRS)
	}
	if complete(d, &d.Status) {
		if err := r.cleanup(ctx, d, olds); err != nil {
			return err
		}
	}
	return r.rolloutStatus(ctx, d, all, newRS)
}

// reconcileNew grows the new ReplicaSet as far as surge allows (or shrinks
// it to the size); it reports a change.
func (r *run) reconcileNew(ctx context.Context, d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (bool, error) {
	switch {
	case replicas(newRS) == desired(d):
		return false, nil
	case replicas(newRS) > desired(d):
		up, _, err := r.scaleTo(ctx, d, newRS, desired(d))
		return up, err
	}
	up, _, err := r.scaleTo(ctx, d, newRS, newRSReplicas(d, all, newRS))
	return up, err
}

// reconcileOld shrinks the old ReplicaSets as far as maxUnavailable allows,
// unhealthy pods first; it reports a change.
func (r *run) reconcileOld(ctx context.Context, d *appsv1.Deployment, all, olds []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (bool, error) {
	oldCount, _, _, _ := sumReplicas(olds)
	if oldCount == 0 {
		return false, nil
	}
	allCount, _, _, _ := sumReplicas(all)
	minAvailable := desired(d) - maxUnavailable(d)
	newUnavailable := replicas(newRS) - available(newRS)
	maxDown := allCount - minAvailable - newUnavailable
	if maxDown <= 0 {
		return false, nil
	}
	olds, cleaned, err := r.cleanupUnhealthy(ctx, d, olds, maxDown)
	if err != nil {
		return false, err
	}
	all = append(append([]*appsv1.ReplicaSet(nil), olds...), newRS)
	scaled, err := r.scaleDownOld(ctx, d, all, olds)
	if err != nil {
		return false, err
	}
	return cleaned+scaled > 0, nil
}

// cleanupUnhealthy removes up to most unavailable pods from the old
// ReplicaSets, oldest first: they cost no availability.
func (r *run) cleanupUnhealthy(ctx context.Context, d *appsv1.Deployment, olds []*appsv1.ReplicaSet, most int32) ([]*appsv1.ReplicaSet, int32, error) {
	olds = append([]*appsv1.ReplicaSet(nil), olds...)
	byCreation(olds)
	var total int32
	for i, rs := range olds {
		if total >= most {
			break
		}
		n := replicas(rs)
		if n == 0 || n == available(rs) {
			continue
		}
		down := min(most-total, n-available(rs))
		_, updated, err := r.scaleTo(ctx, d, rs, n-down)
		if err != nil {
			return nil, total, err
		}
		total += down
		olds[i] = updated
	}
	return olds, total, nil
}

// scaleDownOld shrinks the old ReplicaSets, oldest first, by as many pods
// as are available beyond the minimum.
func (r *run) scaleDownOld(ctx context.Context, d *appsv1.Deployment, all, olds []*appsv1.ReplicaSet) (int32, error) {
	minAvailable := desired(d) - maxUnavailable(d)
	var avail int32
	for _, rs := range all {
		avail += available(rs)
	}
	if avail <= minAvailable {
		return 0, nil
	}
	olds = append([]*appsv1.ReplicaSet(nil), olds...)
	byCreation(olds)
	want := avail - minAvailable
	var total int32
	for _, rs := range olds {
		if total >= want {
			break
		}
		if replicas(rs) == 0 {
			continue
		}
		down := min(replicas(rs), want-total)
		if _, _, err := r.scaleTo(ctx, d, rs, replicas(rs)-down); err != nil {
			return total, err
		}
		total += down
	}
	return total, nil
}

// available is rs's available pods as far as the rollout may count on
// them: a set just scaled down shows the pods it is about to delete as
// available until its controller catches up, and it deletes unavailable
// pods first, so no more than its size of them stay.
func available(rs *appsv1.ReplicaSet) int32 {
	if rs == nil {
		return 0
	}
	return min(rs.Status.AvailableReplicas, replicas(rs))
}

// recreate takes one step of a Recreate rollout: old sets to zero, wait
// for their pods to go, then the new set at full size.
func (r *run) recreate(ctx context.Context, d *appsv1.Deployment, sets []*appsv1.ReplicaSet) error {
	newRS, olds, err := r.newAndOld(ctx, d, sets, false)
	if err != nil {
		return err
	}
	all := append(append([]*appsv1.ReplicaSet(nil), olds...), newRS)
	down := false
	for _, rs := range active(olds) {
		scaled, _, err := r.scaleTo(ctx, d, rs, 0)
		if err != nil {
			return err
		}
		down = down || scaled
	}
	if down {
		return r.rolloutStatus(ctx, d, all, newRS)
	}
	if running, err := r.oldPodsRunning(d, newRS, olds); err != nil {
		return err
	} else if running {
		return r.rolloutStatus(ctx, d, all, newRS)
	}
	if newRS == nil {
		if newRS, olds, err = r.newAndOld(ctx, d, sets, true); err != nil {
			return err
		}
		all = append(append([]*appsv1.ReplicaSet(nil), olds...), newRS)
	}
	if _, _, err := r.scaleTo(ctx, d, newRS, desired(d)); err != nil {
		return err
	}
	if complete(d, &d.Status) {
		if err := r.cleanup(ctx, d, olds); err != nil {
			return err
		}
	}
	return r.rolloutStatus(ctx, d, all, newRS)
}

// oldPodsRunning reports whether the old ReplicaSets still have pods that
// are not finished (being deleted counts as still there).
func (r *run) oldPodsRunning(d *appsv1.Deployment, newRS *appsv1.ReplicaSet, olds []*appsv1.ReplicaSet) (bool, error) {
	if _, actual, _, _ := sumReplicas(olds); actual > 0 {
		return true, nil
	}
	oldUIDs := map[string]bool{}
	for _, rs := range olds {
		oldUIDs[string(rs.UID)] = true
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return false, nil
	}
	pods, err := r.pods.Pods(d.Namespace).List(sel)
	if err != nil {
		return false, err
	}
	for _, p := range pods {
		ref := metav1.GetControllerOf(p)
		if ref == nil || !oldUIDs[string(ref.UID)] || (newRS != nil && ref.UID == newRS.UID) {
			continue
		}
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			return true, nil
		}
	}
	return false, nil
}

// cleanup deletes the oldest empty ReplicaSets beyond
// revisionHistoryLimit.
func (r *run) cleanup(ctx context.Context, d *appsv1.Deployment, olds []*appsv1.ReplicaSet) error {
	if d.Spec.RevisionHistoryLimit == nil {
		return nil
	}
	var live []*appsv1.ReplicaSet
	for _, rs := range olds {
		if rs != nil && rs.DeletionTimestamp == nil {
			live = append(live, rs)
		}
	}
	extra := len(live) - int(*d.Spec.RevisionHistoryLimit)
	if extra <= 0 {
		return nil
	}
	sort.SliceStable(live, func(i, j int) bool {
		a, b := revision(live[i]), revision(live[j])
		if a != b {
			return a < b
		}
		return live[i].CreationTimestamp.Before(&live[j].CreationTimestamp)
	})
	for _, rs := range live[:extra] {
		if rs.Status.Replicas != 0 || replicas(rs) != 0 || rs.Generation > rs.Status.ObservedGeneration {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
		err := r.cfg.Client.AppsV1().ReplicaSets(rs.Namespace).Delete(rctx, rs.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &rs.UID}})
		cancel()
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("deployment: delete old replica set %s/%s: %w", rs.Namespace, rs.Name, err)
		}
		r.logger.Debug("deleted old replica set", "deployment", d.Namespace+"/"+d.Name, "replicaset", rs.Name)
	}
	return nil
}

// rolloutStatus writes d's status with its progress conditions, or, when
// nothing changed, schedules a look at the progress deadline.
func (r *run) rolloutStatus(ctx context.Context, d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) error {
	now := r.cfg.Now()
	st := progressStatus(d, calculateStatus(d, all, newRS, now), all, newRS, now)
	if apiequality.Semantic.DeepEqual(d.Status, st) {
		if after, ok := recheckAfter(d, &st, now); ok {
			r.queue.AddAfter(d.Namespace+"/"+d.Name, after)
		}
		return nil
	}
	d.Status = st
	_, err := r.updateStatus(ctx, d)
	return err
}
