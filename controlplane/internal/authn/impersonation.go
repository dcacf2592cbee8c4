package authn

import (
	"errors"
	"net/http"
	"strings"
)

// The request headers a client (kubectl --as, --as-group) asks to act as
// someone else with, as Kubernetes names them.
const (
	ImpersonateUserHeader  = "Impersonate-User"
	ImpersonateGroupHeader = "Impersonate-Group"
	ImpersonateUIDHeader   = "Impersonate-Uid"
	ImpersonateExtraPrefix = "Impersonate-Extra-"
)

// Groups Kubernetes gives an impersonated user by its name.
const (
	userAnonymous            = "system:anonymous"
	groupUnauthenticated     = "system:unauthenticated"
	serviceAccountUserPrefix = "system:serviceaccount:"
	groupServiceAccounts     = "system:serviceaccounts"
)

// ErrImpersonation is returned for impersonation headers without the user
// they impersonate.
var ErrImpersonation = errors.New("requested impersonation of groups, a uid or extras without a user: set Impersonate-User")

// Impersonated returns the user a request asks to act as, and false when
// it asks for none. The user gets the groups asked for and those
// Kubernetes adds: system:authenticated (system:unauthenticated for
// system:anonymous), and for a service account
// (system:serviceaccount:NS:NAME) system:serviceaccounts and
// system:serviceaccounts:NS. Whether the requester may impersonate is the
// caller's decision.
func Impersonated(h http.Header) (User, bool, error) {
	name := h.Get(ImpersonateUserHeader)
	groups := h.Values(ImpersonateGroupHeader)
	if name == "" {
		if len(groups) > 0 || h.Get(ImpersonateUIDHeader) != "" || hasExtra(h) {
			return User{}, false, ErrImpersonation
		}
		return User{}, false, nil
	}
	if name == userAnonymous {
		return User{Name: name, Groups: append(groups, groupUnauthenticated)}, true, nil
	}
	if ns, _, ok := strings.Cut(strings.TrimPrefix(name, serviceAccountUserPrefix), ":"); ok && strings.HasPrefix(name, serviceAccountUserPrefix) {
		groups = append(groups, groupServiceAccounts, groupServiceAccounts+":"+ns)
	}
	return NewUser(name, groups), true, nil
}

func hasExtra(h http.Header) bool {
	for k := range h {
		if strings.HasPrefix(k, ImpersonateExtraPrefix) {
			return true
		}
	}
	return false
}
