package strategy

import (
	"fmt"
	"reflect"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// kind holds the rules of one Go type. The functions take objects of that
// type only; the exported entry points check the type first.
type kind struct {
	typ            reflect.Type
	def            func(obj runtime.Object)
	validate       func(obj runtime.Object) field.ErrorList
	validateUpdate func(obj, old runtime.Object) field.ErrorList
	// validateStatus checks a write through the status subresource; nil
	// for kinds whose status writes are checked as updates.
	validateStatus func(obj, old runtime.Object) field.ErrorList
}

// of builds the kind of T from typed functions; def may be nil.
func of[T runtime.Object](def func(T), validate func(T) field.ErrorList, validateUpdate func(obj, old T) field.ErrorList) kind {
	k := kind{
		typ:            reflect.TypeFor[T](),
		validate:       func(obj runtime.Object) field.ErrorList { return validate(obj.(T)) },
		validateUpdate: func(obj, old runtime.Object) field.ErrorList { return validateUpdate(obj.(T), old.(T)) },
	}
	if def != nil {
		k.def = func(obj runtime.Object) { def(obj.(T)) }
	}
	return k
}

// withStatus returns k with the check of its status writes.
func withStatus[T runtime.Object](k kind, validateStatus func(obj, old T) field.ErrorList) kind {
	k.validateStatus = func(obj, old runtime.Object) field.ErrorList { return validateStatus(obj.(T), old.(T)) }
	return k
}

// kinds lists every kind this package has rules for. It is never modified.
var kinds = []kind{
	withStatus(of(defaultPod, validatePod, validatePodUpdate), validatePodStatusUpdate),
	of(defaultService, validateService, validateServiceUpdate),
	of(defaultSecret, validateSecret, validateSecretUpdate),
	of(nil, validateConfigMap, validateConfigMapUpdate),
	of(defaultNamespace, validateNamespace, validateNamespaceUpdate),
	of(defaultNode, validateNode, validateNodeUpdate),
	of(nil, validateServiceAccount, validateServiceAccountUpdate),
	of(defaultEndpoints, validateEndpoints, validateEndpointsUpdate),
	of(nil, validateEvent, validateEventUpdate),
	of(defaultDeployment, validateDeployment, validateDeploymentUpdate),
	of(defaultReplicaSet, validateReplicaSet, validateReplicaSetUpdate),
	of(defaultStatefulSet, validateStatefulSet, validateStatefulSetUpdate),
	of(defaultDaemonSet, validateDaemonSet, validateDaemonSetUpdate),
	of(nil, validateControllerRevision, validateControllerRevisionUpdate),
	of(defaultEndpointSlice, validateEndpointSlice, validateEndpointSliceUpdate),
	of(nil, validateLease, validateLeaseUpdate),
	of(defaultJob, validateJob, validateJobUpdate),
	of(defaultCronJob, validateCronJob, validateCronJobUpdate),
	of(nil, validatePodDisruptionBudget, validatePodDisruptionBudgetUpdate),
	of(nil, validateRole, validateRoleUpdate),
	of(nil, validateClusterRole, validateClusterRoleUpdate),
	of(defaultRoleBinding, validateRoleBinding, validateRoleBindingUpdate),
	of(defaultClusterRoleBinding, validateClusterRoleBinding, validateClusterRoleBindingUpdate),
}

// Compile-time proof that the kinds above are the served API types.
var (
	_ runtime.Object = (*corev1.Pod)(nil)
	_ runtime.Object = (*appsv1.Deployment)(nil)
	_ runtime.Object = (*discoveryv1.EndpointSlice)(nil)
	_ runtime.Object = (*coordinationv1.Lease)(nil)
)

func lookup(obj runtime.Object) (kind, bool) {
	t := reflect.TypeOf(obj)
	for _, k := range kinds {
		if k.typ == t {
			return k, true
		}
	}
	return kind{}, false
}

// Default sets the defaulted fields of obj in place, as the kube-apiserver
// v1 defaulters do. It does nothing for kinds this package does not know.
// obj must not be a nil pointer.
func Default(obj runtime.Object) {
	if k, ok := lookup(obj); ok && k.def != nil {
		k.def(obj)
	}
}

// Validate returns the errors of obj on create, with Kubernetes' field
// paths. obj is expected to be defaulted. It returns nil for kinds this
// package does not know.
func Validate(obj runtime.Object) field.ErrorList {
	if k, ok := lookup(obj); ok {
		return k.validate(obj)
	}
	return nil
}

// ValidateUpdate returns the errors of obj replacing old: everything
// Validate checks plus the kind's immutability rules. obj and old must be
// the same kind; obj is expected to be defaulted. It returns nil for kinds
// this package does not know.
func ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	return validateUpdateWith(obj, old, func(k kind) func(obj, old runtime.Object) field.ErrorList { return k.validateUpdate })
}

// ValidateStatusUpdate returns the errors of a write through the status
// subresource: obj is old with another status (and labels and
// annotations), as the status subresource prepares it. Kinds with rules
// of their own for status writes (pods, as kube-apiserver's
// ValidatePodStatusUpdate) check the status; the spec, the stored one,
// is not checked again. Other kinds are checked as by ValidateUpdate.
func ValidateStatusUpdate(obj, old runtime.Object) field.ErrorList {
	return validateUpdateWith(obj, old, func(k kind) func(obj, old runtime.Object) field.ErrorList {
		if k.validateStatus != nil {
			return k.validateStatus
		}
		return k.validateUpdate
	})
}

// validateUpdateWith checks obj replacing old with the rules rules picks
// from their kind: nil for a kind this package does not know, an internal
// error when old is of another kind.
func validateUpdateWith(obj, old runtime.Object, rules func(kind) func(obj, old runtime.Object) field.ErrorList) field.ErrorList {
	k, ok := lookup(obj)
	if !ok {
		return nil
	}
	if reflect.TypeOf(old) != k.typ {
		return field.ErrorList{field.InternalError(nil, fmt.Errorf("strategy: update of %v from %T", k.typ, old))}
	}
	return rules(k)(obj, old)
}
