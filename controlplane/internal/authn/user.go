package authn

import (
	"context"
	"slices"
)

// GroupAuthenticated is the group every authenticated user is in, as in
// Kubernetes.
const GroupAuthenticated = "system:authenticated"

// User is who a request comes from, as authentication established it.
// Authorization decides what it may do.
type User struct {
	Name string
	// Groups always include GroupAuthenticated.
	Groups []string
}

// NewUser returns the user name in groups and GroupAuthenticated, as
// authentication makes users.
func NewUser(name string, groups []string) User {
	gs := slices.Clone(groups)
	if !slices.Contains(gs, GroupAuthenticated) {
		gs = append(gs, GroupAuthenticated)
	}
	return User{Name: name, Groups: gs}
}

type userKey struct{}

// WithUser returns a copy of ctx that carries u.
func WithUser(ctx context.Context, u User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom returns the user that WithUser put in ctx, and false when there is none.
func UserFrom(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(userKey{}).(User)
	return u, ok
}
