package dns

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestParseResolvConf(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []string
		err     error
	}{
		{"debian", "domain example.com\nsearch example.com\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n", []string{"192.0.2.1:53", "192.0.2.2:53"}, nil},
		{"ipv6 and comments", "# generated\n; other comment\nnameserver 2001:db8::53 # primary\n  nameserver\t10.0.0.2\noptions ndots:5\n", []string{"[2001:db8::53]:53", "10.0.0.2:53"}, nil},
		{"systemd-resolved stub", "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n", []string{"127.0.0.53:53"}, nil},
		{"bad lines skipped", "nameserver\nnameserver not-an-ip\nnameservers 192.0.2.9\n#nameserver 192.0.2.8\nnameserver 192.0.2.7\n", []string{"192.0.2.7:53"}, nil},
		{"none", "search example.com\n", nil, ErrNoNameservers},
		{"empty", "", nil, ErrNoNameservers},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "resolv.conf")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := ParseResolvConf(path)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := ParseResolvConf(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want os.ErrNotExist", err)
	}
}
