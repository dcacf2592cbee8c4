package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestWorkerLossInLab is issue 5's node-loss acceptance in the lab: kill a
// worker's agent and cut its links; its pods are replaced by Running pods
// on the other worker within 15 s and the Service's endpoints follow. The
// masters evict after 2 s (--default-toleration-seconds; Kubernetes: 300).
func TestWorkerLossInLab(t *testing.T) {
	al := startAgentLab(t, "--default-toleration-seconds=2", "--node-monitor-grace-period=6s")
	al.apply(fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: %s
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`, al.Images().Echo))
	// Ready pods by node, and the endpoints' addresses.
	state := func() (byNode map[string][]string, endpoints string, err error) {
		out, err := al.kubectl("get", "pods", "-n", al.ns, "-l", "app=web", "-o",
			`jsonpath={range .items[*]}{.spec.nodeName} {.status.podIP} {.status.conditions[?(@.type=="Ready")].status} {.metadata.deletionTimestamp}{"\n"}{end}`)
		if err != nil {
			return nil, "", fmt.Errorf("%v: %s", err, out)
		}
		byNode = map[string][]string{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(l)
			if len(f) == 3 && f[2] == "True" {
				byNode[f[0]] = append(byNode[f[0]], f[1])
			}
		}
		endpoints, err = al.kubectl("get", "endpoints", "-n", al.ns, "web", "-o", "jsonpath={.subsets[*].addresses[*].ip}")
		return byNode, endpoints, err
	}
	al.waitFor(2*time.Minute, "4 ready pods on both workers", func() error {
		byNode, eps, err := state()
		if err != nil {
			return err
		}
		if len(byNode["w0"]) == 0 || len(byNode["w1"]) == 0 || len(byNode["w0"])+len(byNode["w1"]) != 4 || len(strings.Fields(eps)) != 4 {
			return fmt.Errorf("ready pods %v, endpoints %q", byNode, eps)
		}
		return nil
	})

	lost := time.Now()
	if err := al.KillAgent(1); err != nil {
		t.Fatal(err)
	}
	if err := al.CutLinks(al.Worker(1)); err != nil {
		t.Fatal(err)
	}
	al.waitFor(15*time.Second, "4 ready pods on w0 only, and the endpoints with them", func() error {
		byNode, eps, err := state()
		if err != nil {
			return err
		}
		if len(byNode["w0"]) != 4 {
			return fmt.Errorf("ready pods %v", byNode)
		}
		want := strings.Join(byNode["w0"], " ")
		for _, ip := range strings.Fields(eps) {
			if !strings.Contains(" "+want+" ", " "+ip+" ") {
				return fmt.Errorf("endpoints %q still name %s, not a ready pod on w0 (%s)", eps, ip, want)
			}
		}
		if len(strings.Fields(eps)) != 4 {
			return fmt.Errorf("endpoints %q, want the 4 pods on w0", eps)
		}
		return nil
	})
	t.Logf("worker lost → 4 replacement pods Running and Ready on w0, endpoints updated: %v", time.Since(lost).Round(100*time.Millisecond))
}
