package apiserver

// Service account tokens: the serviceaccounts/token subresource (the
// TokenRequest API, `kubectl create token`, what the agent mounts into
// pods) and the authentication of the tokens it issues, which holds only
// while the service account and the object a token is bound to exist.

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/controlplane/internal/registry"
	"github.com/skiff-sh/skiff/controlplane/internal/satoken"
)

const subToken = "token"

var tokenRequestKind = authenticationv1.SchemeGroupVersion.WithKind("TokenRequest")

// Token lifetimes, as kube-apiserver bounds them.
const (
	defaultTokenSeconds = 3600
	minTokenSeconds     = 600
	maxTokenSeconds     = 1 << 32
)

// boundDeletedGrace is how long a token bound to a deleted object stays
// valid after the object's deletionTimestamp, as upstream.
const boundDeletedGrace = 60 * time.Second

// requestToken serves POST serviceaccounts/{name}/token: a token of the
// service account for the audiences asked (the API's by default), valid
// for expirationSeconds (3600 by default, at least 600), bound to a Pod,
// Secret or Node when the request names one, as kube-apiserver issues them.
func (s *Server) requestToken(w http.ResponseWriter, r *http.Request, res *resource, ns, name string) error {
	if s.cfg.ServiceAccountTokens == nil {
		return apierrors.NewServiceUnavailable("this server issues no service account tokens")
	}
	dryRun, validation, err := writeParams(r.URL.Query(), createOptionsKind)
	if err != nil {
		return err
	}
	obj, warnings, err := s.decodeBody(w, r, tokenRequestKind, &authenticationv1.TokenRequest{}, validation)
	if err != nil {
		return err
	}
	tr := obj.(*authenticationv1.TokenRequest)
	if tr.Spec.ExpirationSeconds == nil {
		secs := int64(defaultTokenSeconds)
		tr.Spec.ExpirationSeconds = &secs
	}
	if len(tr.Spec.Audiences) == 0 {
		tr.Spec.Audiences = []string{satoken.Issuer}
	}
	var errs field.ErrorList
	switch secs, p := *tr.Spec.ExpirationSeconds, field.NewPath("spec", "expirationSeconds"); {
	case secs < minTokenSeconds:
		errs = append(errs, field.Invalid(p, secs, "may not specify a duration less than 10 minutes"))
	case secs > maxTokenSeconds:
		errs = append(errs, field.Invalid(p, secs, "may not specify a duration larger than 2^32 seconds"))
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(tokenRequestKind.GroupKind(), name, errs)
	}
	ctx := r.Context()
	if err := s.nodeToken(ctx, ns, name, tr); err != nil {
		return err
	}
	saObj, err := s.cfg.Store.Get(ctx, res.reg, ns, name, registry.GetOptions{})
	if err != nil {
		return err
	}
	sa := saObj.(*corev1.ServiceAccount)
	now := s.cfg.Now()
	claims := satoken.Claims{
		Audiences: tr.Spec.Audiences, IssuedAt: now, NotBefore: now, Expiry: now.Add(time.Duration(*tr.Spec.ExpirationSeconds) * time.Second),
		ID: string(uuid.NewUUID()), Namespace: ns, ServiceAccount: satoken.Ref{Name: sa.Name, UID: string(sa.UID)},
	}
	if ref := tr.Spec.BoundObjectRef; ref != nil {
		if err := s.bindToken(ctx, &claims, ns, sa.Name, ref); err != nil {
			return err
		}
	}
	out := tr.DeepCopy()
	out.Status.ExpirationTimestamp = metav1.NewTime(claims.Expiry)
	if !dryRun {
		if out.Status.Token, err = s.cfg.ServiceAccountTokens.Issue(claims); err != nil {
			return apierrors.NewInternalError(err)
		}
	}
	out.SetGroupVersionKind(tokenRequestKind)
	setWarnings(w, warnings)
	return s.writeObjects(w, r, res, http.StatusCreated, out, nil)
}

// bindToken binds the token of service account saName to the object ref
// names in namespace ns, which must exist (with ref's uid, if it gives
// one). A pod must run as the service account; its node is named too.
func (s *Server) bindToken(ctx context.Context, c *satoken.Claims, ns, saName string, ref *authenticationv1.BoundObjectReference) error {
	core := schema.GroupVersion{Version: "v1"}
	if ref.APIVersion != "v1" || (ref.Kind != "Pod" && ref.Kind != "Secret" && ref.Kind != "Node") {
		return apierrors.NewBadRequest(fmt.Sprintf("cannot bind token for serviceaccount %q to object of type %s", saName, schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind)))
	}
	if ref.Name == "" {
		return apierrors.NewBadRequest("bound object reference must have a name")
	}
	res := s.byGV[core.String()][map[string]string{"Pod": "pods", "Secret": "secrets", "Node": "nodes"}[ref.Kind]]
	obj, err := s.cfg.Store.Get(ctx, res.reg, ns, ref.Name, registry.GetOptions{})
	if err != nil {
		return err
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if ref.UID != "" && ref.UID != m.GetUID() {
		return apierrors.NewConflict(schema.GroupResource{Resource: ref.Kind}, ref.Name, boundUIDMismatch(ref))
	}
	bound := &satoken.Ref{Name: m.GetName(), UID: string(m.GetUID())}
	switch pod := obj.(type) {
	case *corev1.Pod:
		if pod.Spec.ServiceAccountName != saName {
			return apierrors.NewBadRequest(fmt.Sprintf("cannot bind token for serviceaccount %q to pod running with different serviceaccount name.", saName))
		}
		c.Pod = bound
		if pod.Spec.NodeName != "" {
			c.Node = &satoken.Ref{Name: pod.Spec.NodeName}
		}
	case *corev1.Secret:
		c.Secret = bound
	default:
		c.Node = bound
	}
	return nil
}

// ErrTokenRevoked is returned by AuthenticateServiceAccountToken for a
// well-signed token whose service account or bound object is gone.
var ErrTokenRevoked = errors.New("service account token no longer valid")

// AuthenticateServiceAccountToken returns the user of a service account
// token this server's key signed for the API: system:serviceaccount:NS:NAME
// in system:serviceaccounts and system:serviceaccounts:NS, while the
// service account exists with the token's uid and the object the token is
// bound to exists (or was deleted less than a minute ago). Other tokens are
// satoken.ErrInvalid or ErrTokenRevoked, with the reason.
func (s *Server) AuthenticateServiceAccountToken(ctx context.Context, token string) (UserInfo, error) {
	u, _, err := s.authenticateServiceAccount(ctx, token, apiAudiences)
	return u, err
}

// apiAudiences are the audiences of tokens for the API.
var apiAudiences = []string{satoken.Issuer}

// authenticateServiceAccount is AuthenticateServiceAccountToken for a
// token meant for one of audiences; it also returns those the token is
// valid for.
func (s *Server) authenticateServiceAccount(ctx context.Context, token string, audiences []string) (UserInfo, []string, error) {
	if s.cfg.ServiceAccountTokens == nil {
		return UserInfo{}, nil, fmt.Errorf("%w: this server issues none", satoken.ErrInvalid)
	}
	now := s.cfg.Now()
	c, err := s.cfg.ServiceAccountTokens.Verify(token, audiences, now)
	if err != nil {
		return UserInfo{}, nil, err
	}
	core := s.byGV["v1"]
	if c.Legacy {
		if err := s.checkTokenSecret(ctx, core["secrets"], c, token); err != nil {
			return UserInfo{}, nil, err
		}
		c.Secret = nil // checked: by content, not uid
	}
	checks := []struct {
		res       *resource
		ns        string
		ref       *satoken.Ref
		deletable bool
	}{
		{core["serviceaccounts"], c.Namespace, &c.ServiceAccount, false},
		{core["pods"], c.Namespace, c.Pod, true},
		{core["secrets"], c.Namespace, c.Secret, true},
	}
	for _, ch := range checks {
		if ch.ref == nil {
			continue
		}
		m, err := s.currentMeta(ctx, ch.res, ch.ns, ch.ref.Name)
		switch {
		case apierrors.IsNotFound(err):
			return UserInfo{}, nil, fmt.Errorf("%w: %s %s/%s was deleted", ErrTokenRevoked, ch.res.singular, ch.ns, ch.ref.Name)
		case err != nil:
			return UserInfo{}, nil, err
		case string(m.GetUID()) != ch.ref.UID:
			return UserInfo{}, nil, fmt.Errorf("%w: %s %s/%s was recreated (uid %s, the token's %s)", ErrTokenRevoked, ch.res.singular, ch.ns, ch.ref.Name, m.GetUID(), ch.ref.UID)
		case m.GetDeletionTimestamp() != nil && (!ch.deletable || m.GetDeletionTimestamp().Add(boundDeletedGrace).Before(now)):
			return UserInfo{}, nil, fmt.Errorf("%w: %s %s/%s is being deleted", ErrTokenRevoked, ch.res.singular, ch.ns, ch.ref.Name)
		}
	}
	u := UserInfo{Name: c.Username(), Groups: c.Groups(), UID: c.ServiceAccount.UID,
		Extra: map[string][]string{"authentication.kubernetes.io/credential-id": {"JTI=" + c.ID}}}
	if c.Pod != nil {
		u.Extra["authentication.kubernetes.io/pod-name"], u.Extra["authentication.kubernetes.io/pod-uid"] = []string{c.Pod.Name}, []string{c.Pod.UID}
	}
	if c.Node != nil {
		u.Extra["authentication.kubernetes.io/node-name"] = []string{c.Node.Name}
	}
	return u, slices.DeleteFunc(slices.Clone(audiences), func(a string) bool { return !slices.Contains(c.Audiences, a) }), nil
}

// tokenReview decides a TokenReview (kube-rbac-proxy, metrics-server and
// Vault ask it): the token's user and the audiences, among those asked
// (the API's when none), it is valid for. A token that is not valid is
// answered with authenticated false and the reason, not an error.
func tokenReview(s *Server, rq reviewRequest, obj runtime.Object) error {
	rev := obj.(*authenticationv1.TokenReview)
	if rev.Spec.Token == "" {
		return apierrors.NewBadRequest("token is required for TokenReview in authentication")
	}
	audiences := rev.Spec.Audiences
	if len(audiences) == 0 {
		audiences = apiAudiences
	}
	rev.Status = authenticationv1.TokenReviewStatus{}
	var user UserInfo
	var err error
	switch {
	case satoken.LooksLikeToken(rev.Spec.Token):
		user, rev.Status.Audiences, err = s.authenticateServiceAccount(rq.ctx, rev.Spec.Token, audiences)
	case s.cfg.BearerTokens == nil || !slices.Contains(audiences, satoken.Issuer):
		err = fmt.Errorf("%w: not a token for audiences %q", satoken.ErrInvalid, audiences)
	default:
		// Skiff's own bearer tokens are for the API only.
		user, err = s.cfg.BearerTokens(rev.Spec.Token)
		rev.Status.Audiences = apiAudiences
	}
	if err != nil {
		rev.Status.Audiences, rev.Status.Error = nil, err.Error()
		return nil
	}
	rev.Status.Authenticated, rev.Status.User = true, user.authentication()
	return nil
}

// checkTokenSecret: a Secret's token is valid while that Secret, of type
// kubernetes.io/service-account-token for the token's account, holds it.
func (s *Server) checkTokenSecret(ctx context.Context, secrets *resource, c satoken.Claims, token string) error {
	obj, err := s.cfg.Store.Get(ctx, secrets.reg, c.Namespace, c.Secret.Name, registry.GetOptions{ResourceVersion: "0"})
	if apierrors.IsNotFound(err) {
		obj, err = s.cfg.Store.Get(ctx, secrets.reg, c.Namespace, c.Secret.Name, registry.GetOptions{})
	}
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: secret %s/%s was deleted", ErrTokenRevoked, c.Namespace, c.Secret.Name)
	}
	if err != nil {
		return err
	}
	sec := obj.(*corev1.Secret)
	if sec.Type != corev1.SecretTypeServiceAccountToken || sec.Annotations[corev1.ServiceAccountNameKey] != c.ServiceAccount.Name ||
		subtle.ConstantTimeCompare(sec.Data[corev1.ServiceAccountTokenKey], []byte(token)) != 1 || sec.DeletionTimestamp != nil {
		return fmt.Errorf("%w: secret %s/%s no longer holds it", ErrTokenRevoked, c.Namespace, c.Secret.Name)
	}
	return nil
}

// currentMeta reads an object's metadata from the local replica, and
// from the latest state if the replica does not have it (yet).
func (s *Server) currentMeta(ctx context.Context, res *resource, ns, name string) (metav1.Object, error) {
	obj, err := s.cfg.Store.Get(ctx, res.reg, ns, name, registry.GetOptions{ResourceVersion: "0"})
	if apierrors.IsNotFound(err) {
		obj, err = s.cfg.Store.Get(ctx, res.reg, ns, name, registry.GetOptions{})
	}
	if err != nil {
		return nil, err
	}
	return meta.Accessor(obj)
}

// boundUIDMismatch says that ref's uid is not its object's, as
// kube-apiserver says it.
func boundUIDMismatch(ref *authenticationv1.BoundObjectReference) error {
	return fmt.Errorf("the UID in the bound object reference (%s) does not match the UID in record. The object might have been deleted and then recreated", ref.UID)
}
