package authz

import (
	"slices"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// autoupdate says whether a stored default may be brought up to date: not
// when its AutoupdateAnnotation says "false", as in kube-apiserver.
func autoupdate(annotations map[string]string) bool {
	return annotations[AutoupdateAnnotation] != "false"
}

// ReconcileClusterRole returns current with what def grants added (rules,
// aggregation selectors) and whether that changed it; current is not
// modified. Nothing is ever removed: an administrator's additions stay.
func ReconcileClusterRole(current *rbacv1.ClusterRole, def *rbacv1.ClusterRole) (*rbacv1.ClusterRole, bool) {
	if !autoupdate(current.Annotations) {
		return current, false
	}
	out := current.DeepCopy()
	changed := false
	for _, r := range def.Rules {
		if !slices.ContainsFunc(out.Rules, func(have rbacv1.PolicyRule) bool { return equality.Semantic.DeepEqual(have, r) }) {
			out.Rules, changed = append(out.Rules, r), true
		}
	}
	if def.AggregationRule != nil {
		if out.AggregationRule == nil {
			out.AggregationRule = &rbacv1.AggregationRule{}
		}
		for _, sel := range def.AggregationRule.ClusterRoleSelectors {
			if !slices.ContainsFunc(out.AggregationRule.ClusterRoleSelectors, func(have metav1.LabelSelector) bool { return equality.Semantic.DeepEqual(have, sel) }) {
				out.AggregationRule.ClusterRoleSelectors, changed = append(out.AggregationRule.ClusterRoleSelectors, sel), true
			}
		}
	}
	return out, changed
}

// ReconcileClusterRoleBinding returns current with def's subjects added
// and whether that changed it; current is not modified.
func ReconcileClusterRoleBinding(current *rbacv1.ClusterRoleBinding, def *rbacv1.ClusterRoleBinding) (*rbacv1.ClusterRoleBinding, bool) {
	if !autoupdate(current.Annotations) {
		return current, false
	}
	out := current.DeepCopy()
	changed := false
	for _, s := range def.Subjects {
		if !slices.Contains(out.Subjects, s) {
			out.Subjects, changed = append(out.Subjects, s), true
		}
	}
	return out, changed
}
