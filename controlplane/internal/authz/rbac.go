// Package authz decides what an authenticated user may do, as
// kube-apiserver's RBAC authorizer does (--authorization-mode=RBAC): the
// rules of the Roles and ClusterRoles that RoleBindings and
// ClusterRoleBindings grant the user, one of their groups or their service
// account, with no deny rules. Members of system:masters may do
// everything. It also holds the default roles and bindings every cluster
// has (cluster-admin, admin, edit, view, system:discovery, ...; see
// Defaults) and the attributes of an HTTP request (RequestAttributes).
//
// Intended use, on every master:
//
//	a := authz.New(roles, clusterRoles, roleBindings, clusterRoleBindings) // listers of synced informers
//	attrs := authz.RequestAttributes(r)
//	attrs.User = authz.User{Name: ..., Groups: ...}
//	if d := a.Authorize(attrs); !d.Allowed {
//		// 403: authz.Forbidden(attrs, d.Reason)
//	}
//
// and a.RulesFor(user, namespace) for SelfSubjectRulesReviews.
package authz

import (
	"fmt"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
)

// SuperuserGroup is the group whose members may do everything, whatever
// the roles say (the admin kubeconfig's group).
const SuperuserGroup = "system:masters"

// FullAuthority is every permission: what a superuser holds, and what a
// ClusterRole with an aggregationRule may come to grant.
var FullAuthority = []rbacv1.PolicyRule{
	{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}},
	{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}},
}

// Superuser says whether u may do everything, whatever the roles say.
func Superuser(u User) bool { return slices.Contains(u.Groups, SuperuserGroup) }

// Decision is an authorization's outcome and, when allowed, which binding
// allowed it.
type Decision struct {
	Allowed bool
	Reason  string
}

// RBAC authorizes with the roles and bindings its listers hold.
type RBAC struct {
	roles               rbaclisters.RoleLister
	clusterRoles        rbaclisters.ClusterRoleLister
	roleBindings        rbaclisters.RoleBindingLister
	clusterRoleBindings rbaclisters.ClusterRoleBindingLister
}

// New returns an authorizer over the listers (of informers that are
// synced before it is asked).
func New(roles rbaclisters.RoleLister, clusterRoles rbaclisters.ClusterRoleLister, roleBindings rbaclisters.RoleBindingLister, clusterRoleBindings rbaclisters.ClusterRoleBindingLister) *RBAC {
	return &RBAC{roles: roles, clusterRoles: clusterRoles, roleBindings: roleBindings, clusterRoleBindings: clusterRoleBindings}
}

// Authorize says whether a.User may do what a asks: a superuser may; else
// some rule of a role bound to the user must allow it, through a
// ClusterRoleBinding anywhere or a RoleBinding in the request's namespace.
func (r *RBAC) Authorize(a Attributes) Decision {
	if Superuser(a.User) {
		return Decision{Allowed: true, Reason: "member of " + SuperuserGroup}
	}
	reason := ""
	r.visit(a.User, a.Namespace, func(source string, rule *rbacv1.PolicyRule) bool {
		if allows(rule, a) {
			reason = "RBAC: allowed by " + source
			return false
		}
		return true
	})
	return Decision{Allowed: reason != "", Reason: reason}
}

// RulesFor returns the rules the user has in namespace ns (cluster-wide
// ones included): everything for a superuser.
func (r *RBAC) RulesFor(u User, ns string) []rbacv1.PolicyRule {
	if Superuser(u) {
		return slices.Clone(FullAuthority)
	}
	var rules []rbacv1.PolicyRule
	r.visit(u, ns, func(_ string, rule *rbacv1.PolicyRule) bool {
		rules = append(rules, *rule)
		return true
	})
	return rules
}

// visit calls fn with every rule granted to u cluster-wide and in ns (when
// not empty), and the binding that grants it, until fn returns false.
// Bindings to roles that do not exist grant nothing.
func (r *RBAC) visit(u User, ns string, fn func(source string, rule *rbacv1.PolicyRule) bool) {
	crbs, _ := r.clusterRoleBindings.List(labels.Everything()) // listers never fail
	for _, b := range crbs {
		subject, ok := applies(b.Subjects, u, "")
		if !ok || b.RoleRef.Kind != "ClusterRole" {
			continue
		}
		role, err := r.clusterRoles.Get(b.RoleRef.Name)
		if err != nil {
			continue
		}
		source := fmt.Sprintf("ClusterRoleBinding %q of ClusterRole %q to %s", b.Name, role.Name, subject)
		for i := range role.Rules {
			if !fn(source, &role.Rules[i]) {
				return
			}
		}
	}
	if ns == "" {
		return
	}
	rbs, _ := r.roleBindings.RoleBindings(ns).List(labels.Everything())
	for _, b := range rbs {
		subject, ok := applies(b.Subjects, u, ns)
		if !ok {
			continue
		}
		var rules []rbacv1.PolicyRule
		switch b.RoleRef.Kind {
		case "ClusterRole":
			role, err := r.clusterRoles.Get(b.RoleRef.Name)
			if err != nil {
				continue
			}
			rules = role.Rules
		case "Role":
			role, err := r.roles.Roles(ns).Get(b.RoleRef.Name)
			if err != nil {
				continue
			}
			rules = role.Rules
		default:
			continue
		}
		source := fmt.Sprintf("RoleBinding %q of %s %q to %s", ns+"/"+b.Name, b.RoleRef.Kind, b.RoleRef.Name, subject)
		for i := range rules {
			if !fn(source, &rules[i]) {
				return
			}
		}
	}
}

// serviceAccountPrefix starts the user name of a service account's tokens.
const serviceAccountPrefix = "system:serviceaccount:"

// applies returns the first of subjects that u is, described as
// kube-apiserver does in its reasons; bindingNS is the namespace of a
// RoleBinding, which a ServiceAccount subject without one is in.
func applies(subjects []rbacv1.Subject, u User, bindingNS string) (string, bool) {
	for _, s := range subjects {
		switch s.Kind {
		case rbacv1.UserKind:
			if s.Name == u.Name {
				return fmt.Sprintf("User %q", s.Name), true
			}
		case rbacv1.GroupKind:
			if slices.Contains(u.Groups, s.Name) {
				return fmt.Sprintf("Group %q", s.Name), true
			}
		case rbacv1.ServiceAccountKind:
			ns := s.Namespace
			if ns == "" {
				ns = bindingNS
			}
			if ns != "" && u.Name == serviceAccountPrefix+ns+":"+s.Name {
				return fmt.Sprintf("ServiceAccount %q", ns+"/"+s.Name), true
			}
		}
	}
	return "", false
}

// allows says whether rule allows a.
func allows(rule *rbacv1.PolicyRule, a Attributes) bool {
	if !has(rule.Verbs, a.Verb) {
		return false
	}
	if !a.ResourceRequest {
		return pathMatches(rule.NonResourceURLs, a.Path)
	}
	if !has(rule.APIGroups, a.APIGroup) || !resourceMatches(rule.Resources, a.Resource, a.Subresource) {
		return false
	}
	return len(rule.ResourceNames) == 0 || slices.Contains(rule.ResourceNames, a.Name)
}

// has says whether list holds want or "*".
func has(list []string, want string) bool {
	for _, v := range list {
		if v == want || v == rbacv1.VerbAll {
			return true
		}
	}
	return false
}

// resourceMatches: "*", "resource", "resource/subresource", or
// "*/subresource" for a subresource of any resource.
func resourceMatches(rules []string, resource, subresource string) bool {
	want := resource
	if subresource != "" {
		want += "/" + subresource
	}
	for _, r := range rules {
		if r == rbacv1.ResourceAll || r == want || (subresource != "" && r == "*/"+subresource) {
			return true
		}
	}
	return false
}

// pathMatches: the path itself, "*", or a prefix ending in "*".
func pathMatches(rules []string, path string) bool {
	for _, r := range rules {
		if r == rbacv1.NonResourceAll || r == path || (strings.HasSuffix(r, "*") && strings.HasPrefix(path, strings.TrimSuffix(r, "*"))) {
			return true
		}
	}
	return false
}

// Forbidden is kube-apiserver's 403 for a request it does not authorize:
// `pods is forbidden: User "jane" cannot list resource "pods" in API group
// "" in the namespace "default"`, with the reason appended when there is
// one.
func Forbidden(a Attributes, reason string) *apierrors.StatusError {
	var msg string
	resource := a.Resource
	if a.Subresource != "" {
		resource += "/" + a.Subresource
	}
	switch {
	case !a.ResourceRequest:
		msg = fmt.Sprintf("User %q cannot %s path %q", a.User.Name, a.Verb, a.Path)
	case a.Namespace != "":
		msg = fmt.Sprintf("User %q cannot %s resource %q in API group %q in the namespace %q", a.User.Name, a.Verb, resource, a.APIGroup, a.Namespace)
	default:
		msg = fmt.Sprintf("User %q cannot %s resource %q in API group %q at the cluster scope", a.User.Name, a.Verb, resource, a.APIGroup)
	}
	if reason != "" {
		msg += ": " + reason
	}
	return apierrors.NewForbidden(schema.GroupResource{Group: a.APIGroup, Resource: a.Resource}, a.Name, fmt.Errorf("%s", msg))
}
