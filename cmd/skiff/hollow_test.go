package main

import (
	"io"
	"testing"
)

func TestHollowRejectsBadUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"hollow"}, 2}, // no --kubeconfig
		{[]string{"hollow", "--kubeconfig", "k", "extra"}, 2},
		{[]string{"hollow", "--kubeconfig", "k", "--cpu", "lots"}, 2},
		{[]string{"hollow", "--kubeconfig", "/nonexistent/kubeconfig"}, 1},
	} {
		if got := run(t.Context(), tc.args, io.Discard, io.Discard); got != tc.want {
			t.Errorf("skiff %v: exit code %d, want %d", tc.args, got, tc.want)
		}
	}
}
