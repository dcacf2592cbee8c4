//go:build linux

package storebench

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/skiff-sh/skiff/controlplane/client"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Namespaces of the API benchmark's phases, one each so that the list and
// the watches see only their own objects.
const (
	createNS = "apibench-create"
	listNS   = "apibench-list"
	watchNS  = "apibench-watch"
)

const (
	// podLoadWorkers create the list phase's pods.
	podLoadWorkers = 64
	// apiReadyTimeout bounds waiting for every master's admin kubeconfig and API.
	apiReadyTimeout = time.Minute
	// deliveryTimeout bounds waiting for every watcher to receive every
	// event once the last write was acknowledged.
	deliveryTimeout = 30 * time.Second
	// contentTypeProtobuf is Kubernetes' protobuf media type.
	contentTypeProtobuf = "application/vnd.kubernetes.protobuf"
)

// The targets.
const (
	// targetCreateRatio is the least API creates/s at 64 clients, as a
	// fraction of etcd's raw puts/s at 64 clients in the same run.
	targetCreateRatio = 0.5
	// targetCreateP99 is the most p99 create latency at 16 clients.
	targetCreateP99 = 100 * time.Millisecond
	// targetList is the most a full list of the pods may take (median).
	targetList = 500 * time.Millisecond
	// targetWatchP99 is the most p99 event latency over all watcher-events.
	targetWatchP99 = 50 * time.Millisecond
)

// apiSettings are the API benchmark's tunables, read from the environment.
type apiSettings struct {
	clients       []int
	pods          int
	listRuns      int
	watchers      int
	watchRate     int // writes per second during the watch phase
	watchDuration time.Duration
	// profileDir, when set, receives CPU profiles of every master taken
	// during the timed create runs, the list runs and the watch phase.
	profileDir string
}

func loadAPISettings(b *testing.B) apiSettings {
	b.Helper()
	a := apiSettings{clients: []int{16, 64}, pods: 10_000, listRuns: 5, watchers: 100, watchRate: 50, watchDuration: 10 * time.Second}
	positive := func(name string, dst *int) {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				b.Fatalf("%s=%q: want a positive integer", name, v)
			}
			*dst = n
		}
	}
	positive("APIBENCH_PODS", &a.pods)
	positive("APIBENCH_LIST_RUNS", &a.listRuns)
	positive("APIBENCH_WATCHERS", &a.watchers)
	positive("APIBENCH_WATCH_RATE", &a.watchRate)
	if v := os.Getenv("APIBENCH_WATCH_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("APIBENCH_WATCH_DURATION=%q: want a positive duration such as 10s", v)
		}
		a.watchDuration = d
	}
	if v := os.Getenv("APIBENCH_CLIENTS"); v != "" {
		a.clients = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("APIBENCH_CLIENTS=%q: want comma-separated positive integers", v)
			}
			a.clients = append(a.clients, n)
		}
	}
	if a.profileDir = os.Getenv("APIBENCH_PROFILE_DIR"); a.profileDir != "" {
		if err := os.MkdirAll(a.profileDir, 0o755); err != nil {
			b.Fatalf("APIBENCH_PROFILE_DIR: %v", err)
		}
	}
	return a
}

// apiResults collects the figures of the final table. A nil or missing
// entry was not measured (filtered out or failed).
type apiResults struct {
	etcd    map[int]runResult // raw etcd puts by client count
	creates map[int]runResult // API creates by client count
	leader  string
	list    *listResult
	watch   *watchResult
	// others is the CPU, in cores, that processes outside the benchmark
	// kept busy during each phase, by phase name: a busy machine's figures
	// are not this code's.
	others map[string]float64
}

// measure runs phase and records in r.others how busy processes other than
// this test and procs kept the machine meanwhile.
func (r *apiResults) measure(phase string, procs []*proc, run func() error) error {
	before := sampleCPU(procs)
	err := run()
	r.others[phase] = before.otherCores(sampleCPU(procs))
	return err
}

// BenchmarkAPI measures the Kubernetes API of three `skiff server` masters
// through client-go, with raw etcd 3.4 puts of the same size in the same run
// as the reference. See the package doc for the phases and the environment.
func BenchmarkAPI(b *testing.B) {
	s := loadSettings(b)
	a := loadAPISettings(b)
	ctx := benchContext(b)
	res := &apiResults{etcd: map[int]runResult{}, creates: map[int]runResult{}, others: map[string]float64{}}

	// The reference first, on its own: only one cluster runs at a time.
	b.Run("etcd", func(b *testing.B) {
		c, err := startEtcd(ctx, b, s)
		if err != nil {
			b.Fatalf("etcd: start cluster: %v", err)
		}
		w := &workload{c: c}
		if _, err := w.run(ctx, "warmup", 8, time.Second, warmupKeys); err != nil {
			b.Fatalf("etcd: warm-up: %v", err)
		}
		for _, n := range a.clients {
			if !b.Run(fmt.Sprintf("puts/clients=%d", n), func(b *testing.B) {
				reportRun(b, res.etcd, n, "puts/s", func() (r runResult, err error) {
					err = res.measure(fmt.Sprintf("etcd-%d", n), c.procs(), func() error {
						r, err = w.run(ctx, fmt.Sprintf("p%d", n), n, s.duration, math.MaxInt32)
						return err
					})
					return r, err
				})
			}) {
				return
			}
		}
	})

	b.Run("skiff", func(b *testing.B) {
		c, err := startSkiff(ctx, b, s)
		if err != nil {
			b.Fatalf("skiff: start cluster: %v", err)
		}
		api, err := newAPICluster(ctx, c.(*skiffCluster))
		if err != nil {
			b.Fatalf("skiff: %v", err)
		}
		b.Cleanup(api.close)
		res.leader = api.leader(ctx)
		for _, ns := range []string{createNS, listNS, watchNS} {
			if err := api.createNamespace(ctx, ns); err != nil {
				b.Fatalf("skiff: %v", err)
			}
		}
		w := &workload{c: configMapWriter{skiffCluster: api.sc, api: api}}
		if _, err := w.run(ctx, "warmup", 8, time.Second, warmupKeys); err != nil {
			b.Fatalf("skiff: warm-up: %v", err)
		}
		for _, n := range a.clients {
			if !b.Run(fmt.Sprintf("creates/clients=%d", n), func(b *testing.B) {
				reportRun(b, res.creates, n, "creates/s", func() (r runResult, err error) {
					stop := api.profile(ctx, b, a.profileDir, fmt.Sprintf("creates-%d", n), s.duration)
					defer stop()
					err = res.measure(fmt.Sprintf("creates-%d", n), api.sc.ps, func() error {
						r, err = w.run(ctx, fmt.Sprintf("c%d", n), n, s.duration, math.MaxInt32)
						return err
					})
					return r, err
				})
			}) {
				return
			}
		}
		b.Run(fmt.Sprintf("list/pods=%d", a.pods), func(b *testing.B) {
			if res.list == nil {
				var r *listResult
				err := res.measure("list", api.sc.ps, func() (err error) {
					r, err = api.listPhase(ctx, b, a)
					return err
				})
				if err != nil {
					b.Fatalf("skiff: list: %v", err)
				}
				res.list = r
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(ms(res.list.median(res.list.raw)), "median-ms")
			b.ReportMetric(ms(slices.Max(res.list.raw)), "max-ms")
			b.ReportMetric(ms(res.list.median(res.list.typed)), "typed-median-ms")
		})
		b.Run(fmt.Sprintf("watch/watchers=%d", a.watchers), func(b *testing.B) {
			if res.watch == nil {
				var r *watchResult
				err := res.measure("watch", api.sc.ps, func() (err error) {
					r, err = api.watchPhase(ctx, b, a)
					return err
				})
				if err != nil {
					b.Fatalf("skiff: watch: %v", err)
				}
				res.watch = r
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(ms(res.watch.fromReq.p50), "p50-ms")
			b.ReportMetric(ms(res.watch.fromReq.p99), "p99-ms")
			b.ReportMetric(ms(res.watch.fromAck.p50), "ack-p50-ms")
			b.ReportMetric(ms(res.watch.fromAck.p99), "ack-p99-ms")
			b.ReportMetric(float64(res.watch.deliveries), "events")
		})
	})
	table := formatAPITable(s, a, etcdVersion(ctx, s.etcdBin), res)
	fmt.Print(table)
	b.Log("\n" + table)
}

// reportRun runs one timed run unless runs already holds its result (b's
// function may be called more than once) and reports it, the rate in unit.
func reportRun(b *testing.B, runs map[int]runResult, n int, unit string, run func() (runResult, error)) {
	b.Helper()
	r, done := runs[n]
	if !done {
		var err error
		if r, err = run(); err != nil {
			b.Fatalf("%d clients: %v", n, err)
		}
		runs[n] = r
		b.Logf("%d ops in %v; slowest %v, started %v into the run",
			r.ops, r.elapsed.Round(time.Millisecond), r.slowest.Round(time.Microsecond), r.slowestAt.Round(time.Millisecond))
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(r.rate(), unit)
	b.ReportMetric(ms(r.p50), "p50-ms")
	b.ReportMetric(ms(r.p99), "p99-ms")
}

// apiCluster reaches the Kubernetes API of every master of a skiffCluster
// through client-go.
type apiCluster struct {
	sc *skiffCluster
	// configs are the admin kubeconfigs' client configs, one per master,
	// unthrottled, sending protobuf bodies and accepting protobuf or JSON.
	configs []*rest.Config
	// clients share one transport per master (client-go caches the
	// transport of equal configs): one HTTP/2 connection, or with HTTP/1.1
	// one kept-alive connection per request in flight.
	clients []*kubernetes.Clientset
	next    atomic.Uint32
}

// newAPICluster waits until every master has written its admin kubeconfig
// and its API answers /readyz, and returns clients for all of them.
func newAPICluster(ctx context.Context, sc *skiffCluster) (*apiCluster, error) {
	ctx, cancel := context.WithTimeout(ctx, apiReadyTimeout)
	defer cancel()
	a := &apiCluster{sc: sc}
	for i, dir := range sc.dataDirs {
		var last error
		for {
			if err := sc.ps[i].alive(); err != nil {
				return nil, err
			}
			last = a.connect(ctx, filepath.Join(dir, "admin.kubeconfig"))
			if last == nil {
				break
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("%s's API not ready: %v: %w", sc.ps[i].name, last, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return a, nil
}

// connect loads one master's kubeconfig and appends its client once the
// API answers /readyz.
func (a *apiCluster) connect(ctx context.Context, kubeconfig string) error {
	if _, err := os.Stat(kubeconfig); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = -1, 0 // a negative QPS: no client-side rate limiter
	client.Protobuf(cfg)
	// The writers and the hollow nodes have more requests in flight to a
	// master than client-go's 25 idle connections: keep them all open.
	if err := client.KeepConns(cfg, 256); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(body)) != "ok" {
		return fmt.Errorf("readyz: got %q, want ok", body)
	}
	a.configs = append(a.configs, cfg)
	a.clients = append(a.clients, cs)
	return nil
}

// client returns the masters' clients in turn, as a load balancer in front
// of them would: two requests in three reach a follower, which forwards
// writes to the leader.
func (a *apiCluster) client() *kubernetes.Clientset {
	return a.clients[a.next.Add(1)%uint32(len(a.clients))]
}

func (a *apiCluster) close() {
	for _, cs := range a.clients {
		if hc, ok := cs.RESTClient().(*rest.RESTClient); ok && hc.Client != nil {
			hc.Client.CloseIdleConnections()
		}
	}
}

// leader returns the name of the master that leads, or "?".
func (a *apiCluster) leader(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := statusGet(ctx, a.sc.httpAddrs[0], "/status")
	if err != nil {
		return "?"
	}
	var st struct {
		LeaderID string `json:"leaderID"`
	}
	if json.Unmarshal(body, &st) != nil || st.LeaderID == "" {
		return "?"
	}
	return st.LeaderID
}

func statusGet(ctx context.Context, httpAddr, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return body, nil
}

func (a *apiCluster) createNamespace(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	_, err := a.clients[0].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// profile takes a CPU profile and an allocation profile of every master
// for d into dir, named phase-<master>.pprof and phase-<master>-allocs.pprof,
// when dir is set. The returned func waits for the profiles; a failed
// profile is logged, not fatal.
func (a *apiCluster) profile(ctx context.Context, b *testing.B, dir, phase string, d time.Duration) (wait func()) {
	if dir == "" {
		return func() {}
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	var wg sync.WaitGroup
	for i, addr := range a.sc.httpAddrs {
		for _, p := range []struct{ kind, suffix string }{{"profile", ""}, {"allocs", "-allocs"}} {
			wg.Go(func() {
				pctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
				defer cancel()
				body, err := statusGet(pctx, addr, fmt.Sprintf("/debug/pprof/%s?seconds=%d", p.kind, secs))
				if err == nil {
					err = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%s%s.pprof", phase, a.sc.ps[i].name, p.suffix)), body, 0o644)
				}
				if err != nil {
					b.Logf("%s profile of %s during %s: %v", p.kind, a.sc.ps[i].name, phase, err)
				}
			})
		}
	}
	return wg.Wait
}

// configMapWriter is the workload's cluster for the create runs: put
// creates a ConfigMap in createNS whose one data value is the hex of the
// first half of value (valueSize characters), named after key.
type configMapWriter struct {
	*skiffCluster // procs and nodeCount; the API runs have no RSS phase
	api           *apiCluster
}

func (w configMapWriter) put(ctx context.Context, key string, value []byte) error {
	// keyPrefix + "c64/007/00000012" -> "c64-007-00000012", a valid name.
	name := strings.ReplaceAll(strings.TrimPrefix(key, keyPrefix), "/", "-")
	_, err := w.api.client().CoreV1().ConfigMaps(createNS).Create(ctx, configMap(name, value), metav1.CreateOptions{})
	return err
}

// configMap returns a ConfigMap whose data is valueSize bytes: the hex of
// the first valueSize/2 bytes of value.
func configMap(name string, value []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Data:       map[string]string{"value": hex.EncodeToString(value[:valueSize/2])},
	}
}

// listResult is the list phase's figures.
type listResult struct {
	items       int
	bytes       int     // of the JSON response
	loadRate    float64 // pods created per second while loading
	contentType string  // of the response to a protobuf Accept header
	proto       string  // HTTP version of the responses, e.g. HTTP/2.0
	// raw are the times to the last byte of a GET of the whole collection;
	// typed are client-go's typed List, decoding included.
	raw, typed []time.Duration
}

func (r *listResult) median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// listPhase creates a.pods pods in listNS with podLoadWorkers clients, then
// lists them whole (no limit, the default linearizable read) a.listRuns
// times each as raw bytes and through client-go's typed List, the runs
// spread over the masters.
func (a *apiCluster) listPhase(ctx context.Context, b *testing.B, st apiSettings) (*listResult, error) {
	res := &listResult{}
	start := time.Now()
	if err := a.createPods(ctx, st.pods); err != nil {
		return nil, err
	}
	res.loadRate = float64(st.pods) / time.Since(start).Seconds()
	b.Logf("created %d pods in %v (%.0f/s)", st.pods, time.Since(start).Round(time.Millisecond), res.loadRate)

	stop := a.profile(ctx, b, st.profileDir, "list", 5*time.Second)
	defer stop()
	for run := range st.listRuns {
		i := run % len(a.clients)
		d, n, size, ctype, proto, err := a.rawList(ctx, i, "application/json")
		if err != nil {
			return nil, err
		}
		if n != st.pods {
			return nil, fmt.Errorf("list through %s: got %d pods, want %d", a.sc.ps[i].name, n, st.pods)
		}
		if ctype != "application/json" {
			return nil, fmt.Errorf("list through %s: got Content-Type %q, want application/json", a.sc.ps[i].name, ctype)
		}
		res.raw, res.items, res.bytes, res.proto = append(res.raw, d), n, size, proto
	}
	// What a protobuf Accept header gets, once; kube-apiserver would answer protobuf.
	_, _, _, ctype, _, err := a.rawList(ctx, 0, contentTypeProtobuf+",application/json")
	if err != nil {
		return nil, err
	}
	res.contentType = ctype
	for run := range st.listRuns {
		i := run % len(a.clients)
		lctx, cancel := context.WithTimeout(ctx, opTimeout)
		t0 := time.Now()
		list, err := a.clients[i].CoreV1().Pods(listNS).List(lctx, metav1.ListOptions{})
		d := time.Since(t0)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("typed list through %s: %w", a.sc.ps[i].name, err)
		}
		if len(list.Items) != st.pods {
			return nil, fmt.Errorf("typed list through %s: got %d pods, want %d", a.sc.ps[i].name, len(list.Items), st.pods)
		}
		res.typed = append(res.typed, d)
	}
	b.Logf("list of %d pods (%.1f MiB JSON): raw %v, typed %v", res.items, float64(res.bytes)/(1<<20), res.raw, res.typed)
	return res, nil
}

// createPods creates n pods named p-00000.. in listNS, each with one
// busybox container, with podLoadWorkers clients.
func (a *apiCluster) createPods(ctx context.Context, n int) error {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		errs = make([]error, podLoadWorkers)
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := range podLoadWorkers {
		wg.Go(func() {
			for k := next.Add(1) - 1; k < int64(n) && ctx.Err() == nil; k = next.Add(1) - 1 {
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%05d", k), Labels: map[string]string{"app": "apibench"}},
					// No scheduler serves this name: the cluster has no
					// nodes, and the leader's scheduler would otherwise keep
					// retrying 10,000 unschedulable pods (status patches,
					// FailedScheduling events) while they are listed.
					Spec: corev1.PodSpec{SchedulerName: "apibench-none", Containers: []corev1.Container{{Name: "main", Image: "busybox", Command: []string{"sleep", "3600"}}}},
				}
				pctx, pcancel := context.WithTimeout(ctx, opTimeout)
				_, err := a.client().CoreV1().Pods(listNS).Create(pctx, pod, metav1.CreateOptions{})
				pcancel()
				if err != nil {
					errs[w] = fmt.Errorf("create pod %s: %w", pod.Name, err)
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// rawList GETs listNS's pods from master i with the given Accept header over
// the client's own transport and returns the time to the last byte, the
// item count (JSON only, else -1), the body size, the Content-Type and the
// HTTP version.
func (a *apiCluster) rawList(ctx context.Context, i int, accept string) (time.Duration, int, int, string, string, error) {
	hc, err := rest.HTTPClientFor(a.configs[i])
	if err != nil {
		return 0, 0, 0, "", "", err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(a.configs[i].Host, "/")+"/api/v1/namespaces/"+listNS+"/pods", nil)
	if err != nil {
		return 0, 0, 0, "", "", err
	}
	req.Header.Set("Accept", accept)
	t0 := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, 0, "", "", fmt.Errorf("list through %s: %w", a.sc.ps[i].name, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(t0)
	if err != nil {
		return 0, 0, 0, "", "", fmt.Errorf("list through %s: %w", a.sc.ps[i].name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, 0, "", "", fmt.Errorf("list through %s: %s: %.300s", a.sc.ps[i].name, resp.Status, body)
	}
	ctype := resp.Header.Get("Content-Type")
	n := -1
	if strings.HasPrefix(ctype, "application/json") {
		var l struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(body, &l); err != nil {
			return 0, 0, 0, "", "", fmt.Errorf("list through %s: %w", a.sc.ps[i].name, err)
		}
		n = len(l.Items)
	}
	return d, n, len(body), ctype, resp.Proto, nil
}

// latencies are a distribution's percentiles.
type latencies struct{ p50, p99, max time.Duration }

func latencyOf(ds []time.Duration) latencies {
	slices.Sort(ds)
	return latencies{p50: percentile(ds, 0.50), p99: percentile(ds, 0.99), max: ds[len(ds)-1]}
}

// watchResult is the watch phase's figures.
type watchResult struct {
	watchers, writes, deliveries int
	// fromReq is each delivery's latency counted from just before the
	// write's request was sent; fromAck from the write's acknowledgement
	// (0 when the event arrived before the acknowledgement).
	fromReq, fromAck latencies
	write            latencies // the writes' own latency
	// byMaster is fromReq of the watchers of each master, in master order.
	byMaster []latencies
}

// watchPhase opens a.watchers watches of ConfigMaps in watchNS, one TCP
// connection each, spread over the masters, from one resourceVersion; makes
// sure every watcher sees a first object; then creates ConfigMaps at
// a.watchRate per second for a.watchDuration and records when each watcher
// receives each one.
func (a *apiCluster) watchPhase(ctx context.Context, b *testing.B, st apiSettings) (*watchResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lctx, lcancel := context.WithTimeout(ctx, opTimeout)
	list, err := a.clients[0].CoreV1().ConfigMaps(watchNS).List(lctx, metav1.ListOptions{})
	lcancel()
	if err != nil {
		return nil, err
	}
	writes := max(1, int(float64(st.watchRate)*st.watchDuration.Seconds()))
	type watcher struct {
		hc     *http.Client
		w      watch.Interface
		recv   []time.Time // by write index; zero until received
		got    atomic.Int64
		synced atomic.Bool // saw the sync object
		err    atomic.Pointer[error]
	}
	ws := make([]*watcher, st.watchers)
	var wg sync.WaitGroup
	defer func() {
		for _, w := range ws {
			if w != nil {
				w.w.Stop()
			}
		}
		wg.Wait()
		for _, w := range ws {
			if w != nil {
				w.hc.CloseIdleConnections()
			}
		}
	}()
	for i := range ws {
		cfg := rest.CopyConfig(a.configs[i%len(a.configs)])
		// A Dial func of its own gives the watcher a transport, and so a
		// connection, of its own, as 100 separate clients would have.
		d := &net.Dialer{Timeout: 5 * time.Second}
		cfg.Dial = d.DialContext
		hc, err := rest.HTTPClientFor(cfg)
		if err != nil {
			return nil, err
		}
		cs, err := kubernetes.NewForConfigAndClient(cfg, hc)
		if err != nil {
			return nil, err
		}
		wi, err := cs.CoreV1().ConfigMaps(watchNS).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
		if err != nil {
			hc.CloseIdleConnections()
			return nil, fmt.Errorf("watcher %d through %s: %w", i, a.sc.ps[i%len(a.configs)].name, err)
		}
		w := &watcher{hc: hc, w: wi, recv: make([]time.Time, writes)}
		ws[i] = w
		wg.Go(func() {
			fail := func(err error) { w.err.Store(&err) }
			for ev := range wi.ResultChan() {
				now := time.Now()
				if ev.Type == watch.Error {
					fail(fmt.Errorf("watcher %d: ERROR event: %v", i, ev.Object))
					return
				}
				cm, ok := ev.Object.(*corev1.ConfigMap)
				if !ok || ev.Type != watch.Added {
					continue
				}
				if cm.Name == "sync" {
					w.synced.Store(true)
					continue
				}
				if cm.Name == "kube-root-ca.crt" {
					continue // the leader's, in every namespace
				}
				k, err := strconv.Atoi(strings.TrimPrefix(cm.Name, "w-"))
				if err != nil || k < 0 || k >= writes || !w.recv[k].IsZero() {
					fail(fmt.Errorf("watcher %d: unexpected or repeated object %q", i, cm.Name))
					return
				}
				w.recv[k] = now
				w.got.Add(1)
			}
		})
	}
	waitAll := func(what string, timeout time.Duration, done func(*watcher) bool) error {
		deadline := time.Now().Add(timeout)
		for {
			missing := 0
			for _, w := range ws {
				if err := w.err.Load(); err != nil {
					return *err
				}
				if !done(w) {
					missing++
				}
			}
			if missing == 0 {
				return nil
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%d of %d watchers still waiting for %s after %v", missing, len(ws), what, timeout)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	value := make([]byte, valueSize)
	copy(value, "apibench watch")
	sctx, scancel := context.WithTimeout(ctx, opTimeout)
	_, err = a.clients[0].CoreV1().ConfigMaps(watchNS).Create(sctx, configMap("sync", value), metav1.CreateOptions{})
	scancel()
	if err != nil {
		return nil, fmt.Errorf("create the sync object: %w", err)
	}
	if err := waitAll("the sync object", deliveryTimeout, func(w *watcher) bool { return w.synced.Load() }); err != nil {
		return nil, err
	}

	stop := a.profile(ctx, b, st.profileDir, "watch", st.watchDuration)
	defer stop()
	sent, acked := make([]time.Time, writes), make([]time.Time, writes)
	errs := make([]error, writes)
	var writers sync.WaitGroup
	interval := time.Duration(float64(time.Second) / float64(st.watchRate))
	start := time.Now()
	for k := range writes {
		time.Sleep(time.Until(start.Add(time.Duration(k) * interval)))
		writers.Go(func() {
			wctx, wcancel := context.WithTimeout(ctx, opTimeout)
			defer wcancel()
			sent[k] = time.Now()
			_, errs[k] = a.client().CoreV1().ConfigMaps(watchNS).Create(wctx, configMap(fmt.Sprintf("w-%06d", k), value), metav1.CreateOptions{})
			acked[k] = time.Now()
		})
	}
	writers.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := waitAll("every event", deliveryTimeout, func(w *watcher) bool { return w.got.Load() == int64(writes) }); err != nil {
		return nil, err
	}
	var fromReq, fromAck, write []time.Duration
	byMaster := make([][]time.Duration, len(a.configs))
	for k := range writes {
		write = append(write, acked[k].Sub(sent[k]))
	}
	for i, w := range ws {
		for k, t := range w.recv {
			fromReq = append(fromReq, t.Sub(sent[k]))
			fromAck = append(fromAck, max(0, t.Sub(acked[k])))
			byMaster[i%len(byMaster)] = append(byMaster[i%len(byMaster)], t.Sub(sent[k]))
		}
	}
	if len(fromReq) == 0 {
		return nil, fmt.Errorf("watch: no deliveries of %d writes to %d watchers (APIBENCH_WATCH_RATE x APIBENCH_WATCH_DURATION too small?)", writes, len(ws))
	}
	r := &watchResult{watchers: len(ws), writes: writes, deliveries: len(fromReq),
		fromReq: latencyOf(fromReq), fromAck: latencyOf(fromAck), write: latencyOf(write)}
	for _, ds := range byMaster {
		r.byMaster = append(r.byMaster, latencyOf(ds))
	}
	b.Logf("%d writes at %d/s to %d watchers: %d deliveries; from request p50 %v p99 %v max %v; from ack p50 %v p99 %v max %v; writes p50 %v p99 %v",
		writes, st.watchRate, len(ws), r.deliveries, r.fromReq.p50, r.fromReq.p99, r.fromReq.max, r.fromAck.p50, r.fromAck.p99, r.fromAck.max, r.write.p50, r.write.p99)
	return r, nil
}

// noisyLoad is the other load, in cores, above which the table calls the run noisy.
const noisyLoad = 0.25

// otherLoad formats the other load of a phase, "?" when not measured.
func otherLoad(others map[string]float64, phase string) string {
	v, ok := others[phase]
	if !ok || math.IsNaN(v) {
		return "?"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + " cores"
}

// formatAPITable renders the API figures beside the etcd reference, then one
// line per target with PASS, MISS or "not measured".
func formatAPITable(s settings, a apiSettings, etcdVer string, r *apiResults) string {
	leader := r.leader
	if leader == "" {
		leader = "?"
	}
	var buf strings.Builder
	fmt.Fprintf(&buf, "Kubernetes API benchmark: 3 masters on 127.0.0.1 (leader %s), client-go %s with protobuf request bodies, requests round-robin over the masters; %d B ConfigMap data, %v per timed run; reference: %s, raw puts of %d B values, same run\n",
		leader, "v0.37.2", valueSize, s.duration, etcdVer, valueSize)
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-22s\tAPI creates\tetcd puts\tAPI/etcd\t\n", "")
	cell := func(x float64, ok bool, prec int) string {
		if !ok {
			return "-"
		}
		return strconv.FormatFloat(x, 'f', prec, 64)
	}
	for _, n := range a.clients {
		api, aok := r.creates[n]
		et, eok := r.etcd[n]
		row := func(label string, f func(runResult) float64, prec int) {
			ratio := "-"
			if aok && eok && f(et) != 0 {
				ratio = strconv.FormatFloat(f(api)/f(et), 'f', 2, 64)
			}
			fmt.Fprintf(tw, "%-22s\t%s\t%s\t%s\t\n", label, cell(f(api), aok, prec), cell(f(et), eok, prec), ratio)
		}
		row(fmt.Sprintf("clients=%d ops/s", n), runResult.rate, 0)
		row(fmt.Sprintf("clients=%d p50 ms", n), func(x runResult) float64 { return ms(x.p50) }, 2)
		row(fmt.Sprintf("clients=%d p99 ms", n), func(x runResult) float64 { return ms(x.p99) }, 2)
		ao, aok := r.others[fmt.Sprintf("creates-%d", n)]
		eo, eok := r.others[fmt.Sprintf("etcd-%d", n)]
		fmt.Fprintf(tw, "%-22s\t%s\t%s\t\t\n", fmt.Sprintf("clients=%d other load", n), cell(ao, aok && !math.IsNaN(ao), 2), cell(eo, eok && !math.IsNaN(eo), 2))
	}
	tw.Flush()
	if l := r.list; l != nil {
		fmt.Fprintf(&buf, "list of %d pods (%.1f MiB JSON over %s; loaded at %.0f pods/s), median of %d runs over the masters:\n", l.items, float64(l.bytes)/(1<<20), l.proto, l.loadRate, len(l.raw))
		fmt.Fprintf(&buf, "  GET, JSON, to the last byte        %7.1f ms (max %.1f ms)\n", ms(l.median(l.raw)), ms(slices.Max(l.raw)))
		fmt.Fprintf(&buf, "  client-go typed List, decoded      %7.1f ms (max %.1f ms)\n", ms(l.median(l.typed)), ms(slices.Max(l.typed)))
		fmt.Fprintf(&buf, "  protobuf Accept gets %s; other load %s\n", l.contentType, otherLoad(r.others, "list"))
	} else {
		buf.WriteString("list: not measured\n")
	}
	if w := r.watch; w != nil {
		fmt.Fprintf(&buf, "watch: %d watchers (own connections, over the masters), %d creates at %d/s (write p50 %.2f ms, p99 %.2f ms), %d deliveries; other load %s:\n",
			w.watchers, w.writes, a.watchRate, ms(w.write.p50), ms(w.write.p99), w.deliveries, otherLoad(r.others, "watch"))
		fmt.Fprintf(&buf, "  from before the request            p50 %.2f ms  p99 %.2f ms  max %.2f ms\n", ms(w.fromReq.p50), ms(w.fromReq.p99), ms(w.fromReq.max))
		fmt.Fprintf(&buf, "  from the acknowledgement           p50 %.2f ms  p99 %.2f ms  max %.2f ms\n", ms(w.fromAck.p50), ms(w.fromAck.p99), ms(w.fromAck.max))
		for i, l := range w.byMaster {
			role := "follower"
			if r.leader == fmt.Sprintf("m%d", i+1) {
				role = "leader"
			}
			fmt.Fprintf(&buf, "  watchers on m%d (%-8s), from request p50 %.2f ms  p99 %.2f ms  max %.2f ms\n", i+1, role, ms(l.p50), ms(l.p99), ms(l.max))
		}
	} else {
		buf.WriteString("watch: not measured\n")
	}

	var busiest float64
	for _, v := range r.others {
		if !math.IsNaN(v) {
			busiest = max(busiest, v)
		}
	}
	fmt.Fprintf(&buf, "other load: cores busy outside this benchmark's processes (other processes, hypervisor steal) during each phase (busiest %.2f of %d)", busiest, runtime.NumCPU())
	if busiest > noisyLoad {
		buf.WriteString(": NOISY, run again on a quiet machine")
	}
	buf.WriteString("\n")

	buf.WriteString("targets:\n")
	// target prints one verdict; phases are the phases its figure comes
	// from, to flag a verdict taken while the machine was busy.
	target := func(label, figure string, measured, met bool, phases ...string) {
		verdict := "not measured"
		switch {
		case measured && met:
			verdict = "PASS"
		case measured:
			verdict = "MISS"
		}
		for _, ph := range phases {
			if v, ok := r.others[ph]; measured && ok && v > noisyLoad {
				verdict += " (noisy)"
				break
			}
		}
		fmt.Fprintf(&buf, "  %-56s %-24s %s\n", label, figure, verdict)
	}
	{
		api, aok := r.creates[64]
		et, eok := r.etcd[64]
		fig := "-"
		if aok && eok {
			fig = fmt.Sprintf("%.0f vs %.0f (%.2f)", api.rate(), et.rate(), api.rate()/et.rate())
		}
		target(fmt.Sprintf("API creates/s >= %.1f x etcd puts/s, 64 clients", targetCreateRatio), fig, aok && eok, aok && eok && api.rate() >= targetCreateRatio*et.rate(), "creates-64", "etcd-64")
	}
	{
		api, ok := r.creates[16]
		fig := "-"
		if ok {
			fig = fmt.Sprintf("%.2f ms", ms(api.p99))
		}
		target(fmt.Sprintf("create p99 <= %v, 16 clients", targetCreateP99), fig, ok, ok && api.p99 <= targetCreateP99, "creates-16")
	}
	if l := r.list; l != nil {
		target(fmt.Sprintf("list of %d pods <= %v (median, JSON)", l.items, targetList), fmt.Sprintf("%.1f ms", ms(l.median(l.raw))), true, l.median(l.raw) <= targetList, "list")
	} else {
		target(fmt.Sprintf("list of %d pods <= %v", a.pods, targetList), "-", false, false)
	}
	if w := r.watch; w != nil {
		target(fmt.Sprintf("watch event p99 <= %v, %d watchers (from request)", targetWatchP99, w.watchers), fmt.Sprintf("%.2f ms", ms(w.fromReq.p99)), true, w.fromReq.p99 <= targetWatchP99, "watch")
	} else {
		target(fmt.Sprintf("watch event p99 <= %v, %d watchers", targetWatchP99, a.watchers), "-", false, false)
	}
	return buf.String()
}

// cpuSample is the machine's busy CPU time and that of this test process
// and some server processes, in seconds, at one moment.
type cpuSample struct {
	at            time.Time
	machine, ours float64
	// each is the CPU time of this process, then of each of procs in order.
	each []float64
	ok   bool
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// sampleCPU reads /proc/stat and the CPU times of this process and procs.
// A sample that cannot be read is marked !ok; the figure it would give is
// then left out, never invented.
func sampleCPU(procs []*proc) cpuSample {
	smp := cpuSample{at: time.Now(), ok: true}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return cpuSample{}
	}
	// user, nice, system and steal; not idle, iowait, irq and softirq (the
	// last two are mostly this benchmark's own loopback traffic).
	for _, i := range []int{1, 2, 3, 8} {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return cpuSample{}
		}
		smp.machine += v / clockTicks
	}
	pids := []string{"self"}
	for _, p := range procs {
		pids = append(pids, strconv.Itoa(p.pid()))
	}
	smp.each = make([]float64, len(pids))
	for n, pid := range pids {
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return cpuSample{}
		}
		// Fields after the parenthesised command: state is the first, utime
		// and stime the 12th and 13th.
		i := strings.LastIndexByte(string(b), ')')
		pf := strings.Fields(string(b[i+1:]))
		if i < 0 || len(pf) < 13 {
			return cpuSample{}
		}
		for _, v := range pf[11:13] {
			t, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return cpuSample{}
			}
			smp.ours += t / clockTicks
			smp.each[n] += t / clockTicks
		}
	}
	return smp
}

// otherCores returns how many cores processes other than the sampled ones
// kept busy on average from a to b, or NaN when either sample failed.
func (a cpuSample) otherCores(b cpuSample) float64 {
	d := b.at.Sub(a.at).Seconds()
	if !a.ok || !b.ok || d <= 0 {
		return math.NaN()
	}
	return max(0, (b.machine-a.machine)-(b.ours-a.ours)) / d
}
