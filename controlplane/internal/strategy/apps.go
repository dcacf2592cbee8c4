package strategy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// replicas reads a defaulted replica count (nil only if Default was
// skipped, which counts as 0).
func replicas(r *int32) int64 {
	if r == nil {
		return 0
	}
	return int64(*r)
}

// validateSelector checks a workload's selector: required, valid and not
// empty. It returns the parsed selector, or nil when it does not parse.
func validateSelector(sel *metav1.LabelSelector, what string, fldPath *field.Path) (labels.Selector, field.ErrorList) {
	var errs field.ErrorList
	if sel == nil {
		errs = append(errs, field.Required(fldPath, ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, fldPath)...)
		if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
			errs = append(errs, field.Invalid(fldPath, sel, fmt.Sprintf("empty selector is invalid for %s", what)))
		}
	}
	// A nil selector parses as one that selects nothing, so the template
	// check below reports it too, as kube-apiserver does.
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, append(errs, field.Invalid(fldPath, sel, "invalid label selector"))
	}
	return s, errs
}

// validateWorkloadTemplate checks the pod template of a workload kind
// (ReplicaSet, Deployment, DaemonSet): labels selected, a valid pod spec
// that always restarts and has no deadline.
func validateWorkloadTemplate(t *corev1.PodTemplateSpec, sel labels.Selector, kind string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if sel != nil && !sel.Empty() && !sel.Matches(labels.Set(t.Labels)) {
		errs = append(errs, field.Invalid(fldPath.Child("metadata", "labels"), t.Labels, "`selector` does not match template `labels`"))
	}
	errs = append(errs, ValidatePodTemplate(t, fldPath)...)
	return append(errs, validateAlwaysRestarts(&t.Spec, kind, fldPath.Child("spec"))...)
}

func validateAlwaysRestarts(spec *corev1.PodSpec, kind string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(fldPath.Child("restartPolicy"), spec.RestartPolicy, []string{string(corev1.RestartPolicyAlways)}))
	}
	if spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(fldPath.Child("activeDeadlineSeconds"), fmt.Sprintf("activeDeadlineSeconds in %s is not Supported", kind)))
	}
	return errs
}

func validateRevisionHistoryLimit(l *int32, fldPath *field.Path) field.ErrorList {
	if l == nil {
		return nil
	}
	return validateNonnegative(int64(*l), fldPath)
}

func validateDeployment(d *appsv1.Deployment) field.ErrorList {
	spec := &d.Spec
	specPath := field.NewPath("spec")
	errs := validateNonnegative(replicas(spec.Replicas), specPath.Child("replicas"))
	sel, sErrs := validateSelector(spec.Selector, "deployment", specPath.Child("selector"))
	errs = append(errs, sErrs...)
	// kube-apiserver validates a deployment's template with the replica
	// set's rules, wording included.
	errs = append(errs, validateWorkloadTemplate(&spec.Template, sel, "ReplicaSet", specPath.Child("template"))...)

	strategyPath := specPath.Child("strategy")
	switch st := &spec.Strategy; st.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if st.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(strategyPath.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		if st.RollingUpdate == nil {
			errs = append(errs, field.Required(strategyPath.Child("rollingUpdate"), "this should be defaulted and never be nil"))
		} else {
			errs = append(errs, validateRollingUpdateDeployment(st.RollingUpdate, strategyPath.Child("rollingUpdate"))...)
		}
	default:
		errs = append(errs, field.NotSupported(strategyPath, st.Type,
			[]string{string(appsv1.RecreateDeploymentStrategyType), string(appsv1.RollingUpdateDeploymentStrategyType)}))
	}
	errs = append(errs, validateNonnegative(int64(spec.MinReadySeconds), specPath.Child("minReadySeconds"))...)
	errs = append(errs, validateRevisionHistoryLimit(spec.RevisionHistoryLimit, specPath.Child("revisionHistoryLimit"))...)
	if pd := spec.ProgressDeadlineSeconds; pd != nil {
		errs = append(errs, validateNonnegative(int64(*pd), specPath.Child("progressDeadlineSeconds"))...)
		if *pd <= spec.MinReadySeconds {
			errs = append(errs, field.Invalid(specPath.Child("progressDeadlineSeconds"), *pd, "must be greater than minReadySeconds"))
		}
	}
	return errs
}

func validateRollingUpdateDeployment(ru *appsv1.RollingUpdateDeployment, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	maxUnavailable, maxSurge := intOrZero(ru.MaxUnavailable), intOrZero(ru.MaxSurge)
	errs = append(errs, validatePositiveIntOrPercent(maxUnavailable, fldPath.Child("maxUnavailable"))...)
	errs = append(errs, validatePositiveIntOrPercent(maxSurge, fldPath.Child("maxSurge"))...)
	if intOrPercentValue(maxUnavailable) == 0 && intOrPercentValue(maxSurge) == 0 {
		errs = append(errs, field.Invalid(fldPath.Child("maxUnavailable"), maxUnavailable, "may not be 0 when `maxSurge` is 0"))
	}
	return append(errs, notMoreThan100Percent(maxUnavailable, fldPath.Child("maxUnavailable"))...)
}

func intOrZero(v *intstr.IntOrString) intstr.IntOrString {
	if v == nil {
		return intstr.FromInt32(0)
	}
	return *v
}

// validatePositiveIntOrPercent accepts a non-negative integer or a
// percentage such as "25%".
func validatePositiveIntOrPercent(v intstr.IntOrString, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch v.Type {
	case intstr.String:
		for _, msg := range validation.IsValidPercent(v.StrVal) {
			errs = append(errs, field.Invalid(fldPath, v, msg))
		}
	case intstr.Int:
		errs = append(errs, validateNonnegative(int64(v.IntValue()), fldPath)...)
	default:
		errs = append(errs, field.Invalid(fldPath, v, "must be an integer or percentage (e.g '5%%')"))
	}
	return errs
}

// percent returns the value of a valid percentage.
func percent(v intstr.IntOrString) (int, bool) {
	if v.Type != intstr.String || len(validation.IsValidPercent(v.StrVal)) != 0 {
		return 0, false
	}
	n, _ := strconv.Atoi(v.StrVal[:len(v.StrVal)-1])
	return n, true
}

func intOrPercentValue(v intstr.IntOrString) int {
	if n, ok := percent(v); ok {
		return n
	}
	return v.IntValue()
}

func notMoreThan100Percent(v intstr.IntOrString, fldPath *field.Path) field.ErrorList {
	if n, ok := percent(v); ok && n > 100 {
		return field.ErrorList{field.Invalid(fldPath, v, "must not be greater than 100%")}
	}
	return nil
}

// validateDeploymentUpdate keeps the selector: in apps/v1 it is immutable.
func validateDeploymentUpdate(d, old *appsv1.Deployment) field.ErrorList {
	errs := validateImmutable(d.Spec.Selector, old.Spec.Selector, field.NewPath("spec", "selector"))
	return append(errs, validateDeployment(d)...)
}

func validateReplicaSet(rs *appsv1.ReplicaSet) field.ErrorList {
	spec := &rs.Spec
	specPath := field.NewPath("spec")
	errs := validateNonnegative(replicas(spec.Replicas), specPath.Child("replicas"))
	errs = append(errs, validateNonnegative(int64(spec.MinReadySeconds), specPath.Child("minReadySeconds"))...)
	// sic: kube-apiserver says "deployment" here too.
	sel, sErrs := validateSelector(spec.Selector, "deployment", specPath.Child("selector"))
	errs = append(errs, sErrs...)
	return append(errs, validateWorkloadTemplate(&spec.Template, sel, "ReplicaSet", specPath.Child("template"))...)
}

func validateReplicaSetUpdate(rs, old *appsv1.ReplicaSet) field.ErrorList {
	errs := validateImmutable(rs.Spec.Selector, old.Spec.Selector, field.NewPath("spec", "selector"))
	return append(errs, validateReplicaSet(rs)...)
}

func validateStatefulSet(s *appsv1.StatefulSet) field.ErrorList {
	var errs field.ErrorList
	spec := &s.Spec
	specPath := field.NewPath("spec")
	switch spec.PodManagementPolicy {
	case appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement:
	case "":
		errs = append(errs, field.Required(specPath.Child("podManagementPolicy"), ""))
	default:
		errs = append(errs, field.Invalid(specPath.Child("podManagementPolicy"), spec.PodManagementPolicy,
			fmt.Sprintf("must be '%s' or '%s'", appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement)))
	}
	usPath := specPath.Child("updateStrategy")
	switch us := &spec.UpdateStrategy; us.Type {
	case "":
		errs = append(errs, field.Required(usPath, ""))
	case appsv1.OnDeleteStatefulSetStrategyType:
		if us.RollingUpdate != nil {
			errs = append(errs, field.Invalid(usPath.Child("rollingUpdate"), us.RollingUpdate,
				fmt.Sprintf("only allowed for updateStrategy '%s'", appsv1.RollingUpdateStatefulSetStrategyType)))
		}
	case appsv1.RollingUpdateStatefulSetStrategyType:
		if ru := us.RollingUpdate; ru != nil {
			ruPath := usPath.Child("rollingUpdate")
			if ru.Partition != nil {
				errs = append(errs, validateNonnegative(int64(*ru.Partition), ruPath.Child("partition"))...)
			}
			if mu := ru.MaxUnavailable; mu != nil {
				errs = append(errs, validatePositiveIntOrPercent(*mu, ruPath.Child("maxUnavailable"))...)
				if intOrPercentValue(*mu) == 0 {
					errs = append(errs, field.Invalid(ruPath.Child("maxUnavailable"), *mu, "cannot be 0"))
				}
				errs = append(errs, notMoreThan100Percent(*mu, ruPath.Child("maxUnavailable"))...)
			}
		}
	default:
		errs = append(errs, field.Invalid(usPath, spec.UpdateStrategy, fmt.Sprintf("must be '%s' or '%s'",
			appsv1.RollingUpdateStatefulSetStrategyType, appsv1.OnDeleteStatefulSetStrategyType)))
	}
	if p := spec.PersistentVolumeClaimRetentionPolicy; p != nil {
		pPath := specPath.Child("persistentVolumeClaimRetentionPolicy")
		for _, f := range []struct {
			name  string
			value appsv1.PersistentVolumeClaimRetentionPolicyType
		}{{"whenDeleted", p.WhenDeleted}, {"whenScaled", p.WhenScaled}} {
			if f.value != appsv1.RetainPersistentVolumeClaimRetentionPolicyType && f.value != appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
				errs = append(errs, field.NotSupported(pPath.Child(f.name), f.value, []string{
					string(appsv1.RetainPersistentVolumeClaimRetentionPolicyType), string(appsv1.DeletePersistentVolumeClaimRetentionPolicyType)}))
			}
		}
	}
	errs = append(errs, validateNonnegative(replicas(spec.Replicas), specPath.Child("replicas"))...)
	errs = append(errs, validateNonnegative(int64(spec.MinReadySeconds), specPath.Child("minReadySeconds"))...)
	if spec.Ordinals != nil {
		errs = append(errs, validateNonnegative(int64(spec.Ordinals.Start), specPath.Child("ordinals.start"))...)
	}
	errs = append(errs, validateRevisionHistoryLimit(spec.RevisionHistoryLimit, specPath.Child("revisionHistoryLimit"))...)
	sel, sErrs := validateSelector(spec.Selector, "statefulset", specPath.Child("selector"))
	errs = append(errs, sErrs...)

	tPath := specPath.Child("template")
	if sel != nil && !sel.Empty() && !sel.Matches(labels.Set(spec.Template.Labels)) {
		errs = append(errs, field.Invalid(tPath.Child("metadata", "labels"), spec.Template.Labels, "`selector` does not match template `labels`"))
	}
	// kube-apiserver skips the pod spec of a stateful set's template
	// because its volumes include the claim templates; with those counted
	// as volumes the spec is checked like any other.
	claims := make([]string, 0, len(spec.VolumeClaimTemplates))
	for i, c := range spec.VolumeClaimTemplates {
		if c.Name == "" {
			errs = append(errs, field.Required(specPath.Child("volumeClaimTemplates").Index(i).Child("metadata", "name"), ""))
		}
		claims = append(claims, c.Name)
	}
	errs = append(errs, metav1validation.ValidateLabels(spec.Template.Labels, tPath.Child("labels"))...)
	errs = append(errs, apimachineryvalidation.ValidateAnnotations(spec.Template.Annotations, tPath.Child("annotations"))...)
	errs = append(errs, validatePodSpecWithClaims(&spec.Template.Spec, tPath.Child("spec"), false, claims)...)
	if len(spec.Template.Spec.EphemeralContainers) > 0 {
		errs = append(errs, field.Forbidden(tPath.Child("spec", "ephemeralContainers"), "ephemeral containers not allowed in pod template"))
	}
	return append(errs, validateAlwaysRestarts(&spec.Template.Spec, "StatefulSet", tPath.Child("spec"))...)
}

// validateStatefulSetUpdate allows only the fields a running set can
// follow to change.
func validateStatefulSetUpdate(s, old *appsv1.StatefulSet) field.ErrorList {
	errs := validateStatefulSet(s)
	munged := s.Spec.DeepCopy()
	munged.Replicas = old.Spec.Replicas
	munged.Template = old.Spec.Template
	munged.UpdateStrategy = old.Spec.UpdateStrategy
	munged.MinReadySeconds = old.Spec.MinReadySeconds
	munged.Ordinals = old.Spec.Ordinals
	munged.PersistentVolumeClaimRetentionPolicy = old.Spec.PersistentVolumeClaimRetentionPolicy
	if !apiequality.Semantic.DeepEqual(*munged, old.Spec) {
		errs = append(errs, field.Forbidden(field.NewPath("spec"), "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
	}
	return errs
}

func validateDaemonSet(ds *appsv1.DaemonSet) field.ErrorList {
	spec := &ds.Spec
	specPath := field.NewPath("spec")
	sel, errs := validateSelector(spec.Selector, "daemonset", specPath.Child("selector"))
	errs = append(errs, validateWorkloadTemplate(&spec.Template, sel, "DaemonSet", specPath.Child("template"))...)
	errs = append(errs, validateNonnegative(int64(spec.MinReadySeconds), specPath.Child("minReadySeconds"))...)

	usPath := specPath.Child("updateStrategy")
	switch us := &spec.UpdateStrategy; us.Type {
	case appsv1.OnDeleteDaemonSetStrategyType:
	case appsv1.RollingUpdateDaemonSetStrategyType:
		if us.RollingUpdate == nil {
			errs = append(errs, field.Required(usPath.Child("rollingUpdate"), ""))
			break
		}
		ruPath := usPath.Child("rollingUpdate")
		maxUnavailable, maxSurge := intOrZero(us.RollingUpdate.MaxUnavailable), intOrZero(us.RollingUpdate.MaxSurge)
		errs = append(errs, validatePositiveIntOrPercent(maxUnavailable, ruPath.Child("maxUnavailable"))...)
		errs = append(errs, validatePositiveIntOrPercent(maxSurge, ruPath.Child("maxSurge"))...)
		errs = append(errs, notMoreThan100Percent(maxUnavailable, ruPath.Child("maxUnavailable"))...)
		errs = append(errs, notMoreThan100Percent(maxSurge, ruPath.Child("maxSurge"))...)
		hasUnavailable, hasSurge := intOrPercentValue(maxUnavailable) != 0, intOrPercentValue(maxSurge) != 0
		switch {
		case hasUnavailable && hasSurge:
			errs = append(errs, field.Invalid(ruPath.Child("maxSurge"), maxSurge, "may not be set when maxUnavailable is non-zero"))
		case !hasUnavailable && !hasSurge:
			errs = append(errs, field.Required(ruPath.Child("maxUnavailable"), "cannot be 0 when maxSurge is 0"))
		}
	default:
		errs = append(errs, field.NotSupported(usPath, us.Type,
			[]string{string(appsv1.RollingUpdateDaemonSetStrategyType), string(appsv1.OnDeleteDaemonSetStrategyType)}))
	}
	return append(errs, validateRevisionHistoryLimit(spec.RevisionHistoryLimit, specPath.Child("revisionHistoryLimit"))...)
}

func validateDaemonSetUpdate(ds, old *appsv1.DaemonSet) field.ErrorList {
	errs := validateImmutable(ds.Spec.Selector, old.Spec.Selector, field.NewPath("spec", "selector"))
	return append(errs, validateDaemonSet(ds)...)
}

func validateControllerRevision(r *appsv1.ControllerRevision) field.ErrorList {
	var errs field.ErrorList
	if r.Data.Raw == nil && r.Data.Object == nil {
		errs = append(errs, field.Required(field.NewPath("data"), "data is mandatory"))
	}
	return append(errs, validateNonnegative(r.Revision, field.NewPath("revision"))...)
}

// validateControllerRevisionUpdate keeps the recorded data: a revision is
// a snapshot.
func validateControllerRevisionUpdate(r, old *appsv1.ControllerRevision) field.ErrorList {
	errs := validateControllerRevision(r)
	if !sameRaw(r.Data, old.Data) {
		errs = append(errs, field.Invalid(field.NewPath("data"), r.Data, fieldImmutableErrorMsg))
	}
	return errs
}

// sameRaw compares embedded objects by their JSON content, so that the
// same data sent back with other whitespace or key order is no change.
func sameRaw(a, b runtime.RawExtension) bool {
	if a.Raw == nil || b.Raw == nil {
		return apiequality.Semantic.DeepEqual(a, b)
	}
	var va, vb any
	if json.Unmarshal(a.Raw, &va) != nil || json.Unmarshal(b.Raw, &vb) != nil {
		return bytes.Equal(a.Raw, b.Raw)
	}
	return reflect.DeepEqual(va, vb)
}
