package authz

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"
)

func TestRequestAttributes(t *testing.T) {
	for _, tc := range []struct {
		method, url string
		want        Attributes
	}{
		{"GET", "/api/v1/namespaces/default/pods", Attributes{Verb: "list", ResourceRequest: true, Resource: "pods", Namespace: "default"}},
		{"GET", "/api/v1/namespaces/default/pods?watch=true&resourceVersion=5", Attributes{Verb: "watch", ResourceRequest: true, Resource: "pods", Namespace: "default"}},
		{"GET", "/api/v1/watch/namespaces/default/pods", Attributes{Verb: "watch", ResourceRequest: true, Resource: "pods", Namespace: "default"}},
		{"GET", "/api/v1/namespaces/default/pods/web-1", Attributes{Verb: "get", ResourceRequest: true, Resource: "pods", Namespace: "default", Name: "web-1"}},
		{"GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dweb-1", Attributes{Verb: "list", ResourceRequest: true, Resource: "pods", Namespace: "default", Name: "web-1"}},
		{"GET", "/api/v1/namespaces/default/pods/web-1/log", Attributes{Verb: "get", ResourceRequest: true, Resource: "pods", Subresource: "log", Namespace: "default", Name: "web-1"}},
		{"GET", "/api/v1/namespaces/default/pods/web-1/exec?command=sh", Attributes{Verb: "create", ResourceRequest: true, Resource: "pods", Subresource: "exec", Namespace: "default", Name: "web-1"}},
		{"POST", "/api/v1/namespaces/default/pods/web-1/binding", Attributes{Verb: "create", ResourceRequest: true, Resource: "pods", Subresource: "binding", Namespace: "default", Name: "web-1"}},
		{"PUT", "/apis/apps/v1/namespaces/shop/deployments/web/scale", Attributes{Verb: "update", ResourceRequest: true, APIGroup: "apps", Resource: "deployments", Subresource: "scale", Namespace: "shop", Name: "web"}},
		{"PATCH", "/api/v1/nodes/n1/status", Attributes{Verb: "patch", ResourceRequest: true, Resource: "nodes", Subresource: "status", Name: "n1"}},
		{"DELETE", "/apis/batch/v1/namespaces/x/jobs", Attributes{Verb: "deletecollection", ResourceRequest: true, APIGroup: "batch", Resource: "jobs", Namespace: "x"}},
		{"DELETE", "/apis/batch/v1/namespaces/x/jobs/j", Attributes{Verb: "delete", ResourceRequest: true, APIGroup: "batch", Resource: "jobs", Namespace: "x", Name: "j"}},
		{"GET", "/api/v1/namespaces", Attributes{Verb: "list", ResourceRequest: true, Resource: "namespaces"}},
		{"GET", "/api/v1/namespaces/kube-system", Attributes{Verb: "get", ResourceRequest: true, Resource: "namespaces", Namespace: "kube-system", Name: "kube-system"}},
		{"PUT", "/api/v1/namespaces/gone/finalize", Attributes{Verb: "update", ResourceRequest: true, Resource: "namespaces", Subresource: "finalize", Namespace: "gone", Name: "gone"}},
		{"POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", Attributes{Verb: "create", ResourceRequest: true, APIGroup: "authorization.k8s.io", Resource: "selfsubjectaccessreviews"}},
		// Paths, discovery included.
		{"GET", "/api", Attributes{Verb: "get"}},
		{"GET", "/api/v1", Attributes{Verb: "get"}},
		{"GET", "/apis/apps/v1", Attributes{Verb: "get"}},
		{"GET", "/metrics", Attributes{Verb: "get"}},
		{"POST", "/join", Attributes{Verb: "post"}},
	} {
		r := httptest.NewRequest(tc.method, tc.url, nil)
		got := RequestAttributes(r)
		want := tc.want
		want.Path = r.URL.Path
		if !equalAttrs(got, want) {
			t.Errorf("%s %s: got %+v, want %+v", tc.method, tc.url, got, want)
		}
	}
}

func equalAttrs(a, b Attributes) bool {
	return a.Verb == b.Verb && a.ResourceRequest == b.ResourceRequest && a.Path == b.Path && a.APIGroup == b.APIGroup &&
		a.Resource == b.Resource && a.Subresource == b.Subresource && a.Namespace == b.Namespace && a.Name == b.Name
}

// fixture returns an authorizer over the default roles and bindings plus
// objs.
func fixture(t *testing.T, objs ...any) *RBAC {
	t.Helper()
	idx := func() cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	roles, clusterRoles, rbs, crbs := idx(), idx(), idx(), idx()
	add := func(i cache.Indexer, o any) {
		if err := i.Add(o); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range aggregate(DefaultClusterRoles()) {
		add(clusterRoles, &r)
	}
	for _, b := range DefaultClusterRoleBindings() {
		add(crbs, &b)
	}
	for _, o := range objs {
		switch o := o.(type) {
		case *rbacv1.Role:
			add(roles, o)
		case *rbacv1.ClusterRole:
			add(clusterRoles, o)
		case *rbacv1.RoleBinding:
			add(rbs, o)
		case *rbacv1.ClusterRoleBinding:
			add(crbs, o)
		default:
			t.Fatalf("fixture: %T", o)
		}
	}
	return New(rbaclisters.NewRoleLister(roles), rbaclisters.NewClusterRoleLister(clusterRoles),
		rbaclisters.NewRoleBindingLister(rbs), rbaclisters.NewClusterRoleBindingLister(crbs))
}

// aggregate fills the aggregated roles' rules as the aggregation
// controller does, to a fixed point (view joins edit, edit joins admin).
func aggregate(roles []rbacv1.ClusterRole) []rbacv1.ClusterRole {
	for changed := true; changed; {
		changed = false
		for i := range roles {
			if roles[i].AggregationRule == nil {
				continue
			}
			var rules []rbacv1.PolicyRule
			for _, sel := range roles[i].AggregationRule.ClusterRoleSelectors {
				for _, r := range roles {
					if r.Name != roles[i].Name && labels.SelectorFromSet(sel.MatchLabels).Matches(labels.Set(r.Labels)) {
						rules = append(rules, r.Rules...)
					}
				}
			}
			if len(rules) != len(roles[i].Rules) {
				roles[i].Rules, changed = rules, true
			}
		}
	}
	return roles
}

func resAttrs(user User, verb, group, resource, sub, ns, name string) Attributes {
	return Attributes{User: user, Verb: verb, ResourceRequest: true, APIGroup: group, Resource: resource, Subresource: sub, Namespace: ns, Name: name}
}

func TestAuthorize(t *testing.T) {
	jane := User{Name: "jane", Groups: []string{"dev", "system:authenticated"}}
	sa := User{Name: "system:serviceaccount:shop:builder", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"}}
	admin := User{Name: "skiff-admin", Groups: []string{"system:masters", "system:authenticated"}}
	node := User{Name: "system:node:w1", Groups: []string{"system:nodes", "system:authenticated"}}
	podReader := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "pod-reader", Namespace: "shop"},
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"get", "list"}, APIGroups: []string{""}, Resources: []string{"pods", "pods/log"}}}}
	oneCM := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "one-cm", Namespace: "shop"},
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"get", "update"}, APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"settings"}}}}
	scaler := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "scaler"},
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"update"}, APIGroups: []string{"*"}, Resources: []string{"*/scale"}}}}
	a := fixture(t, podReader, oneCM, scaler,
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "dev-reads", Namespace: "shop"},
			RoleRef:  rbacv1.RoleRef{Kind: "Role", Name: "pod-reader"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.GroupKind, Name: "dev"}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "builder-edits", Namespace: "shop"},
			RoleRef:  rbacv1.RoleRef{Kind: "ClusterRole", Name: "edit"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "builder"}}}, // namespace: the binding's
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: "shop"},
			RoleRef:  rbacv1.RoleRef{Kind: "Role", Name: "one-cm"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: "jane"}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "dangling", Namespace: "shop"},
			RoleRef:  rbacv1.RoleRef{Kind: "Role", Name: "does-not-exist"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: "jane"}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "ann-admin", Namespace: "shop"},
			RoleRef:  rbacv1.RoleRef{Kind: "ClusterRole", Name: "admin"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: "ann"}}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "jane-scales"},
			RoleRef:  rbacv1.RoleRef{Kind: "ClusterRole", Name: "scaler"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: "jane"}}},
	)
	for _, tc := range []struct {
		name  string
		attrs Attributes
		want  bool
	}{
		{"superuser", resAttrs(admin, "delete", "", "nodes", "", "", "n1"), true},
		{"superuser path", Attributes{User: admin, Verb: "get", Path: "/metrics"}, true},
		{"group role in its namespace", resAttrs(jane, "list", "", "pods", "", "shop", ""), true},
		{"subresource named in the rule", resAttrs(jane, "get", "", "pods", "log", "shop", "web"), true},
		{"subresource not named", resAttrs(jane, "create", "", "pods", "exec", "shop", "web"), false},
		{"verb not granted", resAttrs(jane, "delete", "", "pods", "", "shop", "web"), false},
		{"other namespace", resAttrs(jane, "list", "", "pods", "", "default", ""), false},
		{"cluster scope", resAttrs(jane, "list", "", "pods", "", "", ""), false},
		{"resource name granted", resAttrs(jane, "update", "", "configmaps", "", "shop", "settings"), true},
		{"other resource name", resAttrs(jane, "update", "", "configmaps", "", "shop", "other"), false},
		{"resourceNames never allow a list", resAttrs(jane, "get", "", "configmaps", "", "shop", ""), false},
		{"*/scale of any group", resAttrs(jane, "update", "apps", "deployments", "scale", "x", "web"), true},
		{"*/scale is not the resource", resAttrs(jane, "update", "apps", "deployments", "", "x", "web"), false},
		{"discovery for everyone", Attributes{User: jane, Verb: "get", Path: "/apis/apps"}, true},
		{"no metrics for everyone", Attributes{User: jane, Verb: "get", Path: "/metrics"}, false},
		{"self access review", resAttrs(jane, "create", "authorization.k8s.io", "selfsubjectaccessreviews", "", "", ""), true},
		{"service account through ClusterRole edit", resAttrs(sa, "create", "apps", "deployments", "", "shop", ""), true},
		{"edit includes view", resAttrs(sa, "watch", "", "pods", "", "shop", ""), true},
		{"admin includes edit", resAttrs(User{Name: "ann"}, "create", "", "secrets", "", "shop", ""), true},
		{"edit does not bind roles", resAttrs(sa, "create", "rbac.authorization.k8s.io", "rolebindings", "", "shop", ""), false},
		{"service account elsewhere", resAttrs(sa, "create", "apps", "deployments", "", "default", ""), false},
		{"node writes its status", resAttrs(node, "patch", "", "nodes", "status", "", "w1"), true},
		{"node reads secrets", resAttrs(node, "get", "", "secrets", "", "shop", "s"), true},
		{"node does not write secrets", resAttrs(node, "create", "", "secrets", "", "shop", ""), false},
	} {
		d := a.Authorize(tc.attrs)
		if d.Allowed != tc.want {
			t.Errorf("%s: Authorize(%+v) = %+v, want allowed %v", tc.name, tc.attrs, d, tc.want)
		}
		if d.Allowed && d.Reason == "" {
			t.Errorf("%s: allowed without a reason", tc.name)
		}
	}
	if d := a.Authorize(resAttrs(jane, "list", "", "pods", "", "shop", "")); d.Reason != `RBAC: allowed by RoleBinding "shop/dev-reads" of Role "pod-reader" to Group "dev"` {
		t.Errorf("reason = %q", d.Reason)
	}
}

func TestRulesFor(t *testing.T) {
	a := fixture(t, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "shop"},
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"secrets"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "shop"},
			RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "r"}, Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: "jane"}}})
	jane := User{Name: "jane", Groups: []string{"system:authenticated"}}
	has := func(rules []rbacv1.PolicyRule, resource string) bool {
		for _, r := range rules {
			for _, res := range r.Resources {
				if res == resource {
					return true
				}
			}
		}
		return false
	}
	if rules := a.RulesFor(jane, "shop"); !has(rules, "secrets") || !has(rules, "selfsubjectaccessreviews") {
		t.Errorf("RulesFor(jane, shop) = %+v, want secrets and the basic user's reviews", rules)
	}
	if rules := a.RulesFor(jane, "default"); has(rules, "secrets") {
		t.Errorf("RulesFor(jane, default) = %+v, want no secrets", rules)
	}
}

func TestForbidden(t *testing.T) {
	jane := User{Name: "jane"}
	for _, tc := range []struct {
		attrs Attributes
		want  string
	}{
		{resAttrs(jane, "list", "", "pods", "", "default", ""), `pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default"`},
		{resAttrs(jane, "get", "apps", "deployments", "scale", "x", "web"), `deployments.apps "web" is forbidden: User "jane" cannot get resource "deployments/scale" in API group "apps" in the namespace "x"`},
		{resAttrs(jane, "list", "", "nodes", "", "", ""), `nodes is forbidden: User "jane" cannot list resource "nodes" in API group "" at the cluster scope`},
		{Attributes{User: jane, Verb: "get", Path: "/metrics"}, `forbidden: User "jane" cannot get path "/metrics"`},
	} {
		err := Forbidden(tc.attrs, "")
		if got := err.ErrStatus.Message; got != tc.want || err.ErrStatus.Code != 403 || err.ErrStatus.Reason != metav1.StatusReasonForbidden {
			t.Errorf("Forbidden(%+v) = %d %s %q, want 403 Forbidden %q", tc.attrs, err.ErrStatus.Code, err.ErrStatus.Reason, got, tc.want)
		}
	}
}

func TestReconcile(t *testing.T) {
	def := DefaultClusterRoles()[0] // cluster-admin
	edited := def.DeepCopy()
	edited.Rules = append(edited.Rules[:1:1], rbacv1.PolicyRule{Verbs: []string{"get"}, NonResourceURLs: []string{"/extra"}})
	got, changed := ReconcileClusterRole(edited, &def)
	if !changed || len(got.Rules) != 3 || len(edited.Rules) != 2 {
		t.Errorf("reconcile of an edited cluster-admin: changed %v, %d rules (input now %d), want true, 3 (2)", changed, len(got.Rules), len(edited.Rules))
	}
	if _, changed := ReconcileClusterRole(got, &def); changed {
		t.Error("reconcile of a reconciled role changed it")
	}
	edited.Annotations = map[string]string{AutoupdateAnnotation: "false"}
	if _, changed := ReconcileClusterRole(edited, &def); changed {
		t.Error("reconcile changed a role with autoupdate false")
	}
	b := DefaultClusterRoleBindings()[0]
	noSubjects := b.DeepCopy()
	noSubjects.Subjects = nil
	if got, changed := ReconcileClusterRoleBinding(noSubjects, &b); !changed || len(got.Subjects) != 1 {
		t.Errorf("reconcile of a binding without subjects: %v, %+v", changed, got.Subjects)
	}
	for _, r := range DefaultClusterRoles() {
		if !strings.HasPrefix(r.Name, "system:") && r.Name != "cluster-admin" && r.AggregationRule == nil {
			t.Errorf("default role %s: neither system: nor aggregated", r.Name)
		}
	}
}

func TestUncovered(t *testing.T) {
	a := fixture(t, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "shop"},
		Rules: []rbacv1.PolicyRule{
			{Verbs: []string{"get", "list"}, APIGroups: []string{""}, Resources: []string{"pods", "pods/log"}},
			{Verbs: []string{"update"}, APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"settings"}},
		}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "shop"},
			RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "r"}, Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: "jane"}}})
	jane := User{Name: "jane", Groups: []string{"system:authenticated"}}
	for _, tc := range []struct {
		name  string
		ns    string
		rules []rbacv1.PolicyRule
		want  []string
	}{
		{"held", "shop", []rbacv1.PolicyRule{{Verbs: []string{"list"}, APIGroups: []string{""}, Resources: []string{"pods/log", "pods"}}}, nil},
		{"held name", "shop", []rbacv1.PolicyRule{{Verbs: []string{"update"}, APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"settings"}}}, nil},
		{"every name is more than one", "shop", []rbacv1.PolicyRule{{Verbs: []string{"update"}, APIGroups: []string{""}, Resources: []string{"configmaps"}}},
			[]string{`{APIGroups:[""], Resources:["configmaps"], Verbs:["update"]}`}},
		{"verbs merged", "shop", []rbacv1.PolicyRule{{Verbs: []string{"get", "delete", "watch"}, APIGroups: []string{""}, Resources: []string{"pods"}}},
			[]string{`{APIGroups:[""], Resources:["pods"], Verbs:["delete" "watch"]}`}},
		{"wildcards are only covered by wildcards", "shop", []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"*"}}},
			[]string{`{APIGroups:[""], Resources:["*"], Verbs:["get"]}`}},
		{"elsewhere", "default", []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}}},
			[]string{`{APIGroups:[""], Resources:["pods"], Verbs:["get"]}`}},
		{"paths everyone holds", "", []rbacv1.PolicyRule{{Verbs: []string{"get"}, NonResourceURLs: []string{"/version", "/metrics"}}},
			[]string{`{NonResourceURLs:["/metrics"], Verbs:["get"]}`}},
	} {
		var got []string
		for _, r := range a.Uncovered(jane, tc.ns, tc.rules) {
			got = append(got, compact(r))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: Uncovered = %q, want %q", tc.name, got, tc.want)
		}
	}
	err := EscalationForbidden(rbacv1.Resource("roles"), "r2", jane, []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"nodes"}}})
	if want := `roles.rbac.authorization.k8s.io "r2" is forbidden: user "jane" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:` + "\n" +
		`{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}`; err.ErrStatus.Message != want || err.ErrStatus.Code != 403 {
		t.Errorf("EscalationForbidden = %d %q, want 403 %q", err.ErrStatus.Code, err.ErrStatus.Message, want)
	}
}
