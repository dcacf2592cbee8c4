// Package testapi is for tests outside controlplane (the agent's,
// netproxy's): a real in-process Kubernetes API server over a real
// single-node Raft store, and a deadline-bound wait for a condition.
// It publishes controlplane/internal/apitest; no controllers run.
package testapi

import (
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

// Start starts an API server for the test and returns an admin client
// configuration for it; it stops when the test ends.
func Start(t testing.TB) *rest.Config { return apitest.Start(t) }

// WaitFor polls cond until it returns nil, failing the test with what and
// cond's last error when timeout passes first.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	apitest.WaitFor(t, timeout, what, cond)
}
