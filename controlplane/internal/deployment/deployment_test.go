package deployment

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
	"github.com/skiff-sh/skiff/controlplane/internal/replicaset"
)

var waitFor = apitest.WaitFor

// cluster is an API server with a ReplicaSet controller, a Deployment
// controller and a kubelet for one namespace, and a kubeconfig for
// kubectl.
type cluster struct {
	cs         kubernetes.Interface
	ns         string
	kubeconfig string
	kubelet    *apitest.Kubelet
	// stop stops the controllers.
	stop func()
}

func start(t *testing.T, ns string, kubeletDelay time.Duration) *cluster {
	t.Helper()
	cfg := apitest.Start(t)
	cs := kubernetes.NewForConfigOrDie(cfg)
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q}}]
users: [{name: test, user: {}}]
contexts: [{name: test, context: {cluster: test, user: test, namespace: %q}}]
current-context: test
`, cfg.Host, ns)), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &cluster{cs: cs, ns: ns, kubeconfig: kc}
	c.kubelet = apitest.StartKubelet(t, cs, ns, kubeletDelay)
	c.startControllers(t)
	return c
}

// runUntil runs fn(ctx) until the returned stop is called or the test
// ends, and fails the test if fn fails.
func runUntil(t *testing.T, fn func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (c *cluster) startReplicaSets(t *testing.T) (stop func()) {
	t.Helper()
	cfg := replicaset.DefaultConfig()
	cfg.Client, cfg.Logger = c.cs, testLogger()
	ctrl, err := replicaset.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return runUntil(t, ctrl.Run)
}

func (c *cluster) startDeployments(t *testing.T) (stop func()) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Client, cfg.Logger = c.cs, testLogger()
	ctrl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return runUntil(t, ctrl.Run)
}

// startControllers starts a ReplicaSet and a Deployment controller, which
// c.stop stops.
func (c *cluster) startControllers(t *testing.T) {
	t.Helper()
	stopRS, stopDeploy := c.startReplicaSets(t), c.startDeployments(t)
	c.stop = func() { stopDeploy(); stopRS() }
}

// kubectl runs the real kubectl against the cluster.
func (c *cluster) kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", c.kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

func (c *cluster) mustKubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.kubectl(t, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func newDeployment(name string, n int32, image string) *appsv1.Deployment {
	surge, unavailable := intstr.FromInt32(3), intstr.FromInt32(2)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{ChangeCauseAnnotation: "create " + image}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &n,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavailable},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
			},
		},
	}
}

// setImage changes the deployment's image and change cause.
func (c *cluster) setImage(t *testing.T, name, image string) {
	t.Helper()
	waitFor(t, 10*time.Second, "the image change to be written", func() error {
		d, err := c.cs.AppsV1().Deployments(c.ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Spec.Template.Spec.Containers[0].Image = image
		d.Annotations[ChangeCauseAnnotation] = "set " + image
		_, err = c.cs.AppsV1().Deployments(c.ns).Update(t.Context(), d, metav1.UpdateOptions{})
		return err
	})
}

// pods returns the deployment's pods that are not being deleted.
func (c *cluster) pods(t *testing.T, name string) []corev1.Pod {
	t.Helper()
	list, err := c.cs.CoreV1().Pods(c.ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// allRunning waits until the deployment has exactly n pods, all ready
// and of image.
func (c *cluster) allRunning(t *testing.T, name string, n int, image string) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%d ready pods of %s", n, image), func() error {
		pods := c.pods(t, name)
		if len(pods) != n {
			return fmt.Errorf("got %d pods, want %d", len(pods), n)
		}
		for _, p := range pods {
			if got := p.Spec.Containers[0].Image; got != image || !podReady(&p) {
				return fmt.Errorf("pod %s has image %s ready %v, want %s ready", p.Name, got, podReady(&p), image)
			}
		}
		return nil
	})
}

// watchPods watches the pods that selector matches and calls check with
// the numbers of them not being deleted (active) and of those ready,
// after every event, as they were at that revision.
func watchPods(t *testing.T, cs kubernetes.Interface, ns, selector string, check func(active, ready int, images map[string]int)) {
	t.Helper()
	list, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	pods := map[string]*corev1.Pod{}
	for i := range list.Items {
		if p := &list.Items[i]; p.DeletionTimestamp == nil {
			pods[p.Name] = p
		}
	}
	w, err := cs.CoreV1().Pods(ns).Watch(t.Context(), metav1.ListOptions{LabelSelector: selector, ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			if ev.Type == watch.Deleted || p.DeletionTimestamp != nil {
				delete(pods, p.Name)
			} else {
				pods[p.Name] = p
			}
			ready, images := 0, map[string]int{}
			for _, p := range pods {
				images[p.Spec.Containers[0].Image]++
				if podReady(p) {
					ready++
				}
			}
			check(len(pods), ready, images)
		}
	}()
	t.Cleanup(func() { w.Stop(); <-done })
}

func TestRollingUpdateWithKubectl(t *testing.T) {
	c := start(t, "rolling", 30*time.Millisecond)
	ctx := t.Context()
	if _, err := c.cs.AppsV1().Deployments(c.ns).Create(ctx, newDeployment("web", 10, "img:v1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.mustKubectl(t, "rollout", "status", "deployment/web", "--timeout=30s")
	c.allRunning(t, "web", 10, "img:v1")

	// From here on: never fewer than 10-2 ready pods, never more than
	// 10+3 pods.
	var mu sync.Mutex
	fewest, most := 10, 0
	watchPods(t, c.cs, c.ns, "app=web", func(active, ready int, _ map[string]int) {
		mu.Lock()
		defer mu.Unlock()
		fewest, most = min(fewest, ready), max(most, active)
		if ready < 8 || active > 13 {
			t.Errorf("%d pods, %d of them ready: want at most 13, at least 8 ready", active, ready)
		}
	})
	c.setImage(t, "web", "img:v2")
	out := c.mustKubectl(t, "rollout", "status", "deployment/web", "--timeout=30s")
	if !strings.Contains(out, `deployment "web" successfully rolled out`) {
		t.Errorf("rollout status said %q", out)
	}
	c.allRunning(t, "web", 10, "img:v2")
	mu.Lock()
	if most <= 10 || fewest == 10 {
		t.Errorf("the rollout used neither surge nor unavailability (at most %d pods, at fewest %d ready)", most, fewest)
	}
	mu.Unlock()

	d, err := c.cs.AppsV1().Deployments(c.ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := d.Status
	if st.ObservedGeneration != d.Generation || st.Replicas != 10 || st.UpdatedReplicas != 10 || st.ReadyReplicas != 10 || st.AvailableReplicas != 10 || st.UnavailableReplicas != 0 {
		t.Errorf("got status %+v, want 10 replicas all updated and available at generation %d", st, d.Generation)
	}
	if av := condition(&st, appsv1.DeploymentAvailable); av == nil || av.Status != corev1.ConditionTrue || av.Reason != ReasonMinimumAvailable {
		t.Errorf("got Available %+v, want True %s", av, ReasonMinimumAvailable)
	}
	sets, err := c.cs.AppsV1().ReplicaSets(c.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	var newName string
	for _, rs := range sets.Items {
		if rs.Spec.Template.Spec.Containers[0].Image == "img:v2" {
			newName = rs.Name
			if hash := rs.Labels[HashLabel]; rs.Name != "web-"+hash || rs.Spec.Selector.MatchLabels[HashLabel] != hash || rs.Spec.Template.Labels[HashLabel] != hash {
				t.Errorf("replica set %s: hash label %q not in its name, selector and template", rs.Name, hash)
			}
			if rs.Annotations[RevisionAnnotation] != "2" || rs.Annotations[DesiredReplicasAnnotation] != "10" || rs.Annotations[MaxReplicasAnnotation] != "13" || rs.Annotations[ChangeCauseAnnotation] != "set img:v2" {
				t.Errorf("new replica set annotations %v, want revision 2, desired 10, max 13, change cause", rs.Annotations)
			}
		}
	}
	if pr := condition(&st, appsv1.DeploymentProgressing); pr == nil || pr.Reason != ReasonNewRSAvailable || pr.Message != fmt.Sprintf("ReplicaSet %q has successfully progressed.", newName) {
		t.Errorf("got Progressing %+v, want %s for %s", pr, ReasonNewRSAvailable, newName)
	}
	if d.Annotations[RevisionAnnotation] != "2" {
		t.Errorf("deployment revision %q, want 2", d.Annotations[RevisionAnnotation])
	}

	hist := c.mustKubectl(t, "rollout", "history", "deployment/web")
	for _, want := range []string{"1         create img:v1", "2         set img:v2"} {
		if !strings.Contains(hist, want) {
			t.Errorf("rollout history lacks %q:\n%s", want, hist)
		}
	}
	waitFor(t, 10*time.Second, "ScalingReplicaSet events", func() error {
		list, err := c.cs.CoreV1().Events(c.ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=web,involvedObject.kind=Deployment"})
		if err != nil {
			return err
		}
		up, down := false, false
		for _, e := range list.Items {
			up = up || (e.Reason == ReasonScaling && strings.HasPrefix(e.Message, "Scaled up replica set "+newName+" from 0 to 3"))
			down = down || (e.Reason == ReasonScaling && strings.HasPrefix(e.Message, "Scaled down replica set web-") && strings.HasSuffix(e.Message, "from 10 to 8"))
		}
		if !up || !down {
			return fmt.Errorf("no scale up of %s from 0 to 3 or scale down from 10 to 8 among %d events", newName, len(list.Items))
		}
		return nil
	})

	c.mustKubectl(t, "rollout", "undo", "deployment/web")
	c.mustKubectl(t, "rollout", "status", "deployment/web", "--timeout=30s")
	c.allRunning(t, "web", 10, "img:v1")
	waitFor(t, 10*time.Second, "the v1 replica set to be revision 3", func() error {
		sets, err := c.cs.AppsV1().ReplicaSets(c.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		for _, rs := range sets.Items {
			if rs.Spec.Template.Spec.Containers[0].Image == "img:v1" {
				if rs.Annotations[RevisionAnnotation] != "3" || rs.Annotations[RevisionHistoryAnnotation] != "1" {
					return fmt.Errorf("v1 replica set annotations %v, want revision 3, history 1", rs.Annotations)
				}
				return nil
			}
		}
		return fmt.Errorf("no v1 replica set")
	})
	hist = c.mustKubectl(t, "rollout", "history", "deployment/web")
	if !strings.Contains(hist, "3         create img:v1") || strings.Contains(hist, "\n1 ") {
		t.Errorf("rollout history after undo:\n%s", hist)
	}
}

func TestProgressDeadlineExceeded(t *testing.T) {
	c := start(t, "deadline", 10*time.Millisecond)
	c.kubelet.SetNotReady(func(p *corev1.Pod) bool { return p.Spec.Containers[0].Image == "img:broken" })
	d := newDeployment("stuck", 3, "img:v1")
	d.Spec.ProgressDeadlineSeconds = new(int32(3))
	if _, err := c.cs.AppsV1().Deployments(c.ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.mustKubectl(t, "rollout", "status", "deployment/stuck", "--timeout=30s")
	c.setImage(t, "stuck", "img:broken")
	out, err := c.kubectl(t, "rollout", "status", "deployment/stuck", "--timeout=30s")
	if err == nil || !strings.Contains(out, `deployment "stuck" exceeded its progress deadline`) {
		t.Fatalf("rollout status of a stuck rollout: err %v, output %q; want a failure for the deadline", err, out)
	}
	got, err := c.cs.AppsV1().Deployments(c.ns).Get(t.Context(), "stuck", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pr := condition(&got.Status, appsv1.DeploymentProgressing)
	if pr == nil || pr.Status != corev1.ConditionFalse || !strings.HasPrefix(pr.Message, `ReplicaSet "stuck-`) || !strings.HasSuffix(pr.Message, `" has timed out progressing.`) {
		t.Errorf("got Progressing %+v, want False %s", pr, ReasonTimedOut)
	}
	// The old pods keep the deployment available: 3 - 2 unavailable.
	if av := condition(&got.Status, appsv1.DeploymentAvailable); av == nil || av.Status != corev1.ConditionTrue {
		t.Errorf("got Available %+v, want True", av)
	}
}

func TestRecreate(t *testing.T) {
	c := start(t, "recreate", 20*time.Millisecond)
	d := newDeployment("db", 3, "img:v1")
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	if _, err := c.cs.AppsV1().Deployments(c.ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.mustKubectl(t, "rollout", "status", "deployment/db", "--timeout=30s")
	c.allRunning(t, "db", 3, "img:v1")
	// Terminating pods count too here: Recreate waits until they are gone.
	w, err := c.cs.CoreV1().Pods(c.ns).Watch(t.Context(), metav1.ListOptions{LabelSelector: "app=db"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		present := map[string]string{}
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			if ev.Type == watch.Deleted {
				delete(present, p.Name)
			} else {
				present[p.Name] = p.Spec.Containers[0].Image
			}
			images := map[string]bool{}
			for _, img := range present {
				images[img] = true
			}
			if len(images) > 1 || len(present) > 3 {
				t.Errorf("old and new pods at once: %v", present)
			}
		}
	}()
	t.Cleanup(func() { w.Stop(); <-done })
	c.setImage(t, "db", "img:v2")
	c.mustKubectl(t, "rollout", "status", "deployment/db", "--timeout=30s")
	c.allRunning(t, "db", 3, "img:v2")
}

func TestPauseResumeRestart(t *testing.T) {
	c := start(t, "pause", 20*time.Millisecond)
	ctx := t.Context()
	if _, err := c.cs.AppsV1().Deployments(c.ns).Create(ctx, newDeployment("api", 3, "img:v1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.mustKubectl(t, "rollout", "status", "deployment/api", "--timeout=30s")
	c.mustKubectl(t, "rollout", "pause", "deployment/api")
	progressing := func(reason string) func() error {
		return func() error {
			d, err := c.cs.AppsV1().Deployments(c.ns).Get(ctx, "api", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if d.Status.ObservedGeneration != d.Generation {
				return fmt.Errorf("generation %d not observed yet", d.Generation)
			}
			if pr := condition(&d.Status, appsv1.DeploymentProgressing); pr == nil || pr.Reason != reason {
				return fmt.Errorf("got Progressing %+v, want %s", pr, reason)
			}
			return nil
		}
	}
	waitFor(t, 10*time.Second, "the pause to show", progressing(ReasonPaused))

	// Paused: a new image does not roll, a new size does.
	c.mustKubectl(t, "set", "image", "deployment/api", "c=img:v2")
	c.mustKubectl(t, "scale", "deployment/api", "--replicas=5")
	waitFor(t, 10*time.Second, "the paused deployment to observe both changes", progressing(ReasonPaused))
	c.allRunning(t, "api", 5, "img:v1")
	sets, err := c.cs.AppsV1().ReplicaSets(c.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=api"})
	if err != nil {
		t.Fatal(err)
	}
	if len(sets.Items) != 1 {
		t.Errorf("got %d replica sets while paused, want 1", len(sets.Items))
	}

	c.mustKubectl(t, "rollout", "resume", "deployment/api")
	c.mustKubectl(t, "rollout", "status", "deployment/api", "--timeout=30s")
	c.allRunning(t, "api", 5, "img:v2")

	c.mustKubectl(t, "rollout", "restart", "deployment/api")
	c.mustKubectl(t, "rollout", "status", "deployment/api", "--timeout=30s")
	waitFor(t, 30*time.Second, "restarted pods", func() error {
		pods := c.pods(t, "api")
		if len(pods) != 5 {
			return fmt.Errorf("got %d pods, want 5", len(pods))
		}
		for _, p := range pods {
			if p.Annotations["kubectl.kubernetes.io/restartedAt"] == "" || !podReady(&p) {
				return fmt.Errorf("pod %s is not a ready restarted one", p.Name)
			}
		}
		return nil
	})
}

func TestControllerRestartMidRollout(t *testing.T) {
	c := start(t, "failover", 150*time.Millisecond)
	ctx := t.Context()
	if _, err := c.cs.AppsV1().Deployments(c.ns).Create(ctx, newDeployment("svc", 10, "img:v1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.mustKubectl(t, "rollout", "status", "deployment/svc", "--timeout=30s")
	watchPods(t, c.cs, c.ns, "app=svc", func(active, ready int, _ map[string]int) {
		if ready < 8 || active > 13 {
			t.Errorf("%d pods, %d of them ready: want at most 13, at least 8 ready", active, ready)
		}
	})
	// Both controllers go away mid-rollout, twice, as on leader changes.
	c.setImage(t, "svc", "img:v2")
	for _, want := range []int{2, 6} {
		waitFor(t, 20*time.Second, "the rollout to be under way", func() error {
			n := 0
			for _, p := range c.pods(t, "svc") {
				if p.Spec.Containers[0].Image == "img:v2" {
					n++
				}
			}
			if n < want {
				return fmt.Errorf("%d new pods, want %d", n, want)
			}
			return nil
		})
		c.stop()
		c.startControllers(t)
	}
	c.mustKubectl(t, "rollout", "status", "deployment/svc", "--timeout=30s")
	c.allRunning(t, "svc", 10, "img:v2")
	sets, err := c.cs.AppsV1().ReplicaSets(c.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=svc"})
	if err != nil {
		t.Fatal(err)
	}
	if len(sets.Items) != 2 {
		t.Errorf("got %d replica sets, want 2 (old and new)", len(sets.Items))
	}
}

// sizes returns the spec.replicas of the deployment's replica sets by
// image.
func (c *cluster) sizes(t *testing.T, name string) (map[string]int32, error) {
	sets, err := c.cs.AppsV1().ReplicaSets(c.ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=" + name})
	if err != nil {
		return nil, err
	}
	out := map[string]int32{}
	for _, rs := range sets.Items {
		out[rs.Spec.Template.Spec.Containers[0].Image] = *rs.Spec.Replicas
	}
	return out, nil
}

func (c *cluster) wantSizes(t *testing.T, name string, want map[string]int32) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("replica set sizes %v", want), func() error {
		got, err := c.sizes(t, name)
		if err != nil {
			return err
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("got sizes %v, want %v", got, want)
		}
		return nil
	})
}

func TestProportionalScaling(t *testing.T) {
	c := start(t, "proportional", 10*time.Millisecond)
	c.kubelet.SetNotReady(func(p *corev1.Pod) bool { return p.Spec.Containers[0].Image == "img:broken" })
	if _, err := c.cs.AppsV1().Deployments(c.ns).Create(t.Context(), newDeployment("big", 10, "img:v1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.mustKubectl(t, "rollout", "status", "deployment/big", "--timeout=30s")
	c.setImage(t, "big", "img:broken")
	// Stuck: 3 surge pods and 2 unavailable, none of the new ones ready.
	c.wantSizes(t, "big", map[string]int32{"img:v1": 8, "img:broken": 5})
	c.mustKubectl(t, "scale", "deployment/big", "--replicas=20")
	// 23 pods allowed now, shared 8:5 as kube-controller-manager does:
	// 8*23/13 = 14.2 -> 14, 5*23/13 = 8.8 -> 9.
	c.wantSizes(t, "big", map[string]int32{"img:v1": 14, "img:broken": 9})
	waitFor(t, 20*time.Second, "14 old pods ready", func() error {
		ready := 0
		for _, p := range c.pods(t, "big") {
			if podReady(&p) {
				ready++
			}
		}
		if ready != 14 {
			return fmt.Errorf("got %d ready pods, want 14", ready)
		}
		return nil
	})
	sets, err := c.cs.AppsV1().ReplicaSets(c.ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=big"})
	if err != nil {
		t.Fatal(err)
	}
	for _, rs := range sets.Items {
		if rs.Annotations[DesiredReplicasAnnotation] != "20" || rs.Annotations[MaxReplicasAnnotation] != "23" {
			t.Errorf("replica set %s annotations %v, want desired 20, max 23", rs.Name, rs.Annotations)
		}
	}
	// Fixed: the rollout completes at the new size.
	c.setImage(t, "big", "img:v3")
	c.mustKubectl(t, "rollout", "status", "deployment/big", "--timeout=30s")
	c.allRunning(t, "big", 20, "img:v3")
}

func TestHistoryLimitAndCollision(t *testing.T) {
	c := start(t, "history", 10*time.Millisecond)
	ctx := t.Context()
	d := newDeployment("hist", 2, "img:v1")
	d.Spec.RevisionHistoryLimit = new(int32(1))
	d.Spec.Paused = true
	created, err := c.cs.AppsV1().Deployments(c.ns).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Another object holds the name of the first replica set.
	taken := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "hist-" + templateHash(&created.Spec.Template, nil), Labels: map[string]string{"app": "squatter"}},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: new(int32(0)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "squatter"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "squatter"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img:other"}}},
			},
		},
	}
	if _, err := c.cs.AppsV1().ReplicaSets(c.ns).Create(ctx, taken, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.mustKubectl(t, "rollout", "resume", "deployment/hist")
	c.mustKubectl(t, "rollout", "status", "deployment/hist", "--timeout=30s")
	got, err := c.cs.AppsV1().Deployments(c.ns).Get(ctx, "hist", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.CollisionCount == nil || *got.Status.CollisionCount != 1 {
		t.Errorf("got collisionCount %v, want 1", got.Status.CollisionCount)
	}
	for _, img := range []string{"img:v2", "img:v3"} {
		c.setImage(t, "hist", img)
		c.mustKubectl(t, "rollout", "status", "deployment/hist", "--timeout=30s")
	}
	c.allRunning(t, "hist", 2, "img:v3")
	// revisionHistoryLimit 1: v3 and v2 stay, v1 goes.
	c.wantSizes(t, "hist", map[string]int32{"img:v2": 0, "img:v3": 2})
}

func TestAdoptAndRelease(t *testing.T) {
	c := start(t, "adopt", 10*time.Millisecond)
	ctx := t.Context()
	d := newDeployment("own", 2, "img:v1")
	// An orphan replica set of the deployment's template, as a deleted
	// deployment with orphan propagation leaves behind.
	hash := "orphan1"
	tmpl := d.Spec.Template.DeepCopy()
	tmpl.Labels = map[string]string{"app": "own", HashLabel: hash}
	orphan := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "own-" + hash, Labels: tmpl.Labels},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: new(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels},
			Template: *tmpl,
		},
	}
	if _, err := c.cs.AppsV1().ReplicaSets(c.ns).Create(ctx, orphan, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.allRunning(t, "own", 2, "img:v1")
	dep, err := c.cs.AppsV1().Deployments(c.ns).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.mustKubectl(t, "rollout", "status", "deployment/own", "--timeout=30s")
	sets, err := c.cs.AppsV1().ReplicaSets(c.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sets.Items) != 1 {
		t.Fatalf("got %d replica sets, want the adopted one only", len(sets.Items))
	}
	if ref := metav1.GetControllerOf(&sets.Items[0]); ref == nil || ref.UID != dep.UID {
		t.Fatalf("replica set controller %+v, want the deployment", ref)
	}
	c.allRunning(t, "own", 2, "img:v1")

	// Relabelled away from the selector, it is released.
	rs := sets.Items[0]
	rs.Labels = map[string]string{"app": "gone", HashLabel: hash}
	if _, err := c.cs.AppsV1().ReplicaSets(c.ns).Update(ctx, &rs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the relabelled replica set to be released", func() error {
		got, err := c.cs.AppsV1().ReplicaSets(c.ns).Get(ctx, rs.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(got.OwnerReferences) != 0 {
			return fmt.Errorf("got owner references %+v, want none", got.OwnerReferences)
		}
		return nil
	})
}

func TestFenceposts(t *testing.T) {
	for _, tc := range []struct {
		replicas                 int32
		surge, unavailable       intstr.IntOrString
		wantSurge, wantUnavailbl int32
	}{
		{10, intstr.FromInt32(3), intstr.FromInt32(2), 3, 2},
		{10, intstr.FromString("25%"), intstr.FromString("25%"), 3, 2},
		{3, intstr.FromString("25%"), intstr.FromString("25%"), 1, 0},
		{1, intstr.FromString("0%"), intstr.FromString("10%"), 0, 1},
		{2, intstr.FromInt32(0), intstr.FromInt32(5), 0, 2},
	} {
		d := newDeployment("x", tc.replicas, "i")
		d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: &tc.surge, MaxUnavailable: &tc.unavailable}
		if s, u := maxSurge(d), maxUnavailable(d); s != tc.wantSurge || u != tc.wantUnavailbl {
			t.Errorf("%d replicas, surge %s, unavailable %s: got %d, %d, want %d, %d", tc.replicas, tc.surge.String(), tc.unavailable.String(), s, u, tc.wantSurge, tc.wantUnavailbl)
		}
	}
}

// testLogger logs to stderr with SKIFF_TEST_LOG=1.
func testLogger() *slog.Logger {
	if os.Getenv("SKIFF_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// podReady reports whether p's Ready condition is true.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
