package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// This file holds the kubectl acceptance scenario: one script of real
// kubectl commands, each with the exit code and output upstream kubectl
// gives against kube-apiserver, run against a follower master and again
// while the leader master is killed and restarted under it.

// kubectlRunner runs the real kubectl against one kubeconfig, with its home,
// discovery cache and temp dir in the test's temp dir. The cache is shared
// by the runner's commands, as a user's is.
type kubectlRunner struct {
	kubeconfig, home, cache, tmp string
}

func newKubectlRunner(t *testing.T, kubeconfig string) *kubectlRunner {
	t.Helper()
	dir := t.TempDir()
	k := &kubectlRunner{kubeconfig: kubeconfig, home: filepath.Join(dir, "home"), cache: filepath.Join(dir, "cache"), tmp: filepath.Join(dir, "tmp")}
	for _, d := range []string{k.home, k.tmp} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// command returns the kubectl command for args, ended with ctx.
func (k *kubectlRunner) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", k.kubeconfig, "--cache-dir", k.cache}, args...)...)
	// TMPDIR: kubectl diff writes the live and merged objects there.
	cmd.Env = []string{"HOME=" + k.home, "PATH=" + os.Getenv("PATH"), "TMPDIR=" + k.tmp}
	return cmd
}

// run runs kubectl to completion (at most a minute) and returns its output
// and exit code.
func (k *kubectlRunner) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := k.command(ctx, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("kubectl %s: not done within a minute (%v)\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out.String(), errb.String())
	case err == nil:
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	default:
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// kubectlWatch is a kubectl running in the background (such as get -w),
// its output collected as it comes.
type kubectlWatch struct {
	args   []string
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	out bytes.Buffer // stdout and stderr, interleaved
}

func (w *kubectlWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.Write(p)
}

func (w *kubectlWatch) output() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

// start starts kubectl args in the background. The command is stopped by
// stop or, at the latest, when the test ends.
func (k *kubectlRunner) start(t *testing.T, args ...string) *kubectlWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &kubectlWatch{args: args, cancel: cancel, done: make(chan struct{})}
	cmd := k.command(ctx, args...)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(w.stop)
	return w
}

// stop kills the command and waits for it; it may be called more than once.
func (w *kubectlWatch) stop() {
	w.cancel()
	<-w.done
}

// waitFor waits until the output matches re; it fails the test when the
// command exits first or after timeout.
func (w *kubectlWatch) waitFor(t *testing.T, re string, timeout time.Duration) {
	t.Helper()
	rx := regexp.MustCompile(re)
	waitUntil(t, timeout, fmt.Sprintf("kubectl %s to print %q", strings.Join(w.args, " "), re), func(context.Context) error {
		out := w.output()
		if rx.MatchString(out) {
			return nil
		}
		select {
		case <-w.done:
			t.Fatalf("kubectl %s exited; its output:\n%s\nwant it to match %q", strings.Join(w.args, " "), out, re)
		default:
		}
		return fmt.Errorf("output so far:\n%s", out)
	})
}

// kstep is one step of a kubectl script: a kubectl command and what it must
// print, or an action (do) such as a fault or a check of a background watch.
type kstep struct {
	args   []string
	code   int      // the exit code
	out    []string // regular expressions stdout must match
	notOut []string // regular expressions stdout must not match
	// errOut are regular expressions stderr must match; when there are none,
	// stderr must be empty.
	errOut []string
	save   string // when set, stdout is written to this file

	do func(t *testing.T)
}

// runScript runs the steps in order. A wrong exit code ends the test, as a
// later step would fail for the wrong reason; wrong output is reported and
// the script goes on.
func (k *kubectlRunner) runScript(t *testing.T, steps []kstep) {
	t.Helper()
	for i, s := range steps {
		if s.do != nil {
			s.do(t)
			continue
		}
		cmd := fmt.Sprintf("step %d: kubectl %s", i, strings.Join(s.args, " "))
		start := time.Now()
		out, errOut, code := k.run(t, s.args...)
		if code != s.code {
			t.Fatalf("%s: got exit code %d, want %d\nstdout: %s\nstderr: %s", cmd, code, s.code, out, errOut)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Logf("%s took %v", cmd, d.Round(time.Millisecond))
		}
		for _, re := range s.out {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("%s: got stdout\n%s\nwant it to match %q (stderr %q)", cmd, out, re, errOut)
			}
		}
		for _, re := range s.notOut {
			if regexp.MustCompile(re).MatchString(out) {
				t.Errorf("%s: got stdout\n%s\nwant it not to match %q", cmd, out, re)
			}
		}
		if len(s.errOut) == 0 && errOut != "" {
			t.Errorf("%s: got stderr %q, want none", cmd, errOut)
		}
		for _, re := range s.errOut {
			if !regexp.MustCompile(re).MatchString(errOut) {
				t.Errorf("%s: got stderr %q, want it to match %q", cmd, errOut, re)
			}
		}
		if s.save != "" {
			if err := os.WriteFile(s.save, []byte(out), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// acceptance holds what one run of the acceptance script is about.
type acceptance struct {
	id string // unique per run: the namespaces, labels and node names derive from it
	// hooks are run at the script's named points ("kill", "restart",
	// "restarted"); a missing hook is skipped.
	hooks map[string]func(t *testing.T)
}

// The manifests of the script. %[1]s is the namespace, %[2]s the run's id.
const (
	acceptManifest = `apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
  labels: {e2e: %[2]s}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: c1
  namespace: %[1]s
  labels: {e2e: %[2]s}
data:
  k: v
---
apiVersion: v1
kind: Secret
metadata:
  name: s1
  namespace: %[1]s
data:
  password: aHVudGVyMg==
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: %[1]s
  labels: {app: web}
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
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: %[1]s
spec:
  serviceName: db
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: redis
        image: redis:7
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: %[1]s
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: busybox:1.36
        command: ["sleep", "infinity"]
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: %[1]s
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: 80
`
	acceptBad = `apiVersion: v1
kind: ConfigMap
metadata:
  name: bad
  namespace: %[1]s
bogus: 1
data:
  k: v
`
	acceptSSA = `apiVersion: v1
kind: ConfigMap
metadata:
  name: ssa
  namespace: %[1]s
data:
  k: %[3]s
`
	acceptBoundPod = `apiVersion: v1
kind: Pod
metadata:
  name: bound
  namespace: %[1]s
  labels: {app: bound}
spec:
  nodeName: node-%[2]s
  containers:
  - name: main
    image: busybox:1.36
    command: ["sleep", "3600"]
`
)

// acceptanceScript returns the kubectl acceptance script of the issue:
// api-resources, cluster-info, explain; apply of a multi-document manifest
// with default validation, again unchanged, again changed (strategic merge
// patch), apply --server-side with a conflict, diff; get with -o
// wide|yaml|json|name|jsonpath, -l, --field-selector, -A, --sort-by and -w;
// describe, label, annotate, patch of the three types, scale; create of a
// namespace, configmap, secret, deployment and service; run, expose;
// replace of a stale object; delete with each cascade mode.
func acceptanceScript(t *testing.T, k *kubectlRunner, a acceptance) []kstep {
	t.Helper()
	ns, nsB := "acc-"+a.id, "acc-"+a.id+"-b"
	node := "node-" + a.id
	dir := t.TempDir()
	file := func(name, format string, more ...any) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(fmt.Sprintf(format, append([]any{ns, a.id}, more...)...)), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	manifest := file("manifest.yaml", acceptManifest)
	// The changed manifest: new data, replicas, image and a second port.
	changed := file("changed.yaml", strings.NewReplacer(
		"  k: v\n", "  k: v2\n",
		"replicas: 2", "replicas: 3",
		"image: nginx:1.26", "image: nginx:1.27",
		"    targetPort: 80\n", "    targetPort: 80\n  - name: https\n    port: 443\n    targetPort: 8443\n",
	).Replace(acceptManifest))
	bad := file("bad.yaml", acceptBad)
	ssaOne, ssaTwo := file("ssa-one.yaml", acceptSSA, "one"), file("ssa-two.yaml", acceptSSA, "two")
	boundPod := file("bound.yaml", acceptBoundPod)
	stale, fresh := filepath.Join(dir, "stale.yaml"), filepath.Join(dir, "fresh.yaml")
	server := readKubeconfigServer(t, k.kubeconfig)

	hook := func(name string) kstep {
		return kstep{do: func(t *testing.T) {
			if h := a.hooks[name]; h != nil {
				t.Logf("script: %s", name)
				h(t)
			}
		}}
	}
	var watch *kubectlWatch
	watchShows := func(re string) kstep {
		return kstep{do: func(t *testing.T) { watch.waitFor(t, re, 30*time.Second) }}
	}
	n := func(args ...string) []string { return append([]string{"-n", ns}, args...) }
	// rootCA waits for the leader's root-ca-cert-publisher to give a new
	// namespace its kube-root-ca.crt, which the lists below then show.
	rootCA := func(namespace string) kstep {
		return kstep{do: func(t *testing.T) {
			waitUntil(t, 30*time.Second, "kube-root-ca.crt in "+namespace, func(context.Context) error {
				if _, errOut, code := k.run(t, "-n", namespace, "get", "configmap", "kube-root-ca.crt", "-o", "name"); code != 0 {
					return errors.New(errOut)
				}
				return nil
			})
		}}
	}
	// caData is how jsonpath prints its data.
	caData := `kube-root-ca\.crt=\{"ca\.crt":"-----BEGIN CERTIFICATE-----\\n[^\n]+-----END CERTIFICATE-----\\n"\}\n`
	q := regexp.QuoteMeta
	ip := `10\.\d+\.\d+\.\d+`
	conflict := `the object has been modified; please apply your changes to the latest version and try again`

	return []kstep{
		// Discovery, cluster-info and explain.
		{args: []string{"api-resources"}, out: []string{
			`^NAME\s+SHORTNAMES\s+APIVERSION\s+NAMESPACED\s+KIND\n`,
			`\nconfigmaps\s+cm\s+v1\s+true\s+ConfigMap\n`,
			`\nnamespaces\s+ns\s+v1\s+false\s+Namespace\n`,
			`\npods\s+po\s+v1\s+true\s+Pod\n`,
			`\nsecrets\s+v1\s+true\s+Secret\n`,
			`\nservices\s+svc\s+v1\s+true\s+Service\n`,
			`\ndaemonsets\s+ds\s+apps/v1\s+true\s+DaemonSet\n`,
			`\ndeployments\s+deploy\s+apps/v1\s+true\s+Deployment\n`,
			`\nstatefulsets\s+sts\s+apps/v1\s+true\s+StatefulSet\n`,
		}, notOut: []string{`pods/`}},
		{args: []string{"api-resources", "--api-group=apps", "-o", "name"}, out: []string{
			`^controllerrevisions\.apps\ndaemonsets\.apps\ndeployments\.apps\nreplicasets\.apps\nstatefulsets\.apps\n$`,
		}},
		{args: []string{"cluster-info"}, out: []string{
			// The cluster DNS service (kube-system/kube-dns) shows as
			// CoreDNS, as on kubeadm's clusters.
			`^Kubernetes control plane is running at ` + q(server) + "\nCoreDNS is running at " + q(server) + `/api/v1/namespaces/kube-system/services/kube-dns:dns/proxy` + "\n\nTo further debug and diagnose cluster problems, use 'kubectl cluster-info dump'.\n$",
		}},
		{args: []string{"explain", "pod.spec.containers"}, out: []string{
			`(?m)^KIND:\s+Pod$`, `(?m)^VERSION:\s+v1$`, `(?m)^FIELD: containers <\[\]Container>$`,
			`(?m)^  image\t<string>$`, `(?m)^  name\t<string> -required-$`,
		}},

		// apply with the default (strict, server-side) validation.
		{args: []string{"apply", "-f", bad}, code: 1, errOut: []string{
			`^Error from server \(BadRequest\): error when creating "` + q(bad) + `": ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "bogus"\n$`,
		}},
		{args: []string{"apply", "-f", manifest}, out: []string{"^" +
			"namespace/" + ns + " created\n" +
			"configmap/c1 created\n" +
			"secret/s1 created\n" +
			"deployment.apps/web created\n" +
			"statefulset.apps/db created\n" +
			"daemonset.apps/agent created\n" +
			"service/web created\n$",
		}},
		rootCA(ns),
		// A watch from here to the end of the script.
		{do: func(t *testing.T) { watch = k.start(t, n("get", "configmaps", "-w", "--output-watch-events")...) }},
		watchShows(`(?m)^EVENT\s+NAME\s+DATA\s+AGE\nADDED\s+c1\s+1\s+\S+$`),
		hook("kill"),
		{args: []string{"apply", "-f", manifest}, out: []string{"^" +
			"namespace/" + ns + " unchanged\n" +
			"configmap/c1 unchanged\n" +
			"secret/s1 unchanged\n" +
			"deployment.apps/web unchanged\n" +
			"statefulset.apps/db unchanged\n" +
			"daemonset.apps/agent unchanged\n" +
			"service/web unchanged\n$",
		}},
		hook("restart"),
		{args: []string{"diff", "-f", manifest}, out: []string{`^$`}},
		{args: []string{"diff", "-f", changed}, code: 1, out: []string{
			`(?m)^diff -u -N \S+/apps\.v1\.Deployment\.` + ns + `\.web \S+/apps\.v1\.Deployment\.` + ns + `\.web$`,
			`(?m)^-  replicas: 2\n\+  replicas: 3$`,
			`(?m)^-      - image: nginx:1\.26\n\+      - image: nginx:1\.27$`,
			`(?m)^-  k: v\n\+  k: v2$`,
			`(?m)^\+  - name: https$`,
		}, notOut: []string{`Secret`, `StatefulSet`, `DaemonSet`, `Namespace`}},
		{args: []string{"apply", "-f", changed}, out: []string{"^" +
			"namespace/" + ns + " unchanged\n" +
			"configmap/c1 configured\n" +
			"secret/s1 unchanged\n" +
			"deployment.apps/web configured\n" +
			"statefulset.apps/db unchanged\n" +
			"daemonset.apps/agent unchanged\n" +
			"service/web configured\n$",
		}},
		watchShows(`(?m)^MODIFIED\s+c1\s+1\s+\S+$`),
		// The strategic merge patch kept what the server defaulted.
		{args: n("get", "deployment", "web", "-o", `jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].imagePullPolicy} {.spec.template.spec.containers[0].ports[0].protocol} {.metadata.generation}`),
			out: []string{`^3 nginx:1\.27 IfNotPresent TCP 2$`}},
		{args: n("get", "service", "web", "-o", `jsonpath={.spec.ports[*].name} {.spec.ports[*].port} {.spec.ports[*].targetPort}`),
			out: []string{`^http https 80 443 80 8443$`}},
		{args: []string{"diff", "-f", changed}, out: []string{`^$`}},

		// Server-side apply: create, a conflict with another manager, forced.
		{args: []string{"apply", "--server-side", "-f", ssaOne}, out: []string{`^configmap/ssa serverside-applied\n$`}},
		{args: []string{"apply", "--server-side", "--field-manager=other", "-f", ssaTwo}, code: 1, errOut: []string{
			`^error: Apply failed with 1 conflict: conflict with "kubectl": \.data\.k\n`,
			`--force-conflicts`,
		}},
		{args: []string{"apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", ssaTwo}, out: []string{`^configmap/ssa serverside-applied\n$`}},
		{args: n("get", "configmap", "ssa", "-o", `jsonpath={.data.k} {.metadata.managedFields[*].manager}`), out: []string{`^two (kubectl )?other$`}},
		{args: []string{"apply", "--server-side", "-f", changed}, out: []string{"^" +
			"namespace/" + ns + " serverside-applied\n" +
			"configmap/c1 serverside-applied\n" +
			"secret/s1 serverside-applied\n" +
			"deployment.apps/web serverside-applied\n" +
			"statefulset.apps/db serverside-applied\n" +
			"daemonset.apps/agent serverside-applied\n" +
			"service/web serverside-applied\n$",
		}},
		{args: []string{"diff", "--server-side", "-f", changed}, out: []string{`^$`}},

		// create.
		{args: []string{"create", "namespace", nsB}, out: []string{`^namespace/` + nsB + " created\n$"}},
		rootCA(nsB),
		{args: []string{"create", "namespace", nsB}, code: 1, errOut: []string{`^Error from server \(AlreadyExists\): namespaces "` + nsB + `" already exists\n$`}},
		{args: n("create", "configmap", "c2", "--from-literal=a=b"), out: []string{"^configmap/c2 created\n$"}},
		{args: n("create", "configmap", "c2", "--from-literal=a=b"), code: 1, errOut: []string{`^error: failed to create configmap: configmaps "c2" already exists\n$`}},
		{args: []string{"-n", nsB, "create", "configmap", "a1", "--from-literal=a=b"}, out: []string{"^configmap/a1 created\n$"}},
		{args: []string{"-n", nsB, "create", "configmap", "d1", "--from-literal=a=b"}, out: []string{"^configmap/d1 created\n$"}},
		{args: n("create", "secret", "generic", "s2", "--from-literal=p=q"), out: []string{"^secret/s2 created\n$"}},
		{args: n("create", "deployment", "d2", "--image=nginx:1.26", "--replicas=2"), out: []string{"^deployment.apps/d2 created\n$"}},
		{args: n("create", "service", "clusterip", "s3", "--tcp=5678:8080"), out: []string{"^service/s3 created\n$"}},
		{args: n("create", "service", "nodeport", "np", "--tcp=80:8080"), out: []string{"^service/np created\n$"}},
		{args: n("run", "x", "--image=busybox:1.36", "--labels=app=x", "--", "sleep", "3600"), out: []string{"^pod/x created\n$"}},
		{args: []string{"apply", "-f", boundPod}, out: []string{"^pod/bound created\n$"}},
		{args: n("expose", "deployment", "web", "--name=web-exp", "--port=8080", "--target-port=80"), out: []string{"^service/web-exp exposed\n$"}},
		{args: n("expose", "pod", "x", "--port=90"), out: []string{"^service/x exposed\n$"}},
		{args: n("get", "service", "web-exp", "-o", `jsonpath={.spec.selector.app} {.spec.ports[0].port} {.spec.ports[0].targetPort}`), out: []string{`^web 8080 80$`}},

		// get: output formats.
		// Only the pods the script made: the controllers' are Pending too (no nodes).
		{args: n("get", "pods", "bound", "x", "-o", "wide"), out: []string{
			`^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE\s+NOMINATED NODE\s+READINESS GATES\n` +
				`bound\s+0/1\s+Pending\s+0\s+\S+\s+<none>\s+` + node + `\s+<none>\s+<none>\n` +
				`x\s+0/1\s+Pending\s+0\s+\S+\s+<none>\s+<none>\s+<none>\s+<none>\n$`,
		}},
		{args: n("get", "services", "-o", "wide"), out: []string{
			`^NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)\s+AGE\s+SELECTOR\n`,
			`(?m)^np\s+NodePort\s+` + ip + `\s+<none>\s+80:3\d{4}/TCP\s+\S+\s+app=np$`,
			`(?m)^s3\s+ClusterIP\s+` + ip + `\s+<none>\s+5678/TCP\s+\S+\s+app=s3$`,
			`(?m)^web\s+ClusterIP\s+` + ip + `\s+<none>\s+80/TCP,443/TCP\s+\S+\s+app=web$`,
			`(?m)^web-exp\s+ClusterIP\s+` + ip + `\s+<none>\s+8080/TCP\s+\S+\s+app=web$`,
			`(?m)^x\s+ClusterIP\s+` + ip + `\s+<none>\s+90/TCP\s+\S+\s+app=x$`,
		}},
		{args: n("get", "deployments", "-o", "wide"), out: []string{
			`^NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE\s+CONTAINERS\s+IMAGES\s+SELECTOR\n` +
				`d2\s+0/2\s+[0-2]\s+0\s+\S+\s+nginx\s+nginx:1\.26\s+app=d2\n` +
				`web\s+0/3\s+[0-3]\s+0\s+\S+\s+nginx\s+nginx:1\.27\s+app=web\n$`,
		}},
		{args: n("get", "configmap", "c1", "-o", "yaml"), out: []string{
			`(?m)^kind: ConfigMap$`, `(?m)^  k: v2$`, `(?m)^  name: c1$`, `(?m)^  namespace: ` + ns + `$`,
			`(?m)^  uid: [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`,
			`(?m)^  resourceVersion: "[1-9]\d*"$`,
			`(?m)^  creationTimestamp: "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"$`,
			`(?m)^    kubectl.kubernetes.io/last-applied-configuration: \|$`,
		}, notOut: []string{`managedFields`}},
		{args: n("get", "configmap", "c2", "-o", "yaml", "--show-managed-fields"), out: []string{
			`(?m)^  managedFields:\n  - apiVersion: v1\n    fieldsType: FieldsV1\n    fieldsV1:\n      f:data:\n        \.: \{\}\n        f:a: \{\}\n` +
				`    manager: kubectl-create\n    operation: Update\n    time: "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\n  name: c2\n`,
		}},
		// apply --server-side took over what client-side apply owned, as
		// upstream kubectl migrates it.
		{args: n("get", "configmap", "c1", "-o", "yaml", "--show-managed-fields"), out: []string{
			`(?m)^    manager: kubectl\n    operation: Apply$`,
			`(?m)^    manager: kubectl-last-applied\n    operation: Apply$`,
		}, notOut: []string{`kubectl-client-side-apply`}},
		{args: n("get", "secret", "s1", "-o", "json"), out: []string{
			`(?m)^    "kind": "Secret",$`, `(?m)^        "password": "aHVudGVyMg=="$`, `(?m)^    "type": "Opaque"$`,
			`(?m)^        "uid": "[0-9a-f-]{36}"`,
		}},
		{args: n("get", "configmaps", "-o", "json"), out: []string{`(?m)^    "kind": "List",$`, `(?m)^            "kind": "ConfigMap",$`}},
		{args: n("get", "deployments,statefulsets,daemonsets,services", "-o", "name"), out: []string{"^" +
			"deployment.apps/d2\ndeployment.apps/web\nstatefulset.apps/db\ndaemonset.apps/agent\n" +
			"service/np\nservice/s3\nservice/web\nservice/web-exp\nservice/x\n$"}},
		{args: n("get", "configmaps", "-o", `jsonpath={range .items[*]}{.metadata.name}={.data}{"\n"}{end}`), out: []string{"^" +
			`c1={"k":"v2"}` + "\n" + `c2={"a":"b"}` + "\n" + caData + `ssa={"k":"two"}` + "\n$"}},
		{args: n("get", "secret", "s2", "-o", "jsonpath={.data.p}"), out: []string{`^cQ==$`}},
		{args: n("get", "secrets"), out: []string{`^NAME\s+TYPE\s+DATA\s+AGE\ns1\s+Opaque\s+1\s+\S+\ns2\s+Opaque\s+1\s+\S+\n$`}},
		{args: n("get", "statefulsets,daemonsets"), out: []string{
			`(?m)^statefulset.apps/db\s+0/1\s+\S+$`,
			`(?m)^daemonset.apps/agent\s+0\s+0\s+0\s+0\s+0\s+<none>\s+\S+$`,
		}},

		// get: selectors, all namespaces, sorting.
		{args: n("get", "configmaps", "-l", "e2e="+a.id, "-o", "name"), out: []string{"^configmap/c1\n$"}},
		{args: n("get", "configmaps", "-l", "e2e!="+a.id, "-o", "name"), out: []string{"^configmap/c2\nconfigmap/kube-root-ca.crt\nconfigmap/ssa\n$"}},
		{args: n("get", "pods", "-l", "app in (x,y)", "-o", "name"), out: []string{"^pod/x\n$"}},
		{args: n("get", "configmaps", "--field-selector", "metadata.name=c2", "-o", "name"), out: []string{"^configmap/c2\n$"}},
		{args: n("get", "configmaps", "--field-selector", "metadata.name!=c2", "-o", "name"), out: []string{"^configmap/c1\nconfigmap/kube-root-ca.crt\nconfigmap/ssa\n$"}},
		{args: []string{"get", "pods", "-A", "--field-selector", "spec.nodeName=" + node, "-o", "name"}, out: []string{"^pod/bound\n$"}},
		{args: n("get", "pods", "-l", "app=x", "--field-selector", "status.phase=Pending,spec.nodeName=", "-o", "name"), out: []string{"^pod/x\n$"}},
		{args: n("get", "pods", "--field-selector", "status.phase=Running"), errOut: []string{"^No resources found in " + ns + " namespace.\n$"}},
		{args: []string{"-n", nsB, "label", "configmaps", "--all", "e2e=" + a.id}, out: []string{"^configmap/a1 labeled\nconfigmap/d1 labeled\nconfigmap/kube-root-ca.crt labeled\n$"}},
		{args: []string{"get", "namespaces", "-l", "e2e=" + a.id, "-o", "name"}, out: []string{"^namespace/" + ns + "\n$"}},
		{args: []string{"get", "configmaps", "-A", "-l", "e2e=" + a.id}, out: []string{`^NAMESPACE\s+NAME\s+DATA\s+AGE\n` +
			nsB + `\s+a1\s+1\s+\S+\n` + nsB + `\s+d1\s+1\s+\S+\n` + nsB + `\s+kube-root-ca\.crt\s+1\s+\S+\n` + ns + `\s+c1\s+1\s+\S+\n$`}},
		{args: []string{"get", "configmaps", "-A", "-l", "e2e=" + a.id, "--sort-by=.metadata.name"}, out: []string{`^NAMESPACE\s+NAME\s+DATA\s+AGE\n` +
			nsB + `\s+a1\s+1\s+\S+\n` + ns + `\s+c1\s+1\s+\S+\n` + nsB + `\s+d1\s+1\s+\S+\n` + nsB + `\s+kube-root-ca\.crt\s+1\s+\S+\n$`}},
		{args: []string{"get", "configmaps", "-A", "-l", "e2e=" + a.id, "--sort-by=.metadata.name", "-o", "name"}, out: []string{"^configmap/a1\nconfigmap/c1\nconfigmap/d1\nconfigmap/kube-root-ca.crt\n$"}},

		// -w sees later changes.
		{args: n("create", "configmap", "w1", "--from-literal=a=b"), out: []string{"^configmap/w1 created\n$"}},
		watchShows(`(?m)^ADDED\s+w1\s+1\s+\S+$`),
		{args: n("patch", "configmap", "w1", "--type=merge", "-p", `{"data":{"b":"c"}}`), out: []string{"^configmap/w1 patched\n$"}},
		watchShows(`(?m)^MODIFIED\s+w1\s+2\s+\S+$`),
		{args: n("delete", "configmap", "w1"), out: []string{`^configmap "w1" deleted` + "\n$"}},
		watchShows(`(?m)^DELETED\s+w1\s+2\s+\S+$`),

		// describe.
		{args: n("describe", "deployment", "web"), out: []string{
			`(?m)^Name:\s+web$`, `(?m)^Namespace:\s+` + ns + `$`, `(?m)^Selector:\s+app=web$`,
			// The controllers are rolling it out: no node runs the pods.
			`(?m)^Replicas:\s+3 desired \| \d+ updated \| \d+ total \| 0 available \| \d+ unavailable$`,
			`(?m)^StrategyType:\s+RollingUpdate$`, `(?m)^RollingUpdateStrategy:\s+25% max unavailable, 25% max surge$`,
			`(?m)^   nginx:\n    Image:\s+nginx:1\.27\n    Port:\s+80/TCP$`,
		}},
		{args: n("describe", "service", "web"), out: []string{
			`(?m)^Name:\s+web$`, `(?m)^Selector:\s+app=web$`, `(?m)^Type:\s+ClusterIP$`,
			`(?m)^IP:\s+` + ip + `$`, `(?m)^Port:\s+http\s+80/TCP\nTargetPort:\s+80/TCP$`,
			`(?m)^Port:\s+https\s+443/TCP\nTargetPort:\s+8443/TCP$`, `(?m)^Session Affinity:\s+None$`,
		}},
		{args: n("describe", "pod", "x"), out: []string{
			`(?m)^Name:\s+x$`, `(?m)^Node:\s+<none>$`, `(?m)^Labels:\s+app=x$`, `(?m)^Status:\s+Pending$`,
			`(?m)^    Image:\s+busybox:1\.36$`, `(?m)^    Args:\n      sleep\n      3600$`, `(?m)^QoS Class:\s+BestEffort$`,
		}},
		{args: n("describe", "pod", "bound"), out: []string{
			`(?m)^Name:\s+bound$`, `(?m)^Node:\s+` + node + `/$`, `(?m)^Status:\s+Pending$`,
			`(?m)^    Command:\n      sleep\n      3600$`,
		}},

		// label and annotate.
		{args: n("label", "deployment", "web", "tier=front"), out: []string{"^deployment.apps/web labeled\n$"}},
		{args: n("label", "deployment", "web", "tier=back"), code: 1, errOut: []string{`^error: 'tier' already has a value \(front\), and --overwrite is false` + "\n$"}},
		{args: n("label", "deployment", "web", "tier=back", "--overwrite"), out: []string{"^deployment.apps/web labeled\n$"}},
		{args: n("get", "deployments", "-l", "tier=back", "-o", "name"), out: []string{"^deployment.apps/web\n$"}},
		{args: n("label", "deployment", "web", "tier-"), out: []string{"^deployment.apps/web unlabeled\n$"}},
		{args: n("annotate", "service", "web", "note=hello"), out: []string{"^service/web annotated\n$"}},
		{args: n("get", "service", "web", "-o", "jsonpath={.metadata.annotations.note}"), out: []string{"^hello$"}},
		{args: n("annotate", "service", "web", "note-"), out: []string{"^service/web annotated\n$"}},

		// patch of the three types.
		{args: n("patch", "deployment", "web", "-p", `{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.28"}]}}}}`), out: []string{"^deployment.apps/web patched\n$"}},
		{args: n("patch", "deployment", "web", "--type=merge", "-p", `{"metadata":{"labels":{"patched":"merge"}}}`), out: []string{"^deployment.apps/web patched\n$"}},
		{args: n("patch", "deployment", "web", "--type=json", "-p", `[{"op":"replace","path":"/spec/replicas","value":4}]`), out: []string{"^deployment.apps/web patched\n$"}},
		// (no change) on an object no controller writes meanwhile.
		{args: n("patch", "service", "web", "-p", `{"spec":{"sessionAffinity":"None"}}`), out: []string{`^service/web patched \(no change\)` + "\n$"}},
		// The strategic merge patch merged the container by name: its port stayed.
		{args: n("get", "deployment", "web", "-o", `jsonpath={.spec.template.spec.containers[*].image} {.spec.template.spec.containers[0].ports[0].containerPort} {.metadata.labels.patched} {.spec.replicas} {.metadata.generation}`),
			out: []string{`^nginx:1\.28 80 merge 4 4$`}},

		// scale.
		{args: n("scale", "deployment", "web", "--replicas=5"), out: []string{"^deployment.apps/web scaled\n$"}},
		{args: n("scale", "statefulset", "db", "--replicas=2"), out: []string{"^statefulset.apps/db scaled\n$"}},
		{args: n("scale", "deployment", "web", "--current-replicas=3", "--replicas=1"), code: 1, errOut: []string{"^error: Expected replicas to be 3, was 5\n$"}},
		{args: n("get", "deployment,statefulset", "-o", `jsonpath={.items[*].spec.replicas}`), out: []string{`^2 5 2$`}},

		// replace: a stale object is refused (409), a fresh one replaces.
		{args: n("get", "configmap", "c2", "-o", "yaml"), save: stale},
		{args: n("label", "configmap", "c2", "v=1"), out: []string{"^configmap/c2 labeled\n$"}},
		{args: []string{"replace", "-f", stale}, code: 1, errOut: []string{
			`^Error from server \(Conflict\): error when replacing "` + q(stale) + `": Operation cannot be fulfilled on configmaps "c2": ` + q(conflict) + "\n$",
		}},
		{args: n("get", "configmap", "c2", "-o", "yaml"), save: fresh},
		{args: []string{"replace", "-f", fresh}, out: []string{"^configmap/c2 replaced\n$"}},
		hook("restarted"),

		// delete with each cascade mode (TestGarbageCollectorKubectl checks
		// what goes with them), then pods.
		{args: n("create", "deployment", "bg", "--image=nginx:1.26"), out: []string{"^deployment.apps/bg created\n$"}},
		{args: n("create", "deployment", "fg", "--image=nginx:1.26"), out: []string{"^deployment.apps/fg created\n$"}},
		{args: n("create", "deployment", "or", "--image=nginx:1.26"), out: []string{"^deployment.apps/or created\n$"}},
		{args: n("delete", "deployment", "bg", "--cascade=background"), out: []string{`^deployment.apps "bg" deleted` + "\n$"}},
		{args: n("delete", "deployment", "fg", "--cascade=foreground"), out: []string{`^deployment.apps "fg" deleted` + "\n$"}},
		{args: n("delete", "deployment", "or", "--cascade=orphan"), out: []string{`^deployment.apps "or" deleted` + "\n$"}},
		{args: n("get", "deployment", "bg"), code: 1, errOut: []string{`^Error from server \(NotFound\): deployments.apps "bg" not found` + "\n$"}},
		{args: n("get", "deployments", "-o", "name"), out: []string{"^deployment.apps/d2\ndeployment.apps/web\n$"}},
		{args: n("delete", "pod", "x"), out: []string{`^pod "x" deleted` + "\n$"}},
		{args: n("delete", "pod", "bound", "--force", "--grace-period=0"), out: []string{`^pod "bound" force deleted` + "\n$"},
			errOut: []string{`^Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.` + "\n$"}},
		{args: n("get", "pods", "x", "bound"), code: 1, errOut: []string{`^Error from server \(NotFound\): pods "x" not found` + "\n" + `Error from server \(NotFound\): pods "bound" not found` + "\n$"}},
		{args: n("delete", "services", "web-exp", "x", "s3"), out: []string{`^service "web-exp" deleted` + "\n" + `service "x" deleted` + "\n" + `service "s3" deleted` + "\n$"}},
		{args: n("delete", "configmap", "c2", "--wait=false"), out: []string{`^configmap "c2" deleted` + "\n$"}},
		watchShows(`(?m)^DELETED\s+c2\s+1\s+\S+$`),
		{do: func(t *testing.T) { watch.stop() }},
	}
}

// TestKubectlAcceptance runs the acceptance script with kubectl pointed at a
// follower master.
func TestKubectlAcceptance(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not on PATH")
	}
	ms := startMasters(t, 3)
	leader := ms.waitLeader(t)
	follower := (leader + 1) % len(ms.nodes)
	kc := ms.waitAPI(t, follower)
	t.Logf("kubectl → %s (follower; %s leads)", ms.nodes[follower].name, ms.nodes[leader].name)
	k := newKubectlRunner(t, kc)
	k.runScript(t, acceptanceScript(t, k, acceptance{id: "f"}))
}

// TestKubectlAcceptanceThroughLeaderKill runs the acceptance script with
// kubectl pointed at a follower while the leader master is killed with
// SIGKILL (straight after the first apply, with a watch open; the next
// command needs a new leader) and started again one command later, without
// waiting for it: most of the script runs while the restarted master
// catches up. No command is retried by the test: kubectl's own behaviour
// must get every step through. At the end every master, the restarted one
// included, serves the same objects.
//
// The restart comes soon after the kill on purpose: after a longer outage
// the leader's replication back-off (hashicorp/raft, up to 10 s) delays the
// returning master's catch-up beyond the 5 s its startup gives the read of
// the cluster CA, and it exits (a known bug, not what this test is about).
func TestKubectlAcceptanceThroughLeaderKill(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not on PATH")
	}
	ms := startMasters(t, 3)
	leader := ms.waitLeader(t)
	follower := (leader + 1) % len(ms.nodes)
	kc := ms.waitAPI(t, follower)
	t.Logf("kubectl → %s (follower; %s leads and is killed)", ms.nodes[follower].name, ms.nodes[leader].name)

	var restarted chan error // the result of the restart, once it started
	defer func() {
		// A script that failed between restart and restarted: the launch
		// touches the master's fields, so wait for it before the cleanup.
		if restarted != nil {
			<-restarted
		}
	}()
	hooks := map[string]func(t *testing.T){
		"kill": func(t *testing.T) { ms.kill(t, leader) },
		"restart": func(t *testing.T) {
			restarted = make(chan error, 1)
			go func() {
				var err error
				for attempt := 1; attempt <= 10; attempt++ {
					if err = ms.launch(t, leader, ms.nodes[leader].args()); !errors.Is(err, errAddrInUse) {
						break
					}
					time.Sleep(200 * time.Millisecond) // back-off between process starts, not before an assertion
				}
				restarted <- err
			}()
		},
		"restarted": func(t *testing.T) {
			err := <-restarted
			restarted = nil
			if err != nil {
				t.Fatalf("restarting %s: %v", ms.nodes[leader].name, err)
			}
			ms.waitCaughtUp(t, leader)
		},
	}
	k := newKubectlRunner(t, kc)
	k.runScript(t, acceptanceScript(t, k, acceptance{id: "k", hooks: hooks}))
	if restarted != nil || ms.nodes[leader].proc == nil || !ms.nodes[leader].running() {
		t.Fatalf("%s was not restarted by the script", ms.nodes[leader].name)
	}

	// Every master serves the same objects, read through its own API.
	ms.waitSameApplied(t)
	args := []string{"get", "namespaces,configmaps,secrets,deployments,statefulsets,daemonsets,services,pods", "-A", "-o", "name"}
	want, errOut, code := k.run(t, args...)
	if code != 0 || !strings.Contains(want, "deployment.apps/web\n") {
		t.Fatalf("kubectl %s through %s: got exit code %d, stdout %q, stderr %q; want deployment.apps/web among them", strings.Join(args, " "), ms.nodes[follower].name, code, want, errOut)
	}
	for i := range ms.nodes {
		got, errOut, code := newKubectlRunner(t, ms.waitAPI(t, i)).run(t, args...)
		if code != 0 || got != want {
			t.Errorf("through %s: got exit code %d, stdout\n%s\nstderr %q; want through %s:\n%s", ms.nodes[i].name, code, got, errOut, ms.nodes[follower].name, want)
		}
	}
}
