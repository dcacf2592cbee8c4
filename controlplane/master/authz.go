package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/controlplane/internal/apiserver"
	"github.com/skiff-sh/skiff/controlplane/internal/authn"
	"github.com/skiff-sh/skiff/controlplane/internal/authz"
	"github.com/skiff-sh/skiff/controlplane/internal/registry"
)

// rbacAuthorizer is a running authz.RBAC over this master's replica:
// informers of the four RBAC resources read through the registry in
// process. stop ends them and waits.
type rbacAuthorizer struct {
	*authz.RBAC
	synced []cache.InformerSynced
	stop   func()
}

// runAuthorizer starts the RBAC informers; wait for synced before
// authorizing.
func runAuthorizer(ctx context.Context, reg *registry.Store, api *apiserver.Server) (rbacAuthorizer, error) {
	kinds := []struct {
		plural string
		obj    runtime.Object
	}{
		{"roles", &rbacv1.Role{}}, {"clusterroles", &rbacv1.ClusterRole{}},
		{"rolebindings", &rbacv1.RoleBinding{}}, {"clusterrolebindings", &rbacv1.ClusterRoleBinding{}},
	}
	infs := make([]cache.SharedIndexInformer, len(kinds))
	for i, k := range kinds {
		res := api.Resource(rbacv1.GroupName, k.plural)
		if res == nil {
			return rbacAuthorizer{}, fmt.Errorf("master: the API serves no %s", k.plural)
		}
		lw := &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return reg.List(ctx, res, "", registry.ListOptions{ResourceVersion: o.ResourceVersion, ResourceVersionMatch: o.ResourceVersionMatch, Limit: o.Limit, Continue: o.Continue})
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return reg.Watch(ctx, res, "", registry.ListOptions{ResourceVersion: o.ResourceVersion, ResourceVersionMatch: o.ResourceVersionMatch, AllowBookmarks: o.AllowWatchBookmarks, SendInitialEvents: o.SendInitialEvents})
			},
		}
		infs[i] = cache.NewSharedIndexInformer(lw, k.obj, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, len(infs))
	for _, inf := range infs {
		go func() {
			defer func() { done <- struct{}{} }()
			inf.RunWithContext(ctx)
		}()
	}
	a := authz.New(rbaclisters.NewRoleLister(infs[0].GetIndexer()), rbaclisters.NewClusterRoleLister(infs[1].GetIndexer()),
		rbaclisters.NewRoleBindingLister(infs[2].GetIndexer()), rbaclisters.NewClusterRoleBindingLister(infs[3].GetIndexer()))
	synced := make([]cache.InformerSynced, len(infs))
	for i, inf := range infs {
		synced[i] = inf.HasSynced
	}
	return rbacAuthorizer{RBAC: a, synced: synced,
		stop: func() {
			cancel()
			for range infs {
				<-done
			}
		},
	}, nil
}

// authorizerRef is the authorizer of the API server's access reviews, set
// before the API serves.
type authorizerRef struct{ *authz.RBAC }

// waitSynced waits until the authorizer has read the RBAC objects, or ctx ends.
func (a rbacAuthorizer) waitSynced(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), a.synced...) {
		return fmt.Errorf("master: loading RBAC objects: %w", ctx.Err())
	}
	return nil
}

// authorizeRequest answers r with 403 and returns false unless u may make
// it; join requests are the join handler's to decide.
func authorizeRequest(a *authz.RBAC, log *slog.Logger, w http.ResponseWriter, r *http.Request, u authn.User) bool {
	who := authz.User{Name: u.Name, Groups: u.Groups}
	if authz.Superuser(who) {
		return true // without reading the request: the controllers' and the admin's are most
	}
	attrs := authz.RequestAttributes(r)
	attrs.User = who
	if d := a.Authorize(attrs); !d.Allowed {
		log.Debug("request forbidden", "user", u.Name, "groups", u.Groups, "verb", attrs.Verb, "group", attrs.APIGroup, "resource", attrs.Resource,
			"subresource", attrs.Subresource, "namespace", attrs.Namespace, "name", attrs.Name, "path", attrs.Path)
		writeAPIError(w, authz.Forbidden(attrs, d.Reason))
		return false
	}
	return true
}

// authorizeImpersonation answers with 403 and returns false unless u may
// act as what the Impersonate-* headers of r ask: the user (a service
// account's name is the account), each group, the uid and each extra
// value, each an "impersonate" of users, groups, serviceaccounts, uids or
// userextras, as kube-apiserver checks them.
func authorizeImpersonation(a *authz.RBAC, w http.ResponseWriter, r *http.Request, u authn.User) bool {
	who := authz.User{Name: u.Name, Groups: u.Groups}
	var asks []authz.Attributes
	ask := func(group, resource, sub, ns, name string) {
		asks = append(asks, authz.Attributes{User: who, Verb: "impersonate", ResourceRequest: true, APIGroup: group, Resource: resource, Subresource: sub, Namespace: ns, Name: name})
	}
	name := r.Header.Get(authn.ImpersonateUserHeader)
	if rest, ok := strings.CutPrefix(name, "system:serviceaccount:"); ok && strings.Count(rest, ":") == 1 {
		ns, sa, _ := strings.Cut(rest, ":")
		ask("", "serviceaccounts", "", ns, sa)
	} else {
		ask("", "users", "", "", name)
	}
	for _, g := range r.Header.Values(authn.ImpersonateGroupHeader) {
		ask("", "groups", "", "", g)
	}
	if uid := r.Header.Get(authn.ImpersonateUIDHeader); uid != "" {
		ask("authentication.k8s.io", "uids", "", "", uid)
	}
	for k, vs := range r.Header {
		if key, ok := strings.CutPrefix(k, authn.ImpersonateExtraPrefix); ok {
			key, _ = url.PathUnescape(strings.ToLower(key))
			for _, v := range vs {
				ask("authentication.k8s.io", "userextras", key, "", v)
			}
		}
	}
	for _, attrs := range asks {
		if d := a.Authorize(attrs); !d.Allowed {
			writeAPIError(w, authz.Forbidden(attrs, d.Reason))
			return false
		}
	}
	return true
}

// ensureRBAC creates the default cluster roles and bindings, and brings
// those that an administrator has not marked autoupdate "false" up to
// date (adding what they lack; nothing is removed).
func ensureRBAC(ctx context.Context, reg *registry.Store, api *apiserver.Server) error {
	roles, bindings := api.Resource(rbacv1.GroupName, "clusterroles"), api.Resource(rbacv1.GroupName, "clusterrolebindings")
	if roles == nil || bindings == nil {
		return errors.New("master: the API serves no cluster roles")
	}
	for _, def := range authz.DefaultClusterRoles() {
		err := ensure(ctx, reg, roles, &def, func(cur runtime.Object) (runtime.Object, bool) {
			return authz.ReconcileClusterRole(cur.(*rbacv1.ClusterRole), &def)
		})
		if err != nil {
			return fmt.Errorf("master: cluster role %s: %w", def.Name, err)
		}
	}
	for _, def := range authz.DefaultClusterRoleBindings() {
		err := ensure(ctx, reg, bindings, &def, func(cur runtime.Object) (runtime.Object, bool) {
			return authz.ReconcileClusterRoleBinding(cur.(*rbacv1.ClusterRoleBinding), &def)
		})
		if err != nil {
			return fmt.Errorf("master: cluster role binding %s: %w", def.Name, err)
		}
	}
	return nil
}
