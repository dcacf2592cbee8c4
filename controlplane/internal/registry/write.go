package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/raftstore"
)

// generateNameAttempts is how many names Create tries for a generateName
// before it gives up with AlreadyExists.
const generateNameAttempts = 8

// CreateOptions modify a Create.
type CreateOptions struct {
	// DryRun runs every check and returns the object that would be
	// created, without writing (its resourceVersion is empty).
	DryRun bool
}

// UpdateOptions modify an Update or GuaranteedUpdate.
type UpdateOptions struct {
	// DryRun runs every check and returns the object that would be
	// stored, without writing.
	DryRun bool
}

// DeleteOptions modify a Delete.
type DeleteOptions struct {
	// Preconditions, when set, must match the stored uid and resourceVersion.
	Preconditions *metav1.Preconditions
	DryRun        bool
	// GracePeriodSeconds is the grace period the client asked for; only
	// resources with a GracePeriod hook (pods) use it.
	GracePeriodSeconds *int64
	// PropagationPolicy and the deprecated OrphanDependents say what the
	// garbage collector does with the object's dependents: Foreground holds
	// the object with the foregroundDeletion finalizer until they are gone,
	// Orphan with the orphan finalizer until they no longer refer to it;
	// Background (the default) deletes it now and them afterwards.
	PropagationPolicy *metav1.DeletionPropagation
	OrphanDependents  *bool
}

// Create stores a new object in namespace ns (ignored for cluster-scoped
// resources) and returns it as stored, with its resourceVersion. obj is not
// modified. The registry sets uid, creationTimestamp (second precision) and
// generation 1, clears resourceVersion and deletion fields, and generates the
// name from metadata.generateName when name is empty. Errors: 400 when the
// object's namespace differs from ns, 422 Invalid, 409 AlreadyExists, and
// the store errors of storeError.
func (s *Store) Create(ctx context.Context, res *Resource, ns string, obj runtime.Object, opts CreateOptions) (runtime.Object, error) {
	obj = obj.DeepCopyObject()
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	if err := setNamespace(res, m, ns); err != nil {
		return nil, err
	}
	obj.GetObjectKind().SetGroupVersionKind(res.Kind)
	m.SetResourceVersion("")
	m.SetDeletionTimestamp(nil)
	m.SetDeletionGracePeriodSeconds(nil)
	m.SetGeneration(0)
	if res.Generation {
		m.SetGeneration(1)
	}
	if res.Default != nil {
		res.Default(obj)
	}
	if res.PrepareForCreate != nil {
		res.PrepareForCreate(obj)
	}
	m.SetUID(uuid.NewUUID())
	m.SetCreationTimestamp(metav1.NewTime(s.now()).Rfc3339Copy())
	generate := m.GetName() == "" && m.GetGenerateName() != ""
	// Only a generated name or a reservation can make an attempt fail in a
	// way the next one retries; those start each attempt from a copy of base.
	retries := generate || res.Reservations != nil
	base := obj
	for attempt := 1; ; attempt++ {
		if retries {
			obj = base.DeepCopyObject() // what Assign chose last time is chosen again
			m, _ = meta.Accessor(obj)
		}
		if generate {
			m.SetName(generateName(m.GetGenerateName()))
		}
		if res.Reservations != nil {
			if err := s.assign(ctx, res, obj, nil); err != nil {
				return nil, err
			}
		}
		if res.PrepareNamed != nil {
			res.PrepareNamed(obj)
		}
		if errs := s.validateCreate(res, obj, m); len(errs) > 0 {
			return nil, apierrors.NewInvalid(res.groupKind(), m.GetName(), errs)
		}
		if res.Admit != nil {
			if err := res.Admit(ctx, obj, nil); err != nil {
				return nil, err
			}
		}
		k := key(res, m.GetNamespace(), m.GetName())
		if opts.DryRun {
			kv, _, err := s.kv.Get(ctx, k, raftstore.ReadOptions{})
			if err == nil && kv != nil {
				err = raftstore.ErrKeyExists
			}
			if err != nil {
				return nil, storeError(res, m.GetName(), expiredList, err)
			}
			return obj, nil
		}
		data, err := s.codec.encode(obj)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		var rev int64
		if res.Reservations != nil {
			rev, err = s.writeReserving(ctx, res, k, data, 0, obj, nil)
		} else {
			rev, err = s.kv.Create(ctx, k, data)
		}
		if errors.Is(err, raftstore.ErrKeyExists) && generate && attempt < generateNameAttempts {
			continue
		}
		if errors.Is(err, errReservationTaken) {
			if attempt < reserveAttempts {
				continue
			}
			return nil, tooManyReservationRetries(res, m.GetName())
		}
		if err != nil {
			return nil, storeError(res, m.GetName(), expiredList, err)
		}
		m.SetResourceVersion(formatRV(rev))
		return obj, nil
	}
}

// generateName appends 5 random characters to base, as kube-apiserver does,
// trimming base so the result fits in 63 characters.
func generateName(base string) string {
	const maxBase = 63 - 5
	if len(base) > maxBase {
		base = base[:maxBase]
	}
	return base + utilrand.String(5)
}

// setNamespace applies the request's namespace to an object: namespaced
// objects take ns when they name none and must match it otherwise; the
// namespace of cluster-scoped objects is cleared.
func setNamespace(res *Resource, m metav1.Object, ns string) error {
	if !res.Namespaced {
		m.SetNamespace("")
		return nil
	}
	switch {
	case m.GetNamespace() == "":
		m.SetNamespace(ns)
	case ns != "" && m.GetNamespace() != ns:
		return apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
	}
	return nil
}

func (r *Resource) groupKind() schema.GroupKind { return r.Kind.GroupKind() }

func (r *Resource) nameFunc() validation.ValidateNameFunc {
	if r.ValidateName != nil {
		return r.ValidateName
	}
	return validation.NameIsDNSSubdomain
}

var metadataPath = field.NewPath("metadata")

func (s *Store) validateCreate(res *Resource, obj runtime.Object, m metav1.Object) field.ErrorList {
	errs := validation.ValidateObjectMetaAccessor(m, res.Namespaced, res.nameFunc(), metadataPath)
	if res.Validate != nil {
		errs = append(errs, res.Validate(obj)...)
	}
	return errs
}

// Update replaces the object ns/name with obj and returns it as stored. A
// resourceVersion in obj is a precondition (409 Conflict when it is not the
// stored one); an empty one makes the update unconditional. So is a uid.
// uid, creationTimestamp, generation and the deletion fields are carried
// over from the stored object (PrepareForUpdate may bump generation).
// Updating a missing object is 404 NotFound: there is no create-on-update.
// An update that leaves an object being deleted without finalizers deletes
// it; the object is returned with the revision of the delete.
func (s *Store) Update(ctx context.Context, res *Resource, ns, name string, obj runtime.Object, opts UpdateOptions) (runtime.Object, error) {
	return s.GuaranteedUpdate(ctx, res, ns, name, func(runtime.Object) (runtime.Object, error) {
		return obj.DeepCopyObject(), nil
	}, opts)
}

// GuaranteedUpdate reads the object ns/name, calls tryUpdate with a copy of
// it (resourceVersion set) and stores what tryUpdate returns under the rules
// of Update. When the object changed in between it reads it again and calls
// tryUpdate again, until the write succeeds, tryUpdate fails (its error is
// returned as is) or ctx ends. tryUpdate may modify and return its argument.
// An update that changes nothing writes nothing and returns the stored object.
//
// The first read is the local replica's, without the read index round trip
// to the leader that a linearizable read costs: the write commits only if
// the object is still at the revision read, so a stale replica costs a
// retry, never a wrong write. Any other outcome of a stale read (an error
// of tryUpdate or of the checks, NotFound, nothing to write, a dry run) is
// decided again on a linearizable read, and so is every retry.
func (s *Store) GuaranteedUpdate(ctx context.Context, res *Resource, ns, name string, tryUpdate func(current runtime.Object) (runtime.Object, error), opts UpdateOptions) (runtime.Object, error) {
	if !res.Namespaced {
		ns = ""
	}
	k, err := objectKey(res, ns, name)
	if err != nil {
		return nil, err
	}
	stale := !opts.DryRun && res.Reservations == nil
	for ; ; stale = false {
		if err := ctx.Err(); err != nil {
			return nil, storeError(res, name, expiredList, err)
		}
		cur, kv, err := s.read(ctx, res, k, name, raftstore.ReadOptions{Stale: stale})
		if err != nil {
			if stale {
				continue
			}
			return nil, err
		}
		obj, err := tryUpdate(cur.DeepCopyObject())
		if err != nil {
			if stale {
				continue
			}
			return nil, err
		}
		obj, err = s.prepareUpdate(res, ns, name, obj, cur, kv.ModRevision)
		if err == nil && res.Admit != nil {
			err = res.Admit(ctx, obj, cur)
		}
		if err != nil {
			if stale {
				continue
			}
			return nil, err
		}
		m, _ := meta.Accessor(obj)
		if m.GetDeletionTimestamp() != nil && len(m.GetFinalizers()) == 0 && zeroGrace(m) && !res.finalizing(obj) {
			// The last finalizer is gone: the object goes for good.
			if opts.DryRun {
				return obj, nil
			}
			rev, err := s.deleteKey(ctx, res, k, kv.ModRevision, cur)
			if errors.Is(err, raftstore.ErrConflict) || errors.Is(err, raftstore.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return nil, storeError(res, name, expiredList, err)
			}
			m.SetResourceVersion(formatRV(rev))
			return obj, nil
		}
		if res.Reservations != nil {
			if err := s.assign(ctx, res, obj, cur); err != nil {
				return nil, err
			}
		}
		m.SetResourceVersion("")
		data, err := s.codec.encode(obj)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		if bytes.Equal(data, kv.Value) {
			if stale {
				continue // the object returned must be the current one
			}
			return cur, nil
		}
		if opts.DryRun {
			m.SetResourceVersion(formatRV(kv.ModRevision))
			return obj, nil
		}
		var rev int64
		if res.Reservations != nil {
			rev, err = s.writeReserving(ctx, res, k, data, kv.ModRevision, obj, cur)
		} else {
			var written raftstore.KeyValue
			written, err = s.kv.Update(ctx, k, data, kv.ModRevision)
			rev = written.ModRevision
		}
		if errors.Is(err, raftstore.ErrConflict) || errors.Is(err, raftstore.ErrKeyNotFound) || errors.Is(err, errReservationTaken) {
			continue // read again: the next round reports NotFound or Conflict, or succeeds
		}
		if err != nil {
			return nil, storeError(res, name, expiredList, err)
		}
		m.SetResourceVersion(formatRV(rev))
		return obj, nil
	}
}

// prepareUpdate checks obj against the stored object old (at rev) and the
// request, carries the server-owned metadata over and validates the result.
func (s *Store) prepareUpdate(res *Resource, ns, name string, obj, old runtime.Object, rev int64) (runtime.Object, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	om, _ := meta.Accessor(old)
	switch {
	case m.GetName() == "":
		m.SetName(name)
	case m.GetName() != name:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), name))
	}
	if err := setNamespace(res, m, ns); err != nil {
		return nil, err
	}
	if rv := m.GetResourceVersion(); rv != "" {
		n, err := parseRV(rv)
		if err != nil {
			return nil, err
		}
		if n != rev {
			return nil, conflict(res, name)
		}
	}
	if uid := m.GetUID(); uid != "" && uid != om.GetUID() {
		return nil, uidPreconditionFailed(res, name, uid, om.GetUID())
	}
	obj.GetObjectKind().SetGroupVersionKind(res.Kind)
	m.SetResourceVersion(formatRV(rev))
	m.SetUID(om.GetUID())
	m.SetCreationTimestamp(om.GetCreationTimestamp())
	m.SetGeneration(om.GetGeneration())
	m.SetDeletionTimestamp(om.GetDeletionTimestamp())
	m.SetDeletionGracePeriodSeconds(om.GetDeletionGracePeriodSeconds())
	if res.Default != nil {
		res.Default(obj)
	}
	if res.PrepareForUpdate != nil {
		res.PrepareForUpdate(obj, old)
	}
	errs := validation.ValidateObjectMetaAccessor(m, res.Namespaced, res.nameFunc(), metadataPath)
	errs = append(errs, validation.ValidateObjectMetaAccessorUpdate(m, om, metadataPath)...)
	if res.ValidateUpdate != nil {
		errs = append(errs, res.ValidateUpdate(obj, old)...)
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(res.groupKind(), name, errs)
	}
	return obj, nil
}

// Delete deletes the object ns/name and returns its last state. First the
// propagation policy of opts sets the garbage collector's finalizers (see
// gcFinalizers). An object with finalizers is not removed: Delete sets its
// deletionTimestamp (now, second precision), deletionGracePeriodSeconds 0
// and bumps its generation, and returns it; it goes when an update removes
// its last finalizer. Deleting an object already being deleted returns it
// unchanged, unless the policy removes its last finalizer: then it goes.
// Preconditions that do not match are 409 Conflict, with kube-apiserver's
// wording.
func (s *Store) Delete(ctx context.Context, res *Resource, ns, name string, opts DeleteOptions) (runtime.Object, error) {
	if !res.Namespaced {
		ns = ""
	}
	k, err := objectKey(res, ns, name)
	if err != nil {
		return nil, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, storeError(res, name, expiredList, err)
		}
		cur, kv, err := s.read(ctx, res, k, name, raftstore.ReadOptions{})
		if err != nil {
			return nil, err
		}
		m, _ := meta.Accessor(cur)
		if err := checkPreconditions(res, name, opts.Preconditions, m); err != nil {
			return nil, err
		}
		var grace int64
		if res.GracePeriod != nil {
			grace = res.GracePeriod(cur, opts.GracePeriodSeconds)
		}
		finalizers, gcChanged := gcFinalizers(m, opts, res.OrphanByDefault)
		if gcChanged {
			m.SetFinalizers(finalizers)
		}
		marked := m.GetDeletionTimestamp() != nil
		held, changed := s.holdForDeletion(m, grace, res.finalizing(cur))
		changed = changed || gcChanged
		if held && !marked && res.PrepareForDelete != nil {
			res.PrepareForDelete(cur)
		}
		if !held {
			if opts.DryRun {
				return cur, nil
			}
			_, err = s.deleteKey(ctx, res, k, kv.ModRevision, cur)
			if errors.Is(err, raftstore.ErrConflict) || errors.Is(err, raftstore.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return nil, storeError(res, name, expiredList, err)
			}
			return cur, nil
		}
		if !changed || opts.DryRun {
			return cur, nil
		}
		m.SetResourceVersion("")
		data, err := s.codec.encode(cur)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		written, err := s.kv.Update(ctx, k, data, kv.ModRevision)
		if errors.Is(err, raftstore.ErrConflict) || errors.Is(err, raftstore.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, storeError(res, name, expiredList, err)
		}
		m.SetResourceVersion(formatRV(written.ModRevision))
		return cur, nil
	}
}

// deleteKey deletes the object cur stored at k with mod revision expected,
// and the keys it holds, and returns the revision of the delete.
func (s *Store) deleteKey(ctx context.Context, res *Resource, k string, expected int64, cur runtime.Object) (int64, error) {
	if res.Reservations != nil {
		return s.writeReserving(ctx, res, k, nil, expected, nil, cur)
	}
	_, rev, err := s.kv.Delete(ctx, k, expected)
	return rev, err
}

// holdForDeletion decides what a delete with grace period grace does to
// the stored object m, as kube-apiserver does: an object with finalizers
// (finalizing: its kind's own, see Resource.Finalizing) or a grace period stays, marked with deletionTimestamp (now plus the grace
// period) and deletionGracePeriodSeconds, and generation bumped; a delete
// of an object already marked may only shorten its grace period. held
// false means the object goes now; changed says m was modified.
func (s *Store) holdForDeletion(m metav1.Object, grace int64, finalizing bool) (held, changed bool) {
	finalizers := len(m.GetFinalizers()) > 0 || finalizing
	if ts := m.GetDeletionTimestamp(); ts != nil {
		if !finalizers && zeroGrace(m) {
			return false, false // its last finalizer was just removed
		}
		cur := int64(0)
		if g := m.GetDeletionGracePeriodSeconds(); g != nil {
			cur = *g
		}
		switch {
		case grace >= cur:
			return true, false // a longer or equal grace period changes nothing
		case grace == 0 && !finalizers:
			return false, false
		}
		// Shorten the grace period.
		deadline := metav1.NewTime(s.now().Add(time.Duration(grace) * time.Second)).Rfc3339Copy()
		if deadline.Before(ts) {
			m.SetDeletionTimestamp(&deadline)
		}
		m.SetDeletionGracePeriodSeconds(&grace)
		return true, true
	}
	if !finalizers && grace == 0 {
		return false, false
	}
	deadline := metav1.NewTime(s.now().Add(time.Duration(grace) * time.Second)).Rfc3339Copy()
	m.SetDeletionTimestamp(&deadline)
	m.SetDeletionGracePeriodSeconds(&grace)
	if g := m.GetGeneration(); g > 0 {
		m.SetGeneration(g + 1)
	}
	return true, true
}

// finalizing reports whether obj has finalizers of its kind's own
// (Resource.Finalizing) left.
func (r *Resource) finalizing(obj runtime.Object) bool {
	return r.Finalizing != nil && r.Finalizing(obj)
}

// zeroGrace reports whether an object being deleted has no grace period
// left to wait for.
func zeroGrace(m metav1.Object) bool {
	g := m.GetDeletionGracePeriodSeconds()
	return g == nil || *g == 0
}

// uidPreconditionFailed is the 409 for an object whose uid is not the one required.
func uidPreconditionFailed(res *Resource, name string, want, got types.UID) error {
	return apierrors.NewConflict(res.GroupResource, name,
		//lint:ignore ST1005 Kubernetes' own wording, which clients match
		fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", want, got))
}

func checkPreconditions(res *Resource, name string, p *metav1.Preconditions, m metav1.Object) error {
	if p == nil {
		return nil
	}
	if p.UID != nil && *p.UID != m.GetUID() {
		return uidPreconditionFailed(res, name, *p.UID, m.GetUID())
	}
	if p.ResourceVersion != nil && *p.ResourceVersion != m.GetResourceVersion() {
		return apierrors.NewConflict(res.GroupResource, name,
			//lint:ignore ST1005 Kubernetes' own wording, which clients match
			fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, m.GetResourceVersion()))
	}
	return nil
}

// read returns the object at k and its stored version, or 404.
func (s *Store) read(ctx context.Context, res *Resource, k, name string, ro raftstore.ReadOptions) (runtime.Object, *raftstore.KeyValue, error) {
	kv, _, err := s.kv.Get(ctx, k, ro)
	if err != nil {
		return nil, nil, storeError(res, name, expiredList, err)
	}
	if kv == nil {
		return nil, nil, apierrors.NewNotFound(res.GroupResource, name)
	}
	obj, err := s.decode(res, kv.Value, kv.ModRevision)
	if err != nil {
		return nil, nil, err
	}
	return obj, kv, nil
}

// decode decodes a stored value and sets its resourceVersion to rev.
func (s *Store) decode(res *Resource, data []byte, rev int64) (runtime.Object, error) {
	obj, err := s.codec.decode(res, data)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	m.SetResourceVersion(formatRV(rev))
	return obj, nil
}
