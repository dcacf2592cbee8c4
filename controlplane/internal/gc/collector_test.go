package gc

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

// env is a single-node store with the API server over it (plain HTTP, no
// authentication) and clients of it.
type env struct {
	t         *testing.T
	cs        kubernetes.Interface
	collector *Collector
}

func testLogger() *slog.Logger {
	if os.Getenv("GC_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startEnv(t *testing.T) *env {
	t.Helper()
	cfg := apitest.Start(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	md, err := metadata.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gcfg := DefaultConfig()
	gcfg.Metadata, gcfg.Discovery, gcfg.Logger = md, disc, testLogger()
	c, err := New(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, cs: cs, collector: c}
}

// run runs the collector until the returned stop is called (or the test
// ends); stop waits for Run to return and checks it returned nil.
func (e *env) run() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.collector.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("collector Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				e.t.Error("collector Run did not return within 20s of its context ending")
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

var waitFor = apitest.WaitFor

func ownerRef(kind, apiVersion, name string, uid types.UID, block bool) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: ptr(true), BlockOwnerDeletion: ptr(block)}
}

func ptr[T any](v T) *T { return &v }

// chain is what a Deployment controller would have made, built by hand:
// Deployment web → ReplicaSet web-1 → three unscheduled pods, all
// references blocking, plus a ConfigMap owned by the Deployment (not
// blocking) and a Secret owned by the Deployment and by a ConfigMap that
// stays.
type chain struct {
	ns     string
	deploy *appsv1.Deployment
	rs     *appsv1.ReplicaSet
	pods   []string
}

func (e *env) namespace(name string) string {
	e.t.Helper()
	if _, err := e.cs.CoreV1().Namespaces().Create(e.t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	return name
}

func (e *env) makeChain(ns string) *chain {
	e.t.Helper()
	ctx := e.t.Context()
	labels := map[string]string{"app": "web"}
	podSpec := corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}
	d, err := e.cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(3)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec}},
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	rs, err := e.cs.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", OwnerReferences: []metav1.OwnerReference{ownerRef("Deployment", "apps/v1", d.Name, d.UID, true)}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr(int32(3)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec}},
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	c := &chain{ns: ns, deploy: d, rs: rs}
	for i := range 3 {
		p, err := e.cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-1-%d", i), Labels: labels,
				OwnerReferences: []metav1.OwnerReference{ownerRef("ReplicaSet", "apps/v1", rs.Name, rs.UID, true)}},
			Spec: podSpec,
		}, metav1.CreateOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
		c.pods = append(c.pods, p.Name)
	}
	keeper, err := e.cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "keeper"}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "web-config",
		OwnerReferences: []metav1.OwnerReference{ownerRef("Deployment", "apps/v1", d.Name, d.UID, false)}}}, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shared",
		OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID},
			{APIVersion: "v1", Kind: "ConfigMap", Name: keeper.Name, UID: keeper.UID},
		}}}, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// names lists what is left in ns: "kind/name" for deployments, replicasets,
// pods, configmaps and secrets, sorted.
func (e *env) names(ns string) ([]string, error) {
	ctx := e.t.Context()
	var out []string
	ds, err := e.cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, o := range ds.Items {
		out = append(out, "deployment/"+o.Name)
	}
	rss, err := e.cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, o := range rss.Items {
		out = append(out, "replicaset/"+o.Name)
	}
	ps, err := e.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, o := range ps.Items {
		out = append(out, "pod/"+o.Name)
	}
	cms, err := e.cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, o := range cms.Items {
		out = append(out, "configmap/"+o.Name)
	}
	ss, err := e.cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, o := range ss.Items {
		out = append(out, "secret/"+o.Name)
	}
	slices.Sort(out)
	return out, nil
}

// waitLeft waits until exactly want is left in ns.
func (e *env) waitLeft(ns string, want ...string) {
	e.t.Helper()
	slices.Sort(want)
	waitFor(e.t, 20*time.Second, fmt.Sprintf("%v left in %s", want, ns), func() error {
		got, err := e.names(ns)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
}

func (e *env) deleteDeployment(ns string, policy metav1.DeletionPropagation) {
	e.t.Helper()
	if err := e.cs.AppsV1().Deployments(ns).Delete(e.t.Context(), "web", metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil {
		e.t.Fatalf("delete deployment web with %s: %v", policy, err)
	}
}

// checkShared checks that the secret owned by the deployment and the
// keeper configmap now names only the keeper.
func (e *env) checkShared(ns string) {
	e.t.Helper()
	s, err := e.cs.CoreV1().Secrets(ns).Get(e.t.Context(), "shared", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Name != "keeper" {
		e.t.Errorf("secret shared: got owners %v, want only configmap keeper", s.OwnerReferences)
	}
}

// TestBackground: the deployment goes at once; the collector then deletes
// its replicaset, the pods, the configmap it owns, and drops it from the
// secret that has another owner.
func TestBackground(t *testing.T) {
	e := startEnv(t)
	e.run()
	ns := e.namespace("bg")
	e.makeChain(ns)
	e.deleteDeployment(ns, metav1.DeletePropagationBackground)
	e.waitLeft(ns, "configmap/keeper", "secret/shared")
	e.checkShared(ns)
}

// deletions records the revisions at which objects of ns were deleted.
type deletions struct {
	mu  sync.Mutex
	rev map[string]int64 // "kind/name" → revision of its delete
}

// watchDeletions records the deletes in ns of deployments, replicasets and
// pods after revision rv.
func (e *env) watchDeletions(ns, rv string) *deletions {
	e.t.Helper()
	d := &deletions{rev: map[string]int64{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e.t.Cleanup(func() { cancel(); wg.Wait() })
	opts := metav1.ListOptions{ResourceVersion: rv}
	watches := map[string]func() (watch.Interface, error){
		"deployment": func() (watch.Interface, error) { return e.cs.AppsV1().Deployments(ns).Watch(ctx, opts) },
		"replicaset": func() (watch.Interface, error) { return e.cs.AppsV1().ReplicaSets(ns).Watch(ctx, opts) },
		"pod":        func() (watch.Interface, error) { return e.cs.CoreV1().Pods(ns).Watch(ctx, opts) },
	}
	for kind, start := range watches {
		w, err := start()
		if err != nil {
			e.t.Fatal(err)
		}
		wg.Go(func() {
			defer w.Stop()
			for ev := range w.ResultChan() {
				if ev.Type != watch.Deleted {
					continue
				}
				m, err := metaOf(ev.Object)
				if err != nil {
					continue
				}
				rev, _ := strconv.ParseInt(m.GetResourceVersion(), 10, 64)
				d.mu.Lock()
				d.rev[kind+"/"+m.GetName()] = rev
				d.mu.Unlock()
			}
		})
	}
	return d
}

func metaOf(obj any) (metav1.Object, error) {
	if o, ok := obj.(metav1.Object); ok {
		return o, nil
	}
	return nil, fmt.Errorf("%T has no metadata", obj)
}

// before checks that each of first was deleted before then.
func (d *deletions) before(t *testing.T, first []string, then string) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range first {
		if d.rev[f] == 0 || d.rev[then] == 0 || d.rev[f] >= d.rev[then] {
			t.Errorf("%s deleted at revision %d, %s at %d: want %s first", f, d.rev[f], then, d.rev[then], f)
		}
	}
}

func (d *deletions) seen(keys ...string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, k := range keys {
		if d.rev[k] == 0 {
			return fmt.Errorf("no delete of %s seen", k)
		}
	}
	return nil
}

// TestForeground: the deployment stays, with the foregroundDeletion
// finalizer, until the replicaset and its pods (blocking references) are
// gone; the pods go before the replicaset, the replicaset before the
// deployment.
func TestForeground(t *testing.T) {
	e := startEnv(t)
	stop := e.run()
	ns := e.namespace("fg")
	c := e.makeChain(ns)
	// First without a collector: the delete holds the deployment.
	stop()
	policy := metav1.DeletePropagationForeground
	if err := e.cs.AppsV1().Deployments(ns).Delete(t.Context(), "web", metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil {
		t.Fatal(err)
	}
	held, err := e.cs.AppsV1().Deployments(ns).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil || held.DeletionTimestamp == nil || !slices.Equal(held.Finalizers, []string{metav1.FinalizerDeleteDependents}) {
		t.Fatalf("deployment after a foreground delete: got %v, %v, want it held by %s", held, err, metav1.FinalizerDeleteDependents)
	}
	d := e.watchDeletions(ns, held.ResourceVersion)
	e.run()
	e.waitLeft(ns, "configmap/keeper", "secret/shared")
	pods := make([]string, len(c.pods))
	for i, p := range c.pods {
		pods[i] = "pod/" + p
	}
	waitFor(t, 10*time.Second, "the deletes seen by the watches", func() error {
		return d.seen(append(pods, "replicaset/web-1", "deployment/web")...)
	})
	d.before(t, pods, "replicaset/web-1")
	d.before(t, []string{"replicaset/web-1"}, "deployment/web")
	e.checkShared(ns)
}

// TestOrphan: the deployment goes once its dependents no longer refer to
// it; they all stay, the pods still owned by the replicaset.
func TestOrphan(t *testing.T) {
	e := startEnv(t)
	e.run()
	ns := e.namespace("orphan")
	c := e.makeChain(ns)
	e.deleteDeployment(ns, metav1.DeletePropagationOrphan)
	all := []string{"configmap/keeper", "configmap/web-config", "replicaset/web-1", "secret/shared"}
	for _, p := range c.pods {
		all = append(all, "pod/"+p)
	}
	e.waitLeft(ns, all...)
	ctx := t.Context()
	rs, err := e.cs.AppsV1().ReplicaSets(ns).Get(ctx, "web-1", metav1.GetOptions{})
	if err != nil || len(rs.OwnerReferences) != 0 {
		t.Errorf("replicaset after orphaning: got %v, %v, want no owners", rs, err)
	}
	cm, err := e.cs.CoreV1().ConfigMaps(ns).Get(ctx, "web-config", metav1.GetOptions{})
	if err != nil || len(cm.OwnerReferences) != 0 {
		t.Errorf("configmap after orphaning: got %v, %v, want no owners", cm, err)
	}
	e.checkShared(ns)
	for _, name := range c.pods {
		p, err := e.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || len(p.OwnerReferences) != 1 || p.OwnerReferences[0].UID != c.rs.UID {
			t.Errorf("pod %s after orphaning: got %v, %v, want owned by the replicaset", name, p, err)
		}
	}
	// The pods are still the replicaset's: they go with it.
	if err := e.cs.AppsV1().ReplicaSets(ns).Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitLeft(ns, "configmap/keeper", "configmap/web-config", "secret/shared")
}

// TestRestartAnyMoment: a collector stopped in the middle of a foreground
// delete, and deletes made while no collector runs, are finished by the
// next run.
func TestRestartAnyMoment(t *testing.T) {
	e := startEnv(t)
	ctx := t.Context()
	stop := e.run()
	fg := e.makeChain(e.namespace("r-fg"))
	// A pod that stays while it has a finalizer holds up the replicaset,
	// which holds up the deployment.
	if _, err := e.cs.CoreV1().Pods("r-fg").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "stuck", Finalizers: []string{"example.com/hold"},
			OwnerReferences: []metav1.OwnerReference{ownerRef("ReplicaSet", "apps/v1", fg.rs.Name, fg.rs.UID, true)}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.deleteDeployment("r-fg", metav1.DeletePropagationForeground)
	e.waitLeft("r-fg", "configmap/keeper", "deployment/web", "pod/stuck", "replicaset/web-1", "secret/shared")
	waitFor(t, 10*time.Second, "the replicaset deleted in the foreground", func() error {
		rs, err := e.cs.AppsV1().ReplicaSets("r-fg").Get(ctx, "web-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if rs.DeletionTimestamp == nil || !slices.Contains(rs.Finalizers, metav1.FinalizerDeleteDependents) {
			return fmt.Errorf("replicaset: deletionTimestamp %v, finalizers %v", rs.DeletionTimestamp, rs.Finalizers)
		}
		return nil
	})
	stop()

	// With no collector: the stuck pod goes, and more deletes come.
	p, err := e.cs.CoreV1().Pods("r-fg").Get(ctx, "stuck", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Finalizers = nil
	if _, err := e.cs.CoreV1().Pods("r-fg").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.makeChain(e.namespace("r-bg"))
	orphans := e.makeChain(e.namespace("r-orphan"))
	e.deleteDeployment("r-bg", metav1.DeletePropagationBackground)
	e.deleteDeployment("r-orphan", metav1.DeletePropagationOrphan)
	e.waitLeft("r-fg", "configmap/keeper", "deployment/web", "replicaset/web-1", "secret/shared")

	e.run()
	e.waitLeft("r-fg", "configmap/keeper", "secret/shared")
	e.waitLeft("r-bg", "configmap/keeper", "secret/shared")
	left := []string{"configmap/keeper", "configmap/web-config", "replicaset/web-1", "secret/shared"}
	for _, p := range orphans.pods {
		left = append(left, "pod/"+p)
	}
	e.waitLeft("r-orphan", left...)
}

// TestOwnersGone: references to an owner that never existed, to one
// replaced by another object of the same name (another uid), and to a
// cluster-scoped owner (a Node) deleted later, are all dangling; a
// reference to a kind not served keeps the object.
func TestOwnersGone(t *testing.T) {
	e := startEnv(t)
	e.run()
	ctx := t.Context()
	ns := e.namespace("gone")
	cms := e.cs.CoreV1().ConfigMaps(ns)
	old, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "owner", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	node, err := e.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]metav1.OwnerReference{
		"never":    {APIVersion: "v1", Kind: "ConfigMap", Name: "nobody", UID: "no-such-uid"},
		"replaced": {APIVersion: "v1", Kind: "ConfigMap", Name: "owner", UID: old.UID},
		"on-node":  {APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID},
		"unserved": {APIVersion: "example.com/v1", Kind: "Widget", Name: "w", UID: "widget-uid"},
	} {
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, OwnerReferences: []metav1.OwnerReference{r}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "never and replaced collected", func() error {
		got, err := e.names(ns)
		if err != nil {
			return err
		}
		if want := []string{"configmap/on-node", "configmap/owner", "configmap/unserved"}; !slices.Equal(got, want) {
			return fmt.Errorf("got %v, want %v", got, want)
		}
		return nil
	})
	if err := e.cs.CoreV1().Nodes().Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitLeft(ns, "configmap/owner", "configmap/unserved")
}

// TestConfigValidate covers Config.Validate.
func TestConfigValidate(t *testing.T) {
	md, disc := metadata.NewForConfigOrDie(&rest.Config{Host: "http://127.0.0.1:1"}), discovery.NewDiscoveryClientForConfigOrDie(&rest.Config{Host: "http://127.0.0.1:1"})
	for _, tc := range []struct {
		name string
		tune func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"no clients", func(c *Config) { c.Metadata = nil }, "Metadata and Discovery are required"},
		{"no workers", func(c *Config) { c.Workers = 0 }, "Workers"},
		{"retry max below base", func(c *Config) { c.RetryMax = c.RetryBase / 2 }, "RetryMax"},
	} {
		cfg := DefaultConfig()
		cfg.Metadata, cfg.Discovery = md, disc
		tc.tune(&cfg)
		err := cfg.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
	}
}
