package strategy

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newRole() *rbacv1.Role {
	return &rbacv1.Role{ObjectMeta: objectMeta("pod-reader"), Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
	}}
}

func newClusterRole() *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "system:metrics-reader"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, ResourceNames: []string{"web"}, Verbs: []string{"get"}},
		{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}},
	}}
}

func newRoleBinding() *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{ObjectMeta: objectMeta("read-pods"),
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
		Subjects: []rbacv1.Subject{
			{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "jane"},
			{Kind: rbacv1.ServiceAccountKind, Name: "default"},
		}}
}

func newClusterRoleBinding() *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "metrics"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:metrics-reader"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "prometheus", Namespace: "monitoring"}}}
}

func TestDefaultBindings(t *testing.T) {
	b := newRoleBinding()
	b.RoleRef.APIGroup = ""
	b.Subjects = append(b.Subjects, rbacv1.Subject{Kind: rbacv1.GroupKind, Name: "devs"})
	b.Subjects[0].APIGroup = ""
	b = defaulted(b)
	if b.RoleRef.APIGroup != rbacv1.GroupName || b.Subjects[0].APIGroup != rbacv1.GroupName || b.Subjects[2].APIGroup != rbacv1.GroupName {
		t.Errorf("role binding defaults: got %+v", b)
	}
	if b.Subjects[1].APIGroup != "" {
		t.Errorf("a service account subject got apiGroup %q, want none", b.Subjects[1].APIGroup)
	}
	cb := newClusterRoleBinding()
	cb.RoleRef.APIGroup = ""
	if cb = defaulted(cb); cb.RoleRef.APIGroup != rbacv1.GroupName {
		t.Errorf("cluster role binding roleRef.apiGroup: got %q", cb.RoleRef.APIGroup)
	}
}

func TestValidateRoles(t *testing.T) {
	noVerbs := newRole()
	noVerbs.Rules[0].Verbs = nil
	checkMessage(t, Validate(noVerbs), "rules[0].verbs: Required value: verbs must contain at least one value")

	bare := newRole()
	bare.Rules = []rbacv1.PolicyRule{{Verbs: []string{"get"}}}
	checkErrs(t, Validate(bare), "rules[0].apiGroups: Required value", "rules[0].resources: Required value")
	checkMessage(t, Validate(bare), "rules[0].apiGroups: Required value: resource rules must supply at least one api group")

	urls := newRole()
	urls.Rules = []rbacv1.PolicyRule{{NonResourceURLs: []string{"/healthz"}, Resources: []string{"pods"}, Verbs: []string{"get"}}}
	checkErrs(t, Validate(urls), "rules[0].nonResourceURLs: Invalid value", "rules[0].nonResourceURLs: Invalid value")
	checkMessage(t, Validate(urls), `rules[0].nonResourceURLs: Invalid value: ["/healthz"]: namespaced rules cannot apply to non-resource URLs`)

	names := newRole()
	names.Rules[0].Resources, names.Rules[0].ResourceNames = []string{"pods", "services"}, []string{"web"}
	checkMessage(t, Validate(names), "rules[0].resourceNames: Required value: resource names cannot apply to multiple resources")

	// A cluster role may name non-resource URLs, and aggregate others.
	checkErrs(t, Validate(newClusterRole()))
	agg := newClusterRole()
	agg.AggregationRule = &rbacv1.AggregationRule{}
	checkMessage(t, Validate(agg), "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil")
	agg.AggregationRule.ClusterRoleSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"rbac.example.com/aggregate-to-monitoring": "true"}}}
	checkErrs(t, Validate(agg))
	agg.AggregationRule.ClusterRoleSelectors[0].MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "Near"}}
	checkErrs(t, Validate(agg), "aggregationRule.clusterRoleSelectors[0].matchExpressions[0].operator: Invalid value", "aggregationRule.clusterRoleSelectors[0]: Invalid value")
}

func TestValidateBindings(t *testing.T) {
	ref := newRoleBinding()
	ref.RoleRef = rbacv1.RoleRef{APIGroup: "rbac.example.com", Kind: "Policy"}
	checkErrs(t, Validate(ref), "roleRef.apiGroup: Unsupported value", "roleRef.kind: Unsupported value", "roleRef.name: Required value")
	checkMessage(t, Validate(ref), `roleRef.kind: Unsupported value: "Policy": supported values: "Role", "ClusterRole"`)

	cluster := newClusterRoleBinding()
	cluster.RoleRef.Kind = "Role"
	checkMessage(t, Validate(cluster), `roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"`)

	subjects := newRoleBinding()
	subjects.Subjects = []rbacv1.Subject{
		{Kind: rbacv1.UserKind, Name: "jane"},                        // no apiGroup (defaulting would set it)
		{Kind: rbacv1.ServiceAccountKind, Name: "Web_SA"},            // not a DNS subdomain
		{Kind: rbacv1.ServiceAccountKind, APIGroup: "v1", Name: "a"}, // service accounts are in the core group
		{Kind: "Robot", Name: "r2"},
		{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName},
	}
	checkErrs(t, Validate(subjects), "subjects[0].apiGroup: Unsupported value", "subjects[1].name: Invalid value",
		"subjects[2].apiGroup: Unsupported value", "subjects[3].kind: Unsupported value",
		"subjects[4].name: Required value", "subjects[4].name: Invalid value")
	checkMessage(t, Validate(subjects), `subjects[3].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"`)
	checkMessage(t, Validate(subjects), `subjects[4].name: Invalid value: "": group name cannot be empty`)

	// A namespaced binding's service account defaults to its namespace; a
	// cluster binding's must say which.
	noNS := newClusterRoleBinding()
	noNS.Subjects[0].Namespace = ""
	checkMessage(t, Validate(noNS), "subjects[0].namespace: Required value")

	moved := newRoleBinding()
	moved.RoleRef.Name = "pod-writer"
	checkErrs(t, ValidateUpdate(moved, newRoleBinding()), "roleRef: Invalid value")
	movedCluster := newClusterRoleBinding()
	movedCluster.RoleRef.Name = "view"
	checkMessage(t, ValidateUpdate(movedCluster, newClusterRoleBinding()),
		`roleRef: Invalid value: {"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"}: cannot change roleRef`)
	more := newRoleBinding()
	more.Subjects = append(more.Subjects, rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "devs"})
	checkErrs(t, ValidateUpdate(more, newRoleBinding()))
}

func TestRBACName(t *testing.T) {
	for name, valid := range map[string]bool{"system:controller:job": true, "Pod Reader": true, "a/b": false, "..": false, "x%y": false} {
		if got := len(RBACName(name, false)) == 0; got != valid {
			t.Errorf("RBACName(%q): valid %v, want %v", name, got, valid)
		}
	}
}
