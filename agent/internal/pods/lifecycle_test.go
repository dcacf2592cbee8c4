package pods

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-sh/skiff/agent/imagebuild"
	"github.com/skiff-sh/skiff/agent/internal/containers"
	"github.com/skiff-sh/skiff/agent/internal/network"
	"github.com/skiff-sh/skiff/agent/internal/volumes"
	"github.com/skiff-sh/skiff/agent/runctest"
	"github.com/skiff-sh/skiff/controlplane/testapi"
)

// node is one agent's pod machinery over a real containerd, real CNI
// plugins and a real API server, for the lifecycle tests.
type node struct {
	t     *testing.T
	cs    kubernetes.Interface
	cfg   Config
	rtCfg containers.Config
	rt    *containers.Runtime
	ns    string
	stop  func()
	image string
}

var nodeSeq atomic.Int32

// startNode starts containerd, the API, and a Manager for node "n1".
func startNode(t *testing.T) *node {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: containerd, network namespaces, CNI")
	}
	for _, bin := range []string{"/usr/bin/containerd", "/usr/lib/cni/bridge", "/bin/busybox"} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("needs %s (make deps)", bin)
		}
	}
	// Short paths: containerd's socket path must fit in sun_path.
	dir, err := os.MkdirTemp("/tmp", "skp")
	if err != nil {
		t.Fatal(err)
	}
	// Last, once containerd and the shims are gone: runc's records outside
	// dir (the namespace's only when no other node's containers use it).
	t.Cleanup(func() {
		runctest.RemoveUnder(dir)
		runctest.RemoveNamespace("skiff-test")
		os.RemoveAll(dir)
	})
	ctx := context.Background()
	sock := filepath.Join(dir, "c.sock")
	pid, err := containers.StartDaemon(ctx, containers.DaemonConfig{Root: filepath.Join(dir, "root"), State: filepath.Join(dir, "state"), Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopDaemon(t, pid, dir) })

	seq := nodeSeq.Add(1)
	n := &node{t: t, ns: fmt.Sprintf("t%d-%d", os.Getpid(), seq)}
	n.cs = kubernetes.NewForConfigOrDie(testapi.Start(t))
	if _, err := n.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	n.rtCfg = containers.DefaultConfig()
	n.rtCfg.Address, n.rtCfg.Namespace, n.rtCfg.RunDir, n.rtCfg.LogDriver = sock, "skiff-test", filepath.Join(dir, "run"), exe
	n.rtCfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// Unique bridge and pod CIDR per test binary and node.
	octet := 100 + (os.Getpid()+int(seq))%100
	ncfg := network.DefaultConfig()
	ncfg.ConfDir, ncfg.CacheDir, ncfg.IPAMDir = filepath.Join(dir, "cni"), filepath.Join(dir, "cnicache"), filepath.Join(dir, "ipam")
	ncfg.Bridge = fmt.Sprintf("skt%d", octet)
	ncfg.PodCIDR = netip.MustParsePrefix(fmt.Sprintf("10.251.%d.0/24", octet))
	ncfg.ClusterCIDR = netip.MustParsePrefix("10.251.0.0/16")
	nw, err := network.New(ncfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", ncfg.Bridge).Run() })

	vcfg := volumes.DefaultConfig()
	vcfg.Client, vcfg.PodsDir, vcfg.Logger = n.cs, filepath.Join(dir, "pods"), n.rtCfg.Logger
	vols, err := volumes.New(vcfg)
	if err != nil {
		t.Fatal(err)
	}
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: n.cs.CoreV1().Events("")})
	t.Cleanup(b.Shutdown)

	n.cfg = DefaultConfig()
	n.cfg.Client, n.cfg.NodeName, n.cfg.NodeIP = n.cs, "n1", netip.MustParseAddr("127.0.0.1")
	n.cfg.Network, n.cfg.Volumes = nw, VolumesAdapter{vols}
	n.cfg.Recorder = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: "n1"})
	n.cfg.LogDir, n.cfg.PodsDir = filepath.Join(dir, "logs"), filepath.Join(dir, "pods")
	n.cfg.BackoffBase, n.cfg.BackoffMax, n.cfg.ResyncInterval = time.Second, 8*time.Second, 2*time.Second
	n.cfg.Logger = n.rtCfg.Logger

	// The test image, imported as `skiff image import` would.
	spec, err := imagebuild.Busybox("skiff.test/busybox:1")
	if err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	if err := imagebuild.WriteOCIArchive(&archive, spec); err != nil {
		t.Fatal(err)
	}
	n.image = "skiff.test/busybox:1"
	n.start()
	if _, err := n.rt.ImportImages(ctx, &archive); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.cleanupRuntime() })
	return n
}

// start starts a Runtime and a Manager, as an agent (re)starting does.
func (n *node) start() {
	n.t.Helper()
	rt, err := containers.New(n.rtCfg)
	if err != nil {
		n.t.Fatal(err)
	}
	n.rt = rt
	cfg := n.cfg
	cfg.Runtime = rt
	m, err := New(cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { rt.Run(ctx); done <- struct{}{} }()
	go func() { m.Run(ctx); done <- struct{}{} }()
	n.stop = func() {
		cancel()
		<-done
		<-done
		rt.Close()
	}
	n.t.Cleanup(func() {
		if n.stop != nil {
			n.stop()
			n.stop = nil
		}
	})
}

// restart stops the Manager and Runtime as if the agent died, then
// starts new ones.
func (n *node) restart() {
	n.stop()
	n.stop = nil
	n.start()
}

// cleanupRuntime removes every container and sandbox the test left.
func (n *node) cleanupRuntime() {
	if n.stop != nil {
		n.stop()
		n.stop = nil
	}
	rt, err := containers.New(n.rtCfg)
	if err != nil {
		return
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if cs, err := rt.Containers(ctx); err == nil {
		for _, c := range cs {
			rt.StopContainer(ctx, c.ID, 0)
			rt.RemoveContainer(ctx, c.ID)
		}
	}
	if sbs, err := rt.Sandboxes(ctx); err == nil {
		for _, sb := range sbs {
			if !sb.HostNetwork { // the node's namespace is this machine's
				n.cfg.Network.Teardown(ctx, sb.PodUID, sb.NetNS)
			}
			rt.RemoveSandbox(ctx, sb.PodUID)
		}
	}
}

// stopDaemon kills the test's containerd and its shims, and unmounts
// what they left under dir.
func stopDaemon(t *testing.T, pid int, dir string) {
	if pid > 0 {
		if p, err := os.FindProcess(pid); err == nil {
			p.Kill()
		}
	}
	exec.Command("pkill", "-9", "-f", "containerd-shim.*"+dir).Run()
	out, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir) {
			exec.Command("umount", "-l", f[4]).Run()
		}
	}
}

func (n *node) create(pod *corev1.Pod) *corev1.Pod {
	n.t.Helper()
	pod.Namespace = n.ns
	pod.Spec.NodeName = "n1"
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Image == "" {
			pod.Spec.Containers[i].Image = n.image
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Image == "" {
			pod.Spec.InitContainers[i].Image = n.image
		}
	}
	got, err := n.cs.CoreV1().Pods(n.ns).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		n.t.Fatal(err)
	}
	return got
}

func (n *node) waitPod(name, what string, timeout time.Duration, cond func(*corev1.Pod) error) *corev1.Pod {
	n.t.Helper()
	var last *corev1.Pod
	testapi.WaitFor(n.t, timeout, "pod "+name+": "+what, func() error {
		p, err := n.cs.CoreV1().Pods(n.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		last = p
		return cond(p)
	})
	return last
}

func (n *node) logs(p *corev1.Pod, container string) string {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == container {
			b, _ := os.ReadFile(filepath.Join(n.cfg.LogDir, p.Namespace+"_"+p.Name+"_"+string(p.UID), container, fmt.Sprint(cs.RestartCount)+".log"))
			return string(b)
		}
	}
	return ""
}

func running(p *corev1.Pod) error {
	if p.Status.Phase != corev1.PodRunning {
		return fmt.Errorf("phase %s, statuses %+v", p.Status.Phase, p.Status.ContainerStatuses)
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue {
			return fmt.Errorf("not ready: %s", c.Message)
		}
	}
	return nil
}

func sh(script string) []string { return []string{"sh", "-c", script} }

// TestPodLifecycle runs pods through the real runtime: shared emptyDir
// and localhost, init containers, crash loops with growing back-off,
// ErrImageNeverPull, graceful deletion with preStop, and an agent restart
// that adopts running containers.
func TestPodLifecycle(t *testing.T) {
	n := startNode(t)
	ctx := context.Background()

	marks := t.TempDir()
	// Two containers sharing an emptyDir and the network namespace; an
	// init container runs first.
	n.create(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr(int64(10)),
			Volumes: []corev1.Volume{
				{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: marks, Type: ptr(corev1.HostPathDirectoryOrCreate)}}},
			},
			InitContainers: []corev1.Container{{Name: "init", Command: sh("echo from-init > /data/init.txt"),
				VolumeMounts: []corev1.VolumeMount{{Name: "shared", MountPath: "/data"}}}},
			Containers: []corev1.Container{
				{Name: "server", Command: sh("echo hello-over-localhost > /www/index.html; trap 'echo got-TERM >> /host/marks; exit 0' TERM; httpd -f -p 8080 -h /www & wait"),
					VolumeMounts: []corev1.VolumeMount{{Name: "shared", MountPath: "/www"}, {Name: "host", MountPath: "/host"}},
					Lifecycle:    &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: sh("echo prestop-ran >> /host/marks")}}}},
				{Name: "client", Command: sh("until wget -q -O - http://127.0.0.1:8080/index.html; do sleep 0.2; done; cat /data/init.txt; hostname; trap 'exit 0' TERM; while true; do sleep 1; done"),
					VolumeMounts: []corev1.VolumeMount{{Name: "shared", MountPath: "/data"}}},
			},
		},
	})
	web := n.waitPod("web", "running with both containers", 90*time.Second, func(p *corev1.Pod) error {
		if err := running(p); err != nil {
			return err
		}
		if logs := n.logs(p, "client"); !strings.Contains(logs, "hello-over-localhost") || !strings.Contains(logs, "from-init") || !strings.Contains(logs, " web") {
			return fmt.Errorf("client logs %q", logs)
		}
		return nil
	})
	if web.Status.PodIP == "" || !strings.HasPrefix(web.Status.PodIP, "10.251.") {
		t.Fatalf("podIP %q, want one of the node's pod CIDR", web.Status.PodIP)
	}
	if web.Status.InitContainerStatuses[0].State.Terminated == nil || web.Status.InitContainerStatuses[0].State.Terminated.Reason != "Completed" {
		t.Fatalf("init container status %+v", web.Status.InitContainerStatuses[0].State)
	}

	crash := n.create(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "crash"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Command: sh("echo attempt; exit 3")}}},
	})
	_ = crash
	never := n.create(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "never"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "skiff.test/missing:1", ImagePullPolicy: corev1.PullNever}}},
	})
	_ = never
	n.waitPod("never", "ErrImageNeverPull", 30*time.Second, func(p *corev1.Pod) error {
		if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Waiting == nil || p.Status.ContainerStatuses[0].State.Waiting.Reason != "ErrImageNeverPull" {
			return fmt.Errorf("statuses %+v", p.Status.ContainerStatuses)
		}
		return nil
	})
	// Back-off grows: restarts at 0, 1, 2, 4 s... (BackoffBase 1 s).

	var backoffs []string // the distinct "back-off Ns" messages, in order
	n.waitPod("crash", "CrashLoopBackOff, 3 restarts", 60*time.Second, func(p *corev1.Pod) error {
		cs := p.Status.ContainerStatuses
		if len(cs) == 0 {
			return fmt.Errorf("no status")
		}
		if cs[0].State.Waiting != nil && cs[0].State.Waiting.Reason == "CrashLoopBackOff" {

			if b, _, _ := strings.Cut(cs[0].State.Waiting.Message, " restarting"); len(backoffs) == 0 || backoffs[len(backoffs)-1] != b {
				backoffs = append(backoffs, b)
			}
			if cs[0].LastTerminationState.Terminated == nil || cs[0].LastTerminationState.Terminated.ExitCode != 3 {
				return fmt.Errorf("lastState %+v", cs[0].LastTerminationState)
			}
		}
		if cs[0].RestartCount < 3 || len(backoffs) < 2 {
			return fmt.Errorf("restarts %d, back-offs seen %q", cs[0].RestartCount, backoffs)
		}
		return nil
	})

	if backoffs[0] != "back-off 1s" || backoffs[1] != "back-off 2s" {
		t.Fatalf("back-offs %q, want back-off 1s then 2s", backoffs)
	}

	// The agent dies and comes back: same containers, same IP, no restart.
	before := n.waitPod("web", "running", 10*time.Second, running)
	n.restart()
	after := n.waitPod("web", "still running after the agent restarted", 30*time.Second, func(p *corev1.Pod) error {
		if err := running(p); err != nil {
			return err
		}
		if p.ResourceVersion == before.ResourceVersion {
			return nil
		}
		return nil
	})
	for i := range before.Status.ContainerStatuses {
		b, a := before.Status.ContainerStatuses[i], after.Status.ContainerStatuses[i]
		if a.ContainerID != b.ContainerID || a.RestartCount != b.RestartCount {
			t.Fatalf("container %s after agent restart: id %s restarts %d, want %s %d", a.Name, a.ContainerID, a.RestartCount, b.ContainerID, b.RestartCount)
		}
	}
	if after.Status.PodIP != before.Status.PodIP {
		t.Fatalf("pod IP after agent restart %s, want %s", after.Status.PodIP, before.Status.PodIP)
	}

	// Graceful deletion: preStop runs, then SIGTERM; the object goes once
	// everything is released.
	w, err := n.cs.CoreV1().Pods(n.ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=web", ResourceVersion: after.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	if err := n.cs.CoreV1().Pods(n.ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testapi.WaitFor(t, 30*time.Second, "web deleted", func() error {
		_, err := n.cs.CoreV1().Pods(n.ns).Get(ctx, "web", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
	// As the kubelet, the agent wrote a terminal phase before letting
	// the object go: what counts finished pods sees how it ended.
	var lastPhase corev1.PodPhase
	for ev := range w.ResultChan() {
		if p, ok := ev.Object.(*corev1.Pod); ok {
			lastPhase = p.Status.Phase
		}
		if ev.Type == watch.Deleted {
			break
		}
	}
	if lastPhase != corev1.PodSucceeded && lastPhase != corev1.PodFailed {
		t.Fatalf("phase when deleted %q, want Succeeded or Failed", lastPhase)
	}
	if d := time.Since(start); d > 9*time.Second {
		t.Fatalf("graceful deletion took %v: the server exits on TERM at once", d)
	}
	if b, _ := os.ReadFile(filepath.Join(marks, "marks")); string(b) != "prestop-ran\ngot-TERM\n" {
		t.Fatalf("marks %q, want the preStop hook's line, then the TERM trap's", b)
	}
	testapi.WaitFor(t, 20*time.Second, "web's containers and sandbox removed", func() error {
		cs, err := n.rt.Containers(ctx)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.PodUID == string(web.UID) {
				return fmt.Errorf("container %s/%s left", c.Name, c.ID)
			}
		}
		sbs, err := n.rt.Sandboxes(ctx)
		if err != nil {
			return err
		}
		for _, sb := range sbs {
			if sb.PodUID == string(web.UID) {
				return fmt.Errorf("sandbox left")
			}
		}
		return nil
	})
}

func ptr[T any](v T) *T { return &v }

// TestMain lets the test binary serve as containerd's log driver, as the
// skiff binary does in production (`skiff log-driver`).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "log-driver" {
		os.Exit(containers.LogDriverMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// TestProbes: readiness gates the Ready condition; a failing liveness
// probe restarts the container.
func TestProbes(t *testing.T) {
	n := startNode(t)
	n.create(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probed"},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr(int64(1)), Containers: []corev1.Container{{
			Name: "c",
			// Ready after 2 s; alive for 4 s after each start.
			Command: sh("mkdir -p /www; touch /tmp/alive; httpd -p 8080 -h /www; sleep 2; touch /www/ready; sleep 2; rm /tmp/alive; sleep 3600"),
			Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{
				ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}},
				PeriodSeconds: 1, FailureThreshold: 1,
			},
			LivenessProbe: &corev1.Probe{
				ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/tmp/alive"}}},
				PeriodSeconds: 1, FailureThreshold: 1,
			},
		}}},
	})
	sawUnready := false
	n.waitPod("probed", "running but not ready, then ready", 60*time.Second, func(p *corev1.Pod) error {
		if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) == 0 {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		if !p.Status.ContainerStatuses[0].Ready {
			sawUnready = true
			return fmt.Errorf("not ready yet")
		}
		if !sawUnready {
			return fmt.Errorf("ready without having been seen unready first")
		}
		return running(p)
	})
	p := n.waitPod("probed", "restarted by its liveness probe", 60*time.Second, func(p *corev1.Pod) error {
		cs := p.Status.ContainerStatuses[0]
		if cs.RestartCount < 1 || cs.LastTerminationState.Terminated == nil {
			return fmt.Errorf("restarts %d", cs.RestartCount)
		}
		return nil
	})
	events, err := n.cs.CoreV1().Events(n.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var killing, unhealthy bool
	for _, e := range events.Items {
		killing = killing || (e.Reason == "Killing" && strings.Contains(e.Message, "failed liveness probe"))
		unhealthy = unhealthy || (e.Reason == "Unhealthy" && strings.HasPrefix(e.Message, "Liveness probe failed"))
	}
	if !killing || !unhealthy {
		t.Fatalf("events: Killing for liveness %v, Unhealthy %v (pod %s)", killing, unhealthy, p.Name)
	}
}

// TestConfigAndEnv: env from a ConfigMap, a Secret and the downward API
// ($(VAR) expanded); a configMap volume follows the ConfigMap's changes.
func TestConfigAndEnv(t *testing.T) {
	n := startNode(t)
	ctx := context.Background()
	if _, err := n.cs.CoreV1().ConfigMaps(n.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"greeting": "v1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.cs.CoreV1().Secrets(n.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sec"}, Data: map[string][]byte{"pw": []byte("s3cret")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Services: the API's own (default/kubernetes) and one of the pod's
	// namespace. The agent restarts so that its service informer starts
	// with them: a pod started before the informer has them would not get
	// their variables, on Kubernetes too.
	svcIP := map[string]string{}
	for _, sv := range []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "kubernetes"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: n.ns, Name: "web-api"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
	} {
		got, err := n.cs.CoreV1().Services(sv.Namespace).Create(ctx, sv, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			got, err = n.cs.CoreV1().Services(sv.Namespace).Get(ctx, sv.Name, metav1.GetOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
		svcIP[sv.Name] = got.Spec.ClusterIP
	}
	n.restart()
	n.create(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "linked"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr(int64(1)),
			Containers: []corev1.Container{{
				Name:    "c",
				Command: sh(`echo "svc: $WEB_API_SERVICE_HOST:$WEB_API_SERVICE_PORT_HTTP $WEB_API_PORT $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT $URL $WEB_API_SERVICE_PORT $KUBERNETES_PORT_443_TCP_ADDR"; sleep 3600`),
				Env:     []corev1.EnvVar{{Name: "URL", Value: "http://$(WEB_API_SERVICE_HOST)/"}, {Name: "WEB_API_SERVICE_PORT", Value: "mine"}},
			}},
		},
	})
	n.create(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "unlinked"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr(int64(1)),
			EnableServiceLinks:            ptr(false),
			Containers:                    []corev1.Container{{Name: "c", Command: sh(`echo "svc: [$WEB_API_SERVICE_HOST] $KUBERNETES_SERVICE_HOST"; sleep 3600`)}},
		},
	})
	api, web := svcIP["kubernetes"], svcIP["web-api"]
	// $(VAR) sees them; the container's own variable wins.
	n.waitPod("linked", "service variables", 60*time.Second, func(p *corev1.Pod) error {
		want := fmt.Sprintf("svc: %s:80 tcp://%s:80 %s:443 http://%s/ mine %s", web, web, api, web, api)
		if logs := n.logs(p, "c"); !strings.Contains(logs, want) {
			return fmt.Errorf("logs %q, want %q", logs, want)
		}
		return nil
	})
	n.waitPod("unlinked", "only the API's service variables", 60*time.Second, func(p *corev1.Pod) error {
		if logs := n.logs(p, "c"); !strings.Contains(logs, "svc: [] "+api) {
			return fmt.Errorf("logs %q", logs)
		}
		return nil
	})

	n.create(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "envy", Labels: map[string]string{"tier": "gold"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr(int64(1)),
			Volumes:                       []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}},
			Containers: []corev1.Container{{
				Name:    "c",
				Command: sh(`echo "env: $GREETING $PW $POD $TIER $MSG"; while true; do echo "file: $(cat /cfg/greeting)"; sleep 0.3; done`),
				Env: []corev1.EnvVar{
					{Name: "GREETING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "greeting"}}},
					{Name: "PW", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "pw"}}},
					{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "TIER", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['tier']"}}},
					{Name: "MSG", Value: "hello-$(POD)"},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "cfg", MountPath: "/cfg"}},
			}},
		},
	})
	n.waitPod("envy", "env resolved and the configMap file read", 60*time.Second, func(p *corev1.Pod) error {
		logs := n.logs(p, "c")
		if !strings.Contains(logs, "env: v1 s3cret envy gold hello-envy") || !strings.Contains(logs, "file: v1") {
			return fmt.Errorf("logs %q", logs)
		}
		return nil
	})
	// fsGroup and supplementalGroups: a non-root user reads a secret
	// only its group may read, writes the emptyDir, and is in the groups.
	n.create(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "grouped"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr(int64(1)),
			SecurityContext:               &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(1000)), FSGroup: ptr(int64(2000)), SupplementalGroups: []int64{3000}},
			Volumes: []corev1.Volume{
				{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec", DefaultMode: ptr(int32(0o440))}}},
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
			Containers: []corev1.Container{{
				Name:         "c",
				Command:      sh(`echo "groups: $(id -G)"; echo "secret: $(cat /sec/pw)"; touch /scratch/f && echo "scratch: $(stat -c %g /scratch/f)"; sleep 3600`),
				VolumeMounts: []corev1.VolumeMount{{Name: "sec", MountPath: "/sec"}, {Name: "scratch", MountPath: "/scratch"}},
			}},
		},
	})
	n.waitPod("grouped", "the fsGroup's secret read and emptyDir written", 60*time.Second, func(p *corev1.Pod) error {
		logs := n.logs(p, "c")
		for _, want := range []string{"groups: 1000 2000 3000", "secret: s3cret", "scratch: 2000"} {
			if !strings.Contains(logs, want) {
				return fmt.Errorf("logs %q, want %q", logs, want)
			}
		}
		return nil
	})

	cm, err := n.cs.CoreV1().ConfigMaps(n.ns).Get(ctx, "cfg", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["greeting"] = "v2"
	if _, err := n.cs.CoreV1().ConfigMaps(n.ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	n.waitPod("envy", "the configMap volume updated in the running container", 30*time.Second, func(p *corev1.Pod) error {
		if logs := n.logs(p, "c"); !strings.Contains(logs, "file: v2") {
			return fmt.Errorf("no v2 yet")
		}
		if p.Status.ContainerStatuses[0].RestartCount != 0 {
			return fmt.Errorf("restarted")
		}
		return nil
	})
}
