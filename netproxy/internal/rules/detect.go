package rules

import (
	"context"
	"os/exec"
	"strings"
)

// RandomFullySupported reports whether the iptables binary at path (e.g.
// "iptables") knows MASQUERADE --random-fully, by reading its help text.
// It runs a command, unlike Compute: call it once at start and pass the
// answer in Input.MasqueradeRandomFully.
func RandomFullySupported(ctx context.Context, path string) bool {
	out, err := exec.CommandContext(ctx, path, "-j", "MASQUERADE", "--help").CombinedOutput()
	if err != nil {
		return false
	}
	return strings.Contains(string(out), "--random-fully")
}
