package authn

import (
	"errors"
	"net/http"
	"slices"
	"testing"
)

func TestImpersonated(t *testing.T) {
	tests := []struct {
		name    string
		headers map[string][]string
		want    *User // nil: no impersonation
		wantErr bool
	}{
		{name: "none", headers: nil},
		{name: "user", headers: map[string][]string{"Impersonate-User": {"jane"}},
			want: &User{Name: "jane", Groups: []string{GroupAuthenticated}}},
		{name: "user and groups", headers: map[string][]string{"Impersonate-User": {"jane"}, "Impersonate-Group": {"devs", "ops"}},
			want: &User{Name: "jane", Groups: []string{"devs", "ops", GroupAuthenticated}}},
		{name: "service account", headers: map[string][]string{"Impersonate-User": {"system:serviceaccount:ci:runner"}},
			want: &User{Name: "system:serviceaccount:ci:runner", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:ci", GroupAuthenticated}}},
		{name: "anonymous", headers: map[string][]string{"Impersonate-User": {"system:anonymous"}},
			want: &User{Name: "system:anonymous", Groups: []string{"system:unauthenticated"}}},
		{name: "groups without a user", headers: map[string][]string{"Impersonate-Group": {"devs"}}, wantErr: true},
		{name: "extra without a user", headers: map[string][]string{"Impersonate-Extra-Scopes": {"x"}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, vs := range tt.headers {
				for _, v := range vs {
					h.Add(k, v)
				}
			}
			u, ok, err := Impersonated(h)
			if tt.wantErr {
				if !errors.Is(err, ErrImpersonation) {
					t.Errorf("got %+v, %v, %v; want ErrImpersonation", u, ok, err)
				}
				return
			}
			if err != nil || ok != (tt.want != nil) {
				t.Fatalf("got %+v, %v, %v; want %+v", u, ok, err, tt.want)
			}
			if tt.want != nil && (u.Name != tt.want.Name || !slices.Equal(u.Groups, tt.want.Groups)) {
				t.Errorf("got %+v, want %+v", u, *tt.want)
			}
		})
	}
}
