package master

import (
	"strings"
	"testing"
)

// TestKubectlDeleteNamespace: `kubectl delete namespace` waits while the
// namespace controller deletes what is in it, and returns once the
// namespace is gone; a namespace of the same name starts empty.
func TestKubectlDeleteNamespace(t *testing.T) {
	dataDir, _ := startMaster(t)
	kc := KubeconfigPath(dataDir)
	for _, args := range [][]string{
		{"create", "namespace", "team"},
		{"-n", "team", "create", "configmap", "c1", "--from-literal=k=v"},
		{"-n", "team", "create", "secret", "generic", "s1", "--from-literal=k=v"},
		{"-n", "team", "create", "deployment", "web", "--image=nginx"},
		{"-n", "team", "run", "p1", "--image=busybox"},
	} {
		if out, err := kubectl(t, kc, args...); err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	out, err := kubectl(t, kc, "delete", "namespace", "team", "--timeout=60s")
	if err != nil || !strings.Contains(out, `namespace "team" deleted`) {
		t.Fatalf("kubectl delete namespace: %v\n%s", err, out)
	}
	if out, err := kubectl(t, kc, "get", "namespace", "team"); err == nil || !strings.Contains(out, `namespaces "team" not found`) {
		t.Fatalf("namespace after delete: %v\n%s", err, out)
	}
	if out, err := kubectl(t, kc, "create", "namespace", "team"); err != nil {
		t.Fatalf("re-create: %v\n%s", err, out)
	}
	// Nothing of the old one; the leader's kube-root-ca.crt comes back.
	out, err = kubectl(t, kc, "-n", "team", "get", "all,configmaps,secrets", "--field-selector", "metadata.name!=kube-root-ca.crt", "-o", "name")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("content of the new namespace: %v\n%q, want none", err, out)
	}
}

// TestDefaultServiceAccount: every namespace gets its default service
// account from the leader's service account controller.
func TestDefaultServiceAccount(t *testing.T) {
	dataDir, _ := startMaster(t)
	kc := KubeconfigPath(dataDir)
	if out, err := kubectl(t, kc, "create", "namespace", "team"); err != nil {
		t.Fatalf("kubectl create namespace: %v\n%s", err, out)
	}
	if out, err := kubectl(t, kc, "-n", "team", "wait", "--for=create", "serviceaccount/default", "--timeout=30s"); err != nil {
		t.Fatalf("kubectl wait for the default service account: %v\n%s", err, out)
	}
	if out, err := kubectl(t, kc, "-n", "default", "get", "serviceaccount", "default", "-o", "name"); err != nil || strings.TrimSpace(out) != "serviceaccount/default" {
		t.Fatalf("the default namespace's account: %v\n%s", err, out)
	}
}
