package registry

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// gcFinalizers returns the finalizers a delete with opts leaves on the
// stored object m for the garbage collector, as kube-apiserver chooses them:
// orphan for propagationPolicy Orphan (or the deprecated orphanDependents
// true), foregroundDeletion for Foreground, neither for Background; with no
// policy, the one m already carries, else orphan when orphanByDefault (the
// resource's default, as batch/v1 Jobs keep it for compatibility) and none
// otherwise (Background). The other finalizers keep their order.
//
// An object already being deleted only loses finalizers, never gains one:
// a later delete may end a foreground or orphan wait (Background) but not
// start another. One being deleted gracefully (a pod waiting for its node)
// keeps its finalizers, as kube-apiserver leaves them while a grace period
// is pending.
func gcFinalizers(m metav1.Object, opts DeleteOptions, orphanByDefault bool) (finalizers []string, changed bool) {
	cur := m.GetFinalizers()
	if m.GetDeletionTimestamp() != nil && !zeroGrace(m) {
		return cur, false
	}
	orphan, foreground := slices.Contains(cur, metav1.FinalizerOrphanDependents), slices.Contains(cur, metav1.FinalizerDeleteDependents)
	switch {
	case opts.OrphanDependents != nil:
		orphan, foreground = *opts.OrphanDependents, false
	case opts.PropagationPolicy != nil:
		p := *opts.PropagationPolicy
		orphan, foreground = p == metav1.DeletePropagationOrphan, p == metav1.DeletePropagationForeground
	case orphan && foreground: // validation forbids both; orphan wins, as upstream
		foreground = false
	case !orphan && !foreground:
		orphan = orphanByDefault
	}
	for _, f := range cur {
		if f != metav1.FinalizerOrphanDependents && f != metav1.FinalizerDeleteDependents {
			finalizers = append(finalizers, f)
		}
	}
	if orphan {
		finalizers = append(finalizers, metav1.FinalizerOrphanDependents)
	}
	if foreground {
		finalizers = append(finalizers, metav1.FinalizerDeleteDependents)
	}
	if sameSet(cur, finalizers) {
		return cur, false
	}
	if m.GetDeletionTimestamp() != nil && slices.ContainsFunc(finalizers, func(f string) bool { return !slices.Contains(cur, f) }) {
		return cur, false // would add one
	}
	return finalizers, true
}

// sameSet reports whether a and b hold the same strings.
func sameSet(a, b []string) bool {
	for _, s := range a {
		if !slices.Contains(b, s) {
			return false
		}
	}
	for _, s := range b {
		if !slices.Contains(a, s) {
			return false
		}
	}
	return true
}
