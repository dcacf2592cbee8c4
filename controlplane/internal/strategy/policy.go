package strategy

// The policy/v1 kinds: PodDisruptionBudgets, as kube-apiserver 1.32
// validates them.

import (
	policyv1 "k8s.io/api/policy/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var unhealthyPodEvictionPolicies = []policyv1.UnhealthyPodEvictionPolicyType{policyv1.AlwaysAllow, policyv1.IfHealthyBudget}

func validatePodDisruptionBudget(b *policyv1.PodDisruptionBudget) field.ErrorList {
	var errs field.ErrorList
	spec, specPath := &b.Spec, field.NewPath("spec")
	if spec.MinAvailable != nil && spec.MaxUnavailable != nil {
		errs = append(errs, field.Invalid(specPath, spec, "minAvailable and maxUnavailable cannot be both set"))
	}
	for _, f := range []struct {
		name string
		v    *intstr.IntOrString
	}{{"minAvailable", spec.MinAvailable}, {"maxUnavailable", spec.MaxUnavailable}} {
		if f.v != nil {
			errs = append(errs, validatePositiveIntOrPercent(*f.v, specPath.Child(f.name))...)
			errs = append(errs, notMoreThan100Percent(*f.v, specPath.Child(f.name))...)
		}
	}
	errs = append(errs, metav1validation.ValidateLabelSelector(spec.Selector, metav1validation.LabelSelectorValidationOptions{}, specPath.Child("selector"))...)
	if p := spec.UnhealthyPodEvictionPolicy; p != nil && *p != policyv1.AlwaysAllow && *p != policyv1.IfHealthyBudget {
		errs = append(errs, field.NotSupported(specPath.Child("unhealthyPodEvictionPolicy"), *p, unhealthyPodEvictionPolicies))
	}
	return errs
}

func validatePodDisruptionBudgetUpdate(b, _ *policyv1.PodDisruptionBudget) field.ErrorList {
	return validatePodDisruptionBudget(b)
}
