package apiserver

// Reviews: the create-only resources of authentication.k8s.io/v1
// (selfsubjectreviews: `kubectl auth whoami`) and authorization.k8s.io/v1
// (the access reviews: `kubectl auth can-i`, and the checks operators make
// before they start). Nothing is stored; the posted review comes back
// decided by Config.Authorizer, the RBAC authorizer of every request (or,
// without one, as kube-apiserver with --authorization-mode=AlwaysAllow:
// everything allowed, and the rules review lists everything).

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/controlplane/internal/authz"
	"github.com/skiff-sh/skiff/controlplane/internal/registry"
)

// Authorizer is what decides access reviews and checks writes of RBAC
// objects for escalation: package authz's RBAC.
type Authorizer interface {
	Authorize(authz.Attributes) authz.Decision
	// RulesFor returns the rules u has in namespace ns.
	RulesFor(u authz.User, ns string) []rbacv1.PolicyRule
	// Uncovered returns what of rules u does not hold in ns.
	Uncovered(u authz.User, ns string, rules []rbacv1.PolicyRule) []rbacv1.PolicyRule
}

// reviewFunc decides a review in place (its status).
type reviewFunc func(s *Server, rq reviewRequest, obj runtime.Object) error

// reviewRequest is the request a review came with.
type reviewRequest struct {
	ctx context.Context
	// who is the request's user; hasUser false: none.
	who     UserInfo
	hasUser bool
	// ns is the namespace of a namespaced review's URL.
	ns string
}

// reviews returns the review resources, in discovery order.
func reviews() []*resource {
	authz := authorizationv1.SchemeGroupVersion
	return []*resource{
		review(authenticationv1.SchemeGroupVersion.WithResource("selfsubjectreviews"), "SelfSubjectReview", false,
			func() runtime.Object { return &authenticationv1.SelfSubjectReview{} }, selfSubjectReview),
		review(authenticationv1.SchemeGroupVersion.WithResource("tokenreviews"), "TokenReview", false,
			func() runtime.Object { return &authenticationv1.TokenReview{} }, tokenReview),
		review(authz.WithResource("localsubjectaccessreviews"), "LocalSubjectAccessReview", true,
			func() runtime.Object { return &authorizationv1.LocalSubjectAccessReview{} }, localSubjectAccessReview),
		review(authz.WithResource("selfsubjectaccessreviews"), "SelfSubjectAccessReview", false,
			func() runtime.Object { return &authorizationv1.SelfSubjectAccessReview{} }, selfSubjectAccessReview),
		review(authz.WithResource("selfsubjectrulesreviews"), "SelfSubjectRulesReview", false,
			func() runtime.Object { return &authorizationv1.SelfSubjectRulesReview{} }, selfSubjectRulesReview),
		review(authz.WithResource("subjectaccessreviews"), "SubjectAccessReview", false,
			func() runtime.Object { return &authorizationv1.SubjectAccessReview{} }, subjectAccessReview),
	}
}

func review(gvr schema.GroupVersionResource, kind string, namespaced bool, newObj func() runtime.Object, decide reviewFunc) *resource {
	return &resource{
		gvr: gvr, singular: strings.ToLower(kind), kind: kind, namespaced: namespaced, verbs: []string{"create"},
		reg: &registry.Resource{New: newObj}, review: decide,
	}
}

// serveReview answers a POST of a review with the review decided (201, as
// kube-apiserver); other methods get 405.
func (s *Server) serveReview(w http.ResponseWriter, r *http.Request, res *resource, ns string) error {
	if r.Method != http.MethodPost || (res.namespaced && ns == "") {
		return methodNotAllowed(r.Method)
	}
	_, validation, err := writeParams(r.URL.Query(), createOptionsKind)
	if err != nil {
		return err
	}
	obj, warnings, err := s.decodeBody(w, r, res.reg.Kind, res.reg.New(), validation)
	if err != nil {
		return err
	}
	rq := reviewRequest{ctx: r.Context(), ns: ns}
	if s.cfg.UserFrom != nil {
		rq.who, rq.hasUser = s.cfg.UserFrom(r.Context())
	}
	if err := res.review(s, rq, obj); err != nil {
		return err
	}
	obj.GetObjectKind().SetGroupVersionKind(res.reg.Kind)
	setWarnings(w, warnings)
	return s.writeObjects(w, r, res, http.StatusCreated, obj, []runtime.Object{obj})
}

// errNoUser: kube-apiserver refuses a self review of a request without a
// user.
var errNoUser = apierrors.NewBadRequest("no user present on request")

func selfSubjectReview(_ *Server, rq reviewRequest, obj runtime.Object) error {
	if !rq.hasUser {
		return errNoUser
	}
	obj.(*authenticationv1.SelfSubjectReview).Status.UserInfo = rq.who.authentication()
	return nil
}

func selfSubjectAccessReview(s *Server, rq reviewRequest, obj runtime.Object) error {
	rev := obj.(*authorizationv1.SelfSubjectAccessReview)
	if errs := validateAttributes(rev.Spec.ResourceAttributes, rev.Spec.NonResourceAttributes); len(errs) > 0 {
		return invalidReview("SelfSubjectAccessReview", errs)
	}
	if !rq.hasUser {
		return errNoUser
	}
	rev.Status = s.decide(authz.User{Name: rq.who.Name, Groups: rq.who.Groups}, rev.Spec.ResourceAttributes, rev.Spec.NonResourceAttributes)
	return nil
}

// decide answers an access review of u: the Authorizer's decision, or
// allowed without one.
func (s *Server) decide(u authz.User, res *authorizationv1.ResourceAttributes, nonRes *authorizationv1.NonResourceAttributes) authorizationv1.SubjectAccessReviewStatus {
	if s.cfg.Authorizer == nil {
		return authorizationv1.SubjectAccessReviewStatus{Allowed: true}
	}
	a := authz.Attributes{User: u}
	switch {
	case res != nil:
		a.ResourceRequest, a.Verb, a.APIGroup, a.Resource, a.Subresource, a.Namespace, a.Name = true, res.Verb, res.Group, res.Resource, res.Subresource, res.Namespace, res.Name
	case nonRes != nil:
		a.Verb, a.Path = nonRes.Verb, nonRes.Path
	}
	d := s.cfg.Authorizer.Authorize(a)
	return authorizationv1.SubjectAccessReviewStatus{Allowed: d.Allowed, Reason: d.Reason}
}

func subjectAccessReview(s *Server, _ reviewRequest, obj runtime.Object) error {
	rev := obj.(*authorizationv1.SubjectAccessReview)
	errs := validateSubjectReview(&rev.Spec)
	if m := rev.ObjectMeta; !emptyMeta(m, "") {
		errs = append(errs, field.Invalid(field.NewPath("metadata"), m, "must be empty"))
	}
	if len(errs) > 0 {
		return invalidReview("SubjectAccessReview", errs)
	}
	rev.Status = s.decide(authz.User{Name: rev.Spec.User, Groups: rev.Spec.Groups}, rev.Spec.ResourceAttributes, rev.Spec.NonResourceAttributes)
	return nil
}

func localSubjectAccessReview(s *Server, rq reviewRequest, obj runtime.Object) error {
	ns := rq.ns
	rev := obj.(*authorizationv1.LocalSubjectAccessReview)
	if rev.Namespace == "" {
		rev.Namespace = ns
	}
	errs := validateSubjectReview(&rev.Spec)
	if !emptyMeta(rev.ObjectMeta, rev.Namespace) {
		errs = append(errs, field.Invalid(field.NewPath("metadata"), rev.ObjectMeta, "must be empty except for namespace"))
	}
	if rev.Spec.NonResourceAttributes != nil {
		errs = append(errs, field.Invalid(field.NewPath("spec", "nonResourceAttributes"), rev.Spec.NonResourceAttributes, "disallowed on this kind of request"))
	}
	if len(errs) > 0 {
		return invalidReview("LocalSubjectAccessReview", errs)
	}
	if rev.Namespace != ns {
		return apierrors.NewBadRequest(fmt.Sprintf("namespace of the review (%s) does not match the request's (%s)", rev.Namespace, ns))
	}
	if a := rev.Spec.ResourceAttributes; a != nil && a.Namespace != ns {
		return apierrors.NewBadRequest(fmt.Sprintf("spec.resourceAttributes.namespace must match namespace: %v", ns))
	}
	rev.Status = s.decide(authz.User{Name: rev.Spec.User, Groups: rev.Spec.Groups}, rev.Spec.ResourceAttributes, nil)
	return nil
}

func selfSubjectRulesReview(s *Server, rq reviewRequest, obj runtime.Object) error {
	rev := obj.(*authorizationv1.SelfSubjectRulesReview)
	if !rq.hasUser {
		return errNoUser
	}
	if rev.Spec.Namespace == "" {
		return apierrors.NewBadRequest("no namespace on request")
	}
	rules := authz.FullAuthority
	if s.cfg.Authorizer != nil {
		rules = s.cfg.Authorizer.RulesFor(authz.User{Name: rq.who.Name, Groups: rq.who.Groups}, rev.Spec.Namespace)
	}
	rev.Status = authorizationv1.SubjectRulesReviewStatus{ResourceRules: []authorizationv1.ResourceRule{}, NonResourceRules: []authorizationv1.NonResourceRule{}}
	for _, r := range rules {
		if len(r.NonResourceURLs) > 0 {
			rev.Status.NonResourceRules = append(rev.Status.NonResourceRules, authorizationv1.NonResourceRule{Verbs: r.Verbs, NonResourceURLs: r.NonResourceURLs})
		}
		if len(r.Resources) > 0 {
			rev.Status.ResourceRules = append(rev.Status.ResourceRules, authorizationv1.ResourceRule{Verbs: r.Verbs, APIGroups: r.APIGroups, Resources: r.Resources, ResourceNames: r.ResourceNames})
		}
	}
	return nil
}

// validateAttributes: a review asks about a resource or a URL, not both.
func validateAttributes(res *authorizationv1.ResourceAttributes, nonRes *authorizationv1.NonResourceAttributes) field.ErrorList {
	spec := field.NewPath("spec")
	switch {
	case res != nil && nonRes != nil:
		return field.ErrorList{field.Invalid(spec.Child("nonResourceAttributes"), nonRes, "cannot be specified in combination with resourceAttributes")}
	case res == nil && nonRes == nil:
		return field.ErrorList{field.Invalid(spec.Child("resourceAttributes"), nonRes, "exactly one of nonResourceAttributes or resourceAttributes must be specified")}
	}
	return nil
}

// validateSubjectReview: a review about someone else names them.
func validateSubjectReview(spec *authorizationv1.SubjectAccessReviewSpec) field.ErrorList {
	errs := validateAttributes(spec.ResourceAttributes, spec.NonResourceAttributes)
	if spec.User == "" && len(spec.Groups) == 0 {
		errs = append(errs, field.Invalid(field.NewPath("spec", "user"), spec.User, "at least one of user or group must be specified"))
	}
	return errs
}

// emptyMeta says whether m says nothing but namespace ns (managedFields
// aside, which a client's field manager may add).
func emptyMeta(m metav1.ObjectMeta, ns string) bool {
	m.ManagedFields = nil
	return apiequality.Semantic.DeepEqual(m, metav1.ObjectMeta{Namespace: ns})
}

func invalidReview(kind string, errs field.ErrorList) error {
	return apierrors.NewInvalid(authorizationv1.SchemeGroupVersion.WithKind(kind).GroupKind(), "", errs)
}
