package expansion

import "testing"

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "POD": "web-0", "EMPTY": ""}
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"$(A)", "1"},
		{"x-$(POD)-y", "x-web-0-y"},
		{"$(EMPTY)z", "z"},
		{"$(UNKNOWN)", "$(UNKNOWN)"},
		{"$$(A)", "$(A)"},
		{"$$", "$"},
		{"a$b", "a$b"},
		{"end$", "end$"},
		{"$(A", "$(A"},
		{"$(A)$(A)", "11"},
	} {
		if got := Expand(tc.in, vars); got != tc.want {
			t.Errorf("Expand(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if ExpandAll(nil, vars) != nil {
		t.Error("ExpandAll(nil) is not nil")
	}
}
