package apiserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// manifest is a multi-document manifest of every served group; bad adds
// an unknown field to the Deployment spec.
const manifest = `apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  color: blue
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.26
        ports:
        - containerPort: 80
          name: http
        resources:
          limits: {cpu: 500m, memory: 128Mi}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: http
`

// TestKubectlOpenAPI runs the kubectl commands that need /openapi/v3:
// apply, create and replace with default (strict) validation, and explain.
func TestKubectlOpenAPI(t *testing.T) {
	ts := startServer(t)
	k := newKubectl(t, ts.URL)
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml")
	badManifest := strings.Replace(manifest, "  replicas: 2\n", "  replicas: 2\n  foo: bar\n", 1)
	for path, body := range map[string]string{good: manifest, bad: strings.Replace(badManifest, "name: web\n  namespace", "name: web2\n  namespace", 1)} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	steps := []kubectlStep{
		{args: []string{"apply", "-f", good}, wantOut: []string{`namespace/shop created`, `configmap/settings created`, `deployment.apps/web created`, `service/web created`}},
		{args: []string{"apply", "-f", good}, wantOut: []string{`namespace/shop unchanged`, `configmap/settings unchanged`, `deployment.apps/web unchanged`, `service/web unchanged`}},
		{args: []string{"apply", "-f", bad}, wantCode: 1, wantErr: `strict decoding error: unknown field "spec.foo"`},
		{args: []string{"create", "-f", bad}, wantCode: 1, wantErr: `strict decoding error: unknown field "spec.foo"`},
		{args: []string{"-n", "shop", "get", "deploy", "web2"}, wantCode: 1, wantErr: `deployments.apps "web2" not found`},
		{args: []string{"replace", "-f", good}, wantOut: []string{`namespace/shop replaced`, `deployment.apps/web replaced`, `service/web replaced`}},
		{args: []string{"explain", "pod.spec.containers"}, wantOut: []string{`(?s)FIELD: containers <\[\]Container>.*List of containers belonging to the pod`, `\n  image\s+<string>\n`, `\n  ports\s+<\[\]ContainerPort>\n`}},
		{args: []string{"explain", "deployment.spec.replicas"}, wantOut: []string{`GROUP:\s+apps`, `FIELD: replicas <integer>`, `Number of desired pods`}},
	}
	k.runSteps(t, steps)
}
