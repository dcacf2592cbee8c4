package dataplane

import (
	"errors"
	"testing"
)

func TestChanges(t *testing.T) {
	const base = "*nat\n:SKP-SERVICES - [0:0]\n:SKP-SVC-A - [0:0]\n:SKP-SEP-1 - [0:0]\n:SKP-SEP-2 - [0:0]\n" +
		"-A SKP-SERVICES -d 10.96.0.1/32 -j SKP-SVC-A\n" +
		"-A SKP-SVC-A -m statistic --mode random --probability 0.5000000000 -j SKP-SEP-1\n" +
		"-A SKP-SVC-A -j SKP-SEP-2\n" +
		"-A SKP-SEP-1 -j DNAT --to-destination 10.0.0.1:80\n" +
		"-A SKP-SEP-2 -j DNAT --to-destination 10.0.0.2:80\nCOMMIT\n"
	tests := []struct {
		name     string
		old, new string
		want     string
		err      error
	}{
		{name: "same", old: base, new: base, want: ""},
		{name: "same, comments and interleaving differ", old: base,
			new: "# generated\n*nat\n:SKP-SERVICES - [0:0]\n:SKP-SVC-A - [0:0]\n:SKP-SEP-1 - [0:0]\n:SKP-SEP-2 - [0:0]\n" +
				"-A SKP-SVC-A -m statistic --mode random --probability 0.5000000000 -j SKP-SEP-1\n" +
				"-A SKP-SEP-1 -j DNAT --to-destination 10.0.0.1:80\n" +
				"-A SKP-SERVICES -d 10.96.0.1/32 -j SKP-SVC-A\n" +
				"-A SKP-SVC-A -j SKP-SEP-2\n" +
				"-A SKP-SEP-2 -j DNAT --to-destination 10.0.0.2:80\nCOMMIT\n",
			want: ""},
		{name: "one endpoint replaced", old: base,
			new: "*nat\n:SKP-SERVICES - [0:0]\n:SKP-SVC-A - [0:0]\n:SKP-SEP-1 - [0:0]\n:SKP-SEP-3 - [0:0]\n" +
				"-A SKP-SERVICES -d 10.96.0.1/32 -j SKP-SVC-A\n" +
				"-A SKP-SVC-A -m statistic --mode random --probability 0.5000000000 -j SKP-SEP-1\n" +
				"-A SKP-SVC-A -j SKP-SEP-3\n" +
				"-A SKP-SEP-1 -j DNAT --to-destination 10.0.0.1:80\n" +
				"-A SKP-SEP-3 -j DNAT --to-destination 10.0.0.3:80\nCOMMIT\n",
			want: "*nat\n:SKP-SVC-A - [0:0]\n:SKP-SEP-3 - [0:0]\n:SKP-SEP-2 - [0:0]\n" +
				"-A SKP-SVC-A -m statistic --mode random --probability 0.5000000000 -j SKP-SEP-1\n" +
				"-A SKP-SVC-A -j SKP-SEP-3\n" +
				"-A SKP-SEP-3 -j DNAT --to-destination 10.0.0.3:80\n" +
				"-X SKP-SEP-2\nCOMMIT\n"},
		{name: "service removed", old: base, new: "*nat\n:SKP-SERVICES - [0:0]\nCOMMIT\n",
			want: "*nat\n:SKP-SERVICES - [0:0]\n:SKP-SVC-A - [0:0]\n:SKP-SEP-1 - [0:0]\n:SKP-SEP-2 - [0:0]\n" +
				"-X SKP-SVC-A\n-X SKP-SEP-1\n-X SKP-SEP-2\nCOMMIT\n"},
		{name: "everything removed", old: base, new: "*nat\nCOMMIT\n",
			want: "*nat\n:SKP-SERVICES - [0:0]\n:SKP-SVC-A - [0:0]\n:SKP-SEP-1 - [0:0]\n:SKP-SEP-2 - [0:0]\n" +
				"-X SKP-SVC-A\n-X SKP-SEP-1\n-X SKP-SEP-2\nCOMMIT\n"},
		{name: "rule for an undeclared chain", old: base, new: "*nat\n-A SKP-X -j RETURN\nCOMMIT\n", err: ErrBadPayload},
		{name: "foreign chain", old: base, new: "*nat\n:FOO - [0:0]\nCOMMIT\n", err: ErrBadPayload},
		{name: "other commands", old: base, new: "*nat\n:SKP-X - [0:0]\n-I SKP-X -j RETURN\nCOMMIT\n", err: ErrBadPayload},
		{name: "no COMMIT", old: base, new: "*nat\n:SKP-X - [0:0]\n", err: ErrBadPayload},
		{name: "two tables", old: base, new: "*nat\nCOMMIT\n*filter\nCOMMIT\n", err: ErrBadPayload},
		{name: "other table", old: base, new: "*filter\nCOMMIT\n", err: ErrBadPayload},
	}
	for _, tt := range tests {
		got, err := Changes([]byte(tt.old), []byte(tt.new))
		if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
			t.Errorf("%s: got error %v, want %v", tt.name, err, tt.err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%s: got:\n%s\nwant:\n%s", tt.name, got, tt.want)
		}
	}
}
