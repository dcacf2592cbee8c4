package apiserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-sh/skiff/controlplane/internal/registry"
	"github.com/skiff-sh/skiff/controlplane/internal/strategy"
)

// evictionAttempts bounds the retries of an eviction whose budget changed
// while it was decided.
const evictionAttempts = 20

// maxDisruptedPods bounds a budget's record of evictions its controller
// has not yet seen, as upstream.
const maxDisruptedPods = 2000

// spendDisruption decides whether pod ns/name may be evicted, as
// kube-apiserver's eviction does: a pod that does not run (pending,
// finished) or is already going, and one no PodDisruptionBudget selects,
// may; otherwise its budget must allow a disruption, and the eviction
// spends it (disruptionsAllowed - 1, the pod recorded in disruptedPods)
// before the pod is deleted. A budget allowing none is 429 TooManyRequests
// with the budget's numbers; two budgets selecting the pod are 500, as
// upstream. An unhealthy pod goes without spending anything when its
// budget is otherwise met (policy IfHealthyBudget, the default) or always
// (AlwaysAllow). A dry run checks without spending.
//
// It returns the uid of the pod it decided on, for the delete's
// precondition: a pod of the same name made meanwhile is not the one the
// budget was spent for.
func (s *Server) spendDisruption(ctx context.Context, pods *resource, ns, name string, dryRun bool) (types.UID, error) {
	for range evictionAttempts {
		obj, err := s.cfg.Store.Get(ctx, pods.reg, ns, name, registry.GetOptions{})
		if err != nil {
			return "", err
		}
		pod := obj.(*corev1.Pod)
		if pod.Status.Phase != corev1.PodRunning && pod.Status.Phase != corev1.PodUnknown && pod.Status.Phase != "" || pod.DeletionTimestamp != nil {
			return pod.UID, nil
		}
		pdb, err := s.budgetOf(ctx, pod)
		if pdb == nil || err != nil {
			return pod.UID, err
		}
		st := &pdb.Status
		if !podCondition(pod, corev1.PodReady) {
			policy := pdb.Spec.UnhealthyPodEvictionPolicy
			if policy != nil && *policy == policyv1.AlwaysAllow || st.CurrentHealthy >= st.DesiredHealthy && st.DesiredHealthy > 0 {
				return pod.UID, nil
			}
		}
		switch {
		case st.ObservedGeneration < pdb.Generation:
			return "", tooManyEvictions(fmt.Sprintf("The disruption budget %s is still being processed by the server.", pdb.Name))
		case st.DisruptionsAllowed < 0:
			return "", apierrors.NewForbidden(policyv1.Resource("poddisruptionbudget"), pdb.Name, fmt.Errorf("pdb disruptions allowed is negative"))
		case len(st.DisruptedPods) > maxDisruptedPods:
			return "", apierrors.NewForbidden(policyv1.Resource("poddisruptionbudget"), pdb.Name, fmt.Errorf("DisruptedPods map too big - too many evictions not confirmed by PDB controller"))
		case st.DisruptionsAllowed == 0:
			return "", tooManyEvictions(fmt.Sprintf("The disruption budget %s needs %d healthy pods and has %d currently", pdb.Name, st.DesiredHealthy, st.CurrentHealthy))
		}
		if dryRun {
			return pod.UID, nil
		}
		st.DisruptionsAllowed--
		if st.DisruptionsAllowed == 0 {
			// Recorded as the disruption controller would.
			apimeta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: policyv1.DisruptionAllowedCondition,
				Status: metav1.ConditionFalse, Reason: policyv1.InsufficientPodsReason, ObservedGeneration: pdb.Generation})
		}
		if st.DisruptedPods == nil {
			st.DisruptedPods = map[string]metav1.Time{}
		}
		st.DisruptedPods[pod.Name] = metav1.Time{Time: time.Now()}
		// Conditional on the budget as read: a concurrent eviction that
		// spent it first makes this one decide again.
		_, err = s.cfg.Store.Update(ctx, withUpdate(s.budgets, onlyStatus, strategy.ValidateStatusUpdate).reg, ns, pdb.Name, pdb, registry.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			return pod.UID, err
		}
	}
	return "", apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget: too many concurrent evictions", 0)
}

// budgetOf returns the budget that selects pod, nil if none does; more
// than one is an error.
func (s *Server) budgetOf(ctx context.Context, pod *corev1.Pod) (*policyv1.PodDisruptionBudget, error) {
	list, err := s.cfg.Store.List(ctx, s.budgets.reg, pod.Namespace, registry.ListOptions{})
	if err != nil {
		return nil, err
	}
	var found *policyv1.PodDisruptionBudget
	for i := range list.(*policyv1.PodDisruptionBudgetList).Items {
		b := &list.(*policyv1.PodDisruptionBudgetList).Items[i]
		// A nil selector selects nothing, an empty one every pod.
		sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
		if err != nil || b.Spec.Selector == nil || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		if found != nil {
			//lint:ignore ST1005 kube-apiserver's words, which clients show as they are
			return nil, apierrors.NewInternalError(errors.New("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."))
		}
		found = b
	}
	return found, nil
}

// tooManyEvictions is kube-apiserver's refusal of an eviction its budget
// does not allow: 429 with a DisruptionBudget cause, and no Retry-After
// (client-go would wait and retry by itself; kubectl drain retries every
// 5 s).
func tooManyEvictions(cause string) error {
	err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
	err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{Type: policyv1.DisruptionBudgetCause, Message: cause})
	return err
}
