package apiserver

import (
	"context"
	"errors"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-sh/skiff/controlplane/internal/authz"
	"github.com/skiff-sh/skiff/controlplane/internal/registry"
)

// admitRBAC is kube-apiserver's escalation check on writes of the RBAC
// kinds (Registry.Admit): a Role or ClusterRole whose rules change needs
// its writer to hold those rules, or the "escalate" verb on it (an
// aggregationRule needs every permission); a binding whose subjects change
// needs its writer to hold the rules of the role it refers to, or the
// "bind" verb on that role. A write without a user (the masters' own) is
// not checked.
func (s *Server) admitRBAC(ctx context.Context, obj, old runtime.Object) error {
	if s.cfg.UserFrom == nil {
		return nil
	}
	u, ok := s.cfg.UserFrom(ctx)
	if !ok {
		return nil
	}
	who := authz.User{Name: u.Name, Groups: u.Groups}
	a := s.cfg.Authorizer
	may := func(verb, resource, ns, name string) bool {
		return a.Authorize(authz.Attributes{User: who, Verb: verb, ResourceRequest: true, APIGroup: rbacv1.GroupName, Resource: resource, Namespace: ns, Name: name}).Allowed
	}
	check := func(resource, ns, name string, rules []rbacv1.PolicyRule) error {
		if missing := a.Uncovered(who, ns, rules); len(missing) > 0 {
			return authz.EscalationForbidden(rbacv1.Resource(resource), name, who, missing)
		}
		return nil
	}
	switch o := obj.(type) {
	case *rbacv1.Role:
		if old != nil && equality.Semantic.DeepEqual(o.Rules, old.(*rbacv1.Role).Rules) || may("escalate", "roles", o.Namespace, o.Name) {
			return nil
		}
		return check("roles", o.Namespace, o.Name, o.Rules)
	case *rbacv1.ClusterRole:
		if old != nil {
			prev := old.(*rbacv1.ClusterRole)
			if equality.Semantic.DeepEqual(o.Rules, prev.Rules) && equality.Semantic.DeepEqual(o.AggregationRule, prev.AggregationRule) {
				return nil
			}
		}
		if may("escalate", "clusterroles", "", o.Name) {
			return nil
		}
		if o.AggregationRule != nil && len(a.Uncovered(who, "", authz.FullAuthority)) > 0 {
			return apierrors.NewForbidden(rbacv1.Resource("clusterroles"), o.Name, errors.New("must have cluster-admin privileges to use the aggregationRule"))
		}
		return check("clusterroles", "", o.Name, o.Rules)
	case *rbacv1.RoleBinding:
		if old != nil && equality.Semantic.DeepEqual(o.Subjects, old.(*rbacv1.RoleBinding).Subjects) {
			return nil // the role it refers to cannot change
		}
		return s.admitBinding(ctx, may, check, "rolebindings", o.Namespace, o.Name, o.RoleRef)
	case *rbacv1.ClusterRoleBinding:
		if old != nil && equality.Semantic.DeepEqual(o.Subjects, old.(*rbacv1.ClusterRoleBinding).Subjects) {
			return nil
		}
		return s.admitBinding(ctx, may, check, "clusterrolebindings", "", o.Name, o.RoleRef)
	}
	return nil
}

// admitBinding checks a binding ns/name (of resource) to ref. The role is
// read from the store, not the authorizer's cache, so that a role and a
// binding written one after the other are checked together.
func (s *Server) admitBinding(ctx context.Context, may func(verb, resource, ns, name string) bool, check func(resource, ns, name string, rules []rbacv1.PolicyRule) error,
	resource, ns, name string, ref rbacv1.RoleRef) error {
	roles := "clusterroles"
	if ref.Kind == "Role" {
		roles = "roles"
	}
	if may("bind", roles, ns, ref.Name) {
		return nil
	}
	role, err := s.cfg.Store.Get(ctx, s.byGV[rbacv1.SchemeGroupVersion.String()][roles].reg, ns, ref.Name, registry.GetOptions{})
	if err != nil {
		return err
	}
	var rules []rbacv1.PolicyRule
	switch r := role.(type) {
	case *rbacv1.Role:
		rules = r.Rules
	case *rbacv1.ClusterRole:
		rules = r.Rules
	}
	return check(resource, ns, name, rules)
}
