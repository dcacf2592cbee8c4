package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestDrainRespectsBudget: `kubectl drain` of a node running half of a
// Deployment's pods, with a PodDisruptionBudget allowing one unavailable:
// the evictions wait for replacements (429 until then, which kubectl
// retries), so at least three of the four pods are Ready at every
// moment, and the drain completes.
func TestDrainRespectsBudget(t *testing.T) {
	ms := startMasters(t, 1)
	cs := clientset(t, ms.apiConfig(t, 0))
	k := newKubectlRunner(t, ms.adminKubeconfig(t, 0))
	hollowNodes(t, cs, "8", "drain-1", "drain-2")
	census := watchPods(t, cs, "default", "app=db")

	k.mustRun(t, "apply", "-f", manifest(t, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: db}
spec:
  replicas: 4
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: registry.local/db:1}]}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: db}
spec:
  maxUnavailable: 1
  selector: {matchLabels: {app: db}}
`))
	k.mustRun(t, "rollout", "status", "deployment/db", "--timeout=60s")
	census.waitExactly(t, 4, "registry.local/db:1", 30*time.Second)
	waitUntil(t, 20*time.Second, "the budget allowing one disruption", func(context.Context) error {
		out, _, _ := k.run(t, "get", "pdb", "db")
		if !regexp.MustCompile(`\ndb\s+N/A\s+1\s+1\s+\d+s\n`).MatchString(out) {
			return fmt.Errorf("%q", out)
		}
		return nil
	})
	onNode := func(node string) int {
		pods, err := cs.CoreV1().Pods("default").List(t.Context(), metav1.ListOptions{LabelSelector: "app=db", FieldSelector: "spec.nodeName=" + node})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				n++
			}
		}
		return n
	}
	if n := onNode("drain-1"); n < 2 {
		t.Fatalf("%d pods on drain-1, want at least 2 (spread over two nodes) for the budget to matter", n)
	}

	census.watchInvariant(func(ready, live int) string {
		if ready < 3 {
			return fmt.Sprintf("%d ready, %d live (want ≥ 3 ready)", ready, live)
		}
		return ""
	})
	out := k.mustRun(t, "drain", "drain-1", "--ignore-daemonsets", "--timeout=90s")
	if !strings.Contains(out, "node/drain-1 drained") {
		t.Errorf("kubectl drain: %s", out)
	}
	census.waitExactly(t, 4, "registry.local/db:1", 30*time.Second)
	if violations, _ := census.result(); len(violations) > 0 {
		t.Errorf("the drain broke the budget: %v", violations)
	}
	if n := onNode("drain-1"); n != 0 {
		t.Errorf("%d pods left on the drained node", n)
	}
}
