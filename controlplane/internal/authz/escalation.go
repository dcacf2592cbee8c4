package authz

import (
	"fmt"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The escalation check, as kube-apiserver's RBAC storage makes it: a user
// may write a Role or ClusterRole only with rules it holds itself (or the
// "escalate" verb on it), and bind a role only if it holds the role's
// rules (or the "bind" verb on it), so that writing RBAC objects never
// grants more than the writer has.

// Uncovered returns the permissions that rules grant and u does not hold
// in namespace ns ("": cluster-wide only), one verb on one resource (or
// URL) each, merged by resource; none when u holds them all.
func (r *RBAC) Uncovered(u User, ns string, rules []rbacv1.PolicyRule) []rbacv1.PolicyRule {
	var missing []rbacv1.PolicyRule
	for _, rule := range rules {
		for _, a := range atoms(rule) {
			a.User, a.Namespace = u, ns
			if !r.Authorize(a).Allowed {
				missing = merge(missing, a)
			}
		}
	}
	return missing
}

// atoms breaks rule into one request each: a verb on a group's resource
// (and a name, when the rule names some), or a verb on a URL.
func atoms(rule rbacv1.PolicyRule) []Attributes {
	var out []Attributes
	for _, verb := range rule.Verbs {
		for _, url := range rule.NonResourceURLs {
			out = append(out, Attributes{Verb: verb, Path: url})
		}
		for _, group := range rule.APIGroups {
			for _, res := range rule.Resources {
				resource, sub, _ := strings.Cut(res, "/")
				names := rule.ResourceNames
				if len(names) == 0 {
					names = []string{""}
				}
				for _, name := range names {
					out = append(out, Attributes{Verb: verb, ResourceRequest: true, APIGroup: group, Resource: resource, Subresource: sub, Name: name})
				}
			}
		}
	}
	return out
}

// merge adds a to rules, as a verb of the rule for the same resource or
// URL when there is one.
func merge(rules []rbacv1.PolicyRule, a Attributes) []rbacv1.PolicyRule {
	rule := rbacv1.PolicyRule{Verbs: []string{a.Verb}}
	if a.ResourceRequest {
		res := a.Resource
		if a.Subresource != "" {
			res += "/" + a.Subresource
		}
		rule.APIGroups, rule.Resources = []string{a.APIGroup}, []string{res}
		if a.Name != "" {
			rule.ResourceNames = []string{a.Name}
		}
	} else {
		rule.NonResourceURLs = []string{a.Path}
	}
	for i, have := range rules {
		if slices.Equal(have.APIGroups, rule.APIGroups) && slices.Equal(have.Resources, rule.Resources) &&
			slices.Equal(have.ResourceNames, rule.ResourceNames) && slices.Equal(have.NonResourceURLs, rule.NonResourceURLs) {
			if !slices.Contains(have.Verbs, a.Verb) {
				rules[i].Verbs = append(rules[i].Verbs, a.Verb)
			}
			return rules
		}
	}
	return append(rules, rule)
}

// EscalationForbidden is kube-apiserver's 403 for a write of the RBAC
// object name (of gr) that would grant missing, rules its writer u lacks.
func EscalationForbidden(gr schema.GroupResource, name string, u User, missing []rbacv1.PolicyRule) *apierrors.StatusError {
	lines := make([]string, len(missing))
	for i, m := range missing {
		lines[i] = compact(m)
	}
	slices.Sort(lines)
	return apierrors.NewForbidden(gr, name, fmt.Errorf("user %q (groups=%q) is attempting to grant RBAC permissions not currently held:\n%s", u.Name, u.Groups, strings.Join(lines, "\n")))
}

// compact writes a rule as kube-apiserver's messages do:
// {APIGroups:[""], Resources:["secrets"], Verbs:["get"]}.
func compact(r rbacv1.PolicyRule) string {
	var parts []string
	for _, f := range []struct {
		name string
		v    []string
	}{{"APIGroups", r.APIGroups}, {"Resources", r.Resources}, {"NonResourceURLs", r.NonResourceURLs}, {"ResourceNames", r.ResourceNames}, {"Verbs", r.Verbs}} {
		if len(f.v) > 0 {
			parts = append(parts, fmt.Sprintf("%s:%q", f.name, f.v))
		}
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
