package gc

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ownerState is what the collector found at the other end of one
// ownerReference.
type ownerState uint8

const (
	// solid: the owner exists (or cannot be checked) and keeps its dependents.
	solid ownerState = iota
	// dangling: no object with the reference's uid exists any more.
	dangling
	// waiting: the owner is being deleted in the foreground, waiting for its
	// dependents to go first.
	waiting
)

func (s ownerState) String() string {
	return [...]string{"solid", "dangling", "waiting"}[s]
}

// verdict is what the collector does to an object that has owners and is
// not being deleted.
type verdict struct {
	// removeRefs are the owners to drop from the object's ownerReferences
	// (it keeps a solid owner, so it stays).
	removeRefs []types.UID
	// delete says the object goes, with propagation policy.
	delete bool
	policy metav1.DeletionPropagation
	// unblock says to clear blockOwnerDeletion on the object's references
	// before deleting it: one of its own dependents waits in the foreground
	// too, and owners blocking on each other would wait forever.
	unblock bool
}

// decide is the upstream garbage collector's rule for an object m (not being
// deleted) whose ownerReferences, in order, are in states:
//   - a solid owner keeps it; references to owners that are gone or
//     waiting are removed from it;
//   - otherwise, with an owner waiting for its dependents, it is deleted in
//     the foreground if it has dependents itself (so they go before the
//     owner's wait ends), else as below;
//   - otherwise (every owner gone) it is deleted with the policy its own
//     finalizers ask for (orphan, foregroundDeletion), else in the
//     background.
//
// hasDependents says some object refers to m as its owner;
// dependentWaiting that one of those is itself deleting in the foreground.
func decide(m metav1.Object, states []ownerState, hasDependents, dependentWaiting bool) verdict {
	refs := m.GetOwnerReferences()
	var solids, dropped, waitings int
	var drop []types.UID
	for i, s := range states {
		switch s {
		case solid:
			solids++
		case dangling:
			dropped++
			drop = append(drop, refs[i].UID)
		case waiting:
			waitings++
			drop = append(drop, refs[i].UID)
		}
	}
	switch {
	case len(states) == 0:
		return verdict{}
	case solids > 0:
		return verdict{removeRefs: drop}
	case waitings > 0 && hasDependents:
		return verdict{delete: true, policy: metav1.DeletePropagationForeground, unblock: dependentWaiting && blocksAny(m)}
	}
	policy := metav1.DeletePropagationBackground
	switch f := m.GetFinalizers(); {
	case slices.Contains(f, metav1.FinalizerOrphanDependents):
		policy = metav1.DeletePropagationOrphan
	case slices.Contains(f, metav1.FinalizerDeleteDependents):
		policy = metav1.DeletePropagationForeground
	}
	return verdict{delete: true, policy: policy}
}

// blocksAny reports whether any of m's ownerReferences blocks its owner's deletion.
func blocksAny(m metav1.Object) bool {
	return slices.ContainsFunc(m.GetOwnerReferences(), func(r metav1.OwnerReference) bool {
		return r.BlockOwnerDeletion != nil && *r.BlockOwnerDeletion
	})
}

// blocks reports whether dependent m holds up the foreground deletion of
// the owner with uid owner: it refers to it with blockOwnerDeletion true.
func blocks(m metav1.Object, owner types.UID) bool {
	return slices.ContainsFunc(m.GetOwnerReferences(), func(r metav1.OwnerReference) bool {
		return r.UID == owner && r.BlockOwnerDeletion != nil && *r.BlockOwnerDeletion
	})
}

// finalizing is what the collector does for an owner being deleted with
// one of its finalizers.
type finalizing uint8

const (
	// notFinalizing: the object carries neither finalizer, or is not being
	// deleted; nothing to do.
	notFinalizing finalizing = iota
	// orphaning: remove the owner from every dependent's ownerReferences,
	// then the orphan finalizer.
	orphaning
	// deletingDependents: delete the dependents; once none blocks, remove
	// the foregroundDeletion finalizer.
	deletingDependents
)

// finalizingOf says which of the collector's finalizers an object being
// deleted waits for (orphan first, should it somehow carry both).
func finalizingOf(m metav1.Object) finalizing {
	if m.GetDeletionTimestamp() == nil {
		return notFinalizing
	}
	switch f := m.GetFinalizers(); {
	case slices.Contains(f, metav1.FinalizerOrphanDependents):
		return orphaning
	case slices.Contains(f, metav1.FinalizerDeleteDependents):
		return deletingDependents
	}
	return notFinalizing
}

// withoutFinalizer returns finalizers without f, and whether f was there.
func withoutFinalizer(finalizers []string, f string) ([]string, bool) {
	if !slices.Contains(finalizers, f) {
		return finalizers, false
	}
	out := make([]string, 0, len(finalizers)-1)
	for _, x := range finalizers {
		if x != f {
			out = append(out, x)
		}
	}
	return out, true
}
