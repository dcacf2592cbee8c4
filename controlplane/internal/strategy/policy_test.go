package strategy

import (
	"testing"

	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func newPodDisruptionBudget() *policyv1.PodDisruptionBudget {
	min := intstr.FromInt32(2)
	return &policyv1.PodDisruptionBudget{ObjectMeta: objectMeta("web"), Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &min, Selector: testSelector()}}
}

func TestValidatePodDisruptionBudget(t *testing.T) {
	both := newPodDisruptionBudget()
	max := intstr.FromString("10%")
	both.Spec.MaxUnavailable = &max
	checkErrs(t, Validate(both), "spec: Invalid value")

	over := newPodDisruptionBudget()
	pct := intstr.FromString("120%")
	over.Spec.MinAvailable = &pct
	checkMessage(t, Validate(over), "spec.minAvailable: Invalid value: \"120%\": must not be greater than 100%")

	policy := newPodDisruptionBudget()
	p := policyv1.UnhealthyPodEvictionPolicyType("Sometimes")
	policy.Spec.UnhealthyPodEvictionPolicy = &p
	checkMessage(t, Validate(policy), `spec.unhealthyPodEvictionPolicy: Unsupported value: "Sometimes": supported values: "AlwaysAllow", "IfHealthyBudget"`)
}
