package main

import (
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// TestAgentNodeLabels: --node-labels takes the labels a node may set on
// itself and refuses the others, as the kubelet does, before the masters
// would refuse the Node.
func TestAgentNodeLabels(t *testing.T) {
	for _, tc := range []struct {
		labels  string
		wantErr string
	}{
		{"zone=a,node.kubernetes.io/pool=gold,topology.kubernetes.io/zone=z1", ""},
		{"zone=a,node-role.kubernetes.io/worker=", "--node-labels: a node may not set node-role.kubernetes.io/worker on itself"},
		{"node-restriction.kubernetes.io/tier=db,example.k8s.io/x=y", "node-restriction.kubernetes.io/tier, example.k8s.io/x"},
	} {
		var f agentFlags
		fs := flag.NewFlagSet("agent", flag.ContinueOnError)
		f.register(fs, false)
		if err := fs.Parse([]string{"--node-name", "w0", "--node-labels", tc.labels}); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.config(slog.New(slog.NewTextHandler(io.Discard, nil)))
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("--node-labels %s: %v", tc.labels, err)
		case tc.wantErr == "" && cfg.Labels["zone"] != "a":
			t.Errorf("--node-labels %s: got labels %v", tc.labels, cfg.Labels)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("--node-labels %s: got %v, want an error with %q", tc.labels, err, tc.wantErr)
		}
	}
}
