package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// The informer acceptance tests: client-go SharedInformers on the pods and
// configmaps of one namespace, served by real masters, while one writer
// creates, updates and deletes objects and logs every write the API
// acknowledged. Afterwards each informer's handler calls are checked
// against that log (checkExactlyOnce):
//
//   - per object, the first call is an add and there is no second add; a
//     delete, if any, is the last call;
//   - resourceVersions only grow: no update with the resourceVersion already
//     delivered, no call for a state older than one delivered; each
//     update's old object is the previous call's object;
//   - every state delivered is one the writer wrote (same resourceVersion
//     and value), and the last call is the object's final state (or its
//     delete);
//   - while the informer never re-listed, the calls are exactly the writes:
//     every create, update and delete once, in order. After a re-list
//     client-go delivers the difference instead: writes made during the gap
//     arrive as one update to the latest state, deletes as a
//     DeletedFinalStateUnknown tombstone, and objects created and deleted
//     in the gap not at all. Those gaps are allowed only then.

// informerNS is the namespace the informer tests write to and watch.
const informerNS = "informers"

// objWrite is one acknowledged write of one object.
type objWrite struct {
	op string // "create", "update" or "delete"
	rv uint64 // resourceVersion the write gave the object; 0 for a delete
	v  int    // the object's value: configmap data["v"], pod annotation "v"
}

func (w objWrite) String() string {
	if w.op == "delete" {
		return "delete"
	}
	return fmt.Sprintf("%s@%d(v=%d)", w.op, w.rv, w.v)
}

// objectWriter writes configmaps and pods of one namespace through one
// client, one write at a time, and logs every acknowledged write. A write
// whose outcome is unknown (an error, say while the leader is being
// replaced) is settled by reading the object back: this writer is the only
// one, so the object shows whether the write happened. Its methods may be
// called from any goroutine, but writes must not overlap.
type objectWriter struct {
	cs kubernetes.Interface
	ns string

	mu      sync.Mutex
	hist    map[string][]objWrite // by key "configmaps/<name>" or "pods/<name>"
	last    map[string]runtime.Object
	acked   int
	retries int
	changed chan struct{} // closed and replaced after each acknowledged write
}

func newObjectWriter(cs kubernetes.Interface, ns string) *objectWriter {
	return &objectWriter{cs: cs, ns: ns, hist: map[string][]objWrite{}, last: map[string]runtime.Object{}, changed: make(chan struct{})}
}

// splitKey returns the resource and name of a key.
func splitKey(key string) (resource, name string) {
	resource, name, _ = strings.Cut(key, "/")
	return resource, name
}

// objValue returns an object's "v" value, or -1.
func objValue(obj runtime.Object) int {
	var s string
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		s = o.Data["v"]
	case *corev1.Pod:
		s = o.Annotations["v"]
	default:
		return -1
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return v
}

// objRV returns an object's resourceVersion as a number, or 0.
func objRV(obj runtime.Object) uint64 {
	m, err := meta.Accessor(obj)
	if err != nil {
		return 0
	}
	rv, _ := strconv.ParseUint(m.GetResourceVersion(), 10, 64)
	return rv
}

// write makes one write of key and logs it once acknowledged: create with
// value v, update to value v, or delete. It retries a write that did not
// happen; it fails only when the object's state cannot be read back.
func (w *objectWriter) write(ctx context.Context, op, key string, v int) error {
	for attempt := 1; ; attempt++ {
		obj, err := w.try(ctx, op, key, v)
		if err == nil {
			w.record(key, objWrite{op: op, rv: objRV(obj), v: v}, obj)
			return nil
		}
		// Did it happen? Only this writer writes key, so the object tells.
		cur, rerr := w.read(ctx, key)
		if rerr != nil {
			return fmt.Errorf("%s %s (v=%d) failed with %v, and reading it back failed: %w", op, key, v, err, rerr)
		}
		switch {
		case op == "delete" && cur == nil, op != "delete" && cur != nil && objValue(cur) == v:
			w.record(key, objWrite{op: op, rv: objRV(cur), v: v}, cur)
			return nil
		case op == "create" && cur != nil:
			return fmt.Errorf("create %s (v=%d) failed with %v, and the object exists with v=%d", key, v, err, objValue(cur))
		case op != "create" && cur == nil:
			return fmt.Errorf("%s %s (v=%d) failed with %v, and the object is gone", op, key, v, err)
		}
		if op != "create" {
			w.mu.Lock()
			w.last[key] = cur // retry from the state it has
			w.mu.Unlock()
		}
		if attempt == 20 {
			return fmt.Errorf("%s %s (v=%d): still failing after %d attempts: %w", op, key, v, attempt, err)
		}
		w.mu.Lock()
		w.retries++
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond): // back-off between retries of a failed write
		}
	}
}

// try sends one write; the returned object is the server's answer (nil for
// a delete).
func (w *objectWriter) try(ctx context.Context, op, key string, v int) (runtime.Object, error) {
	resource, name := splitKey(key)
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	w.mu.Lock()
	last := w.last[key]
	w.mu.Unlock()
	val := strconv.Itoa(v)
	switch resource + " " + op {
	case "configmaps create":
		return w.cs.CoreV1().ConfigMaps(w.ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": val},
		}, metav1.CreateOptions{})
	case "configmaps update":
		cm := last.(*corev1.ConfigMap).DeepCopy()
		cm.Data = map[string]string{"v": val}
		return w.cs.CoreV1().ConfigMaps(w.ns).Update(ctx, cm, metav1.UpdateOptions{})
	case "pods create":
		return w.cs.CoreV1().Pods(w.ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{"v": val}},
			Spec: corev1.PodSpec{
				// No scheduler picks it up: only the writer changes it.
				SchedulerName: "e2e-no-scheduler",
				Containers:    []corev1.Container{{Name: "c", Image: "busybox:1.36"}},
			},
		}, metav1.CreateOptions{})
	case "pods update":
		pod := last.(*corev1.Pod).DeepCopy()
		pod.Annotations = map[string]string{"v": val}
		return w.cs.CoreV1().Pods(w.ns).Update(ctx, pod, metav1.UpdateOptions{})
	case "configmaps delete":
		return nil, w.cs.CoreV1().ConfigMaps(w.ns).Delete(ctx, name, metav1.DeleteOptions{})
	case "pods delete":
		return nil, w.cs.CoreV1().Pods(w.ns).Delete(ctx, name, metav1.DeleteOptions{})
	}
	panic("objectWriter: unknown write " + resource + " " + op)
}

// read returns the object of key by a default (linearizable) read, nil if
// it does not exist, retrying failed reads for up to 30 s.
func (w *objectWriter) read(ctx context.Context, key string) (runtime.Object, error) {
	resource, name := splitKey(key)
	deadline := time.Now().Add(30 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var obj runtime.Object
		var err error
		if resource == "pods" {
			obj, err = w.cs.CoreV1().Pods(w.ns).Get(rctx, name, metav1.GetOptions{})
		} else {
			obj, err = w.cs.CoreV1().ConfigMaps(w.ns).Get(rctx, name, metav1.GetOptions{})
		}
		cancel()
		switch {
		case err == nil:
			return obj, nil
		case apierrors.IsNotFound(err):
			return nil, nil
		case ctx.Err() != nil || time.Now().After(deadline):
			return nil, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond): // back-off between reads while the cluster recovers
		}
	}
}

func (w *objectWriter) record(key string, wr objWrite, obj runtime.Object) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.hist[key] = append(w.hist[key], wr)
	if wr.op == "delete" {
		delete(w.last, key)
	} else {
		w.last[key] = obj
	}
	w.acked++
	close(w.changed)
	w.changed = make(chan struct{})
}

// history returns a copy of the log of acknowledged writes.
func (w *objectWriter) history() map[string][]objWrite {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string][]objWrite, len(w.hist))
	for k, h := range w.hist {
		out[k] = slices.Clone(h)
	}
	return out
}

// liveKeys returns the keys of resource whose objects exist, sorted.
func (w *objectWriter) liveKeys(resource string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var keys []string
	for k := range w.last {
		if r, _ := splitKey(k); r == resource {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// value returns the value key has now (the last write's), -1 if none.
func (w *objectWriter) value(key string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.hist[key]
	if len(h) == 0 || h[len(h)-1].op == "delete" {
		return -1
	}
	return h[len(h)-1].v
}

// waitAcked waits until at least n writes have been acknowledged in all.
func (w *objectWriter) waitAcked(t *testing.T, n int, timeout time.Duration, what string) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		got, changed := w.acked, w.changed
		w.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s: got %d acknowledged writes, want %d", timeout, what, got, n)
		case <-t.Context().Done():
			t.Fatalf("waiting for %s: %v", what, t.Context().Err())
		}
	}
}

// ackedCount returns how many writes have been acknowledged.
func (w *objectWriter) ackedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked
}

// randomWrites runs writes until stop is closed: it creates objects, updates
// them and deletes some, in both resources, at random (seeded). It returns
// the first write that could not be settled.
func (w *objectWriter) randomWrites(ctx context.Context, stop <-chan struct{}, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 0))
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return nil
		default:
		}
		resource := []string{"configmaps", "pods"}[rng.IntN(2)]
		live := w.liveKeys(resource)
		var err error
		switch r := rng.IntN(10); {
		case len(live) < 3 || (r < 3 && len(live) < 25):
			err = w.write(ctx, "create", fmt.Sprintf("%s/r%05d", resource, seq), 0)
		case r < 8:
			key := live[rng.IntN(len(live))]
			err = w.write(ctx, "update", key, w.value(key)+1)
		default:
			err = w.write(ctx, "delete", live[rng.IntN(len(live))], 0)
		}
		if err != nil {
			return err
		}
	}
}

// informerEvent is one handler call of an informer.
type informerEvent struct {
	typ       string // "add", "update", "delete" or "resync" (an update that changes nothing)
	rv        uint64 // resourceVersion of the object delivered
	oldRV     uint64 // of an update's old object
	v         int
	tombstone bool // a delete of a DeletedFinalStateUnknown
}

func (e informerEvent) String() string {
	switch {
	case e.tombstone:
		return fmt.Sprintf("delete(tombstone of %d, v=%d)", e.rv, e.v)
	case e.typ == "update" || e.typ == "resync":
		return fmt.Sprintf("%s@%d->%d(v=%d)", e.typ, e.oldRV, e.rv, e.v)
	}
	return fmt.Sprintf("%s@%d(v=%d)", e.typ, e.rv, e.v)
}

// eventLog records the handler calls of informers, by object key.
type eventLog struct {
	mu     sync.Mutex
	events map[string][]informerEvent
	bad    []string // calls with objects the log cannot read
}

func newEventLog() *eventLog { return &eventLog{events: map[string][]informerEvent{}} }

// handler returns the event handler that records resource's events.
func (l *eventLog) handler(resource string) cache.ResourceEventHandler {
	rec := func(typ string, obj, old any) {
		e := informerEvent{typ: typ}
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj, e.tombstone = d.Obj, true
		}
		ro, ok := obj.(runtime.Object)
		m, err := meta.Accessor(obj)
		l.mu.Lock()
		defer l.mu.Unlock()
		if !ok || err != nil {
			l.bad = append(l.bad, fmt.Sprintf("%s %s: got object %T", resource, typ, obj))
			return
		}
		e.rv, e.v = objRV(ro), objValue(ro)
		if old != nil {
			e.oldRV = objRV(old.(runtime.Object))
			if e.oldRV == e.rv {
				// After a re-list client-go hands every unchanged object to
				// the handlers again as an update of itself: a listener stays
				// "syncing" until its first resync check, which never comes
				// with resync off (sharedProcessor.addListener). Handlers
				// skip these by resourceVersion (as sample-controller does);
				// the log keeps them apart to check they change nothing.
				e.typ = "resync"
			}
		}
		key := resource + "/" + m.GetName()
		l.events[key] = append(l.events[key], e)
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { rec("add", obj, nil) },
		UpdateFunc: func(old, obj any) { rec("update", obj, old) },
		DeleteFunc: func(obj any) { rec("delete", obj, nil) },
	}
}

// snapshot returns a copy of the events.
func (l *eventLog) snapshot() (map[string][]informerEvent, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string][]informerEvent, len(l.events))
	for k, e := range l.events {
		out[k] = slices.Clone(e)
	}
	return out, slices.Clone(l.bad)
}

// watchSpy sees an informer's requests through rest.Config.WrapTransport:
// per resource, how many full-state requests it made (lists, and watches
// with sendInitialEvents=true), how many plain watches, and how many
// watches ended with 410 Expired (an HTTP 410, or the ERROR event with
// "too old resource version" in a watch stream).
type watchSpy struct {
	mu      sync.Mutex
	lists   map[string]int
	watches map[string]int
	expired map[string]int
}

func newWatchSpy() *watchSpy {
	return &watchSpy{lists: map[string]int{}, watches: map[string]int{}, expired: map[string]int{}}
}

func (s *watchSpy) count(m map[string]int, resource string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return m[resource]
}

func (s *watchSpy) add(m map[string]int, resource string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m[resource]++
}

// wrap is a transport.WrapperFunc.
func (s *watchSpy) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if req.Method != http.MethodGet {
			return rt.RoundTrip(req)
		}
		segs := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
		resource := segs[len(segs)-1]
		q := req.URL.Query()
		watch := q.Get("watch") == "true" || q.Get("watch") == "1"
		if !watch || q.Get("sendInitialEvents") == "true" {
			s.add(s.lists, resource)
		} else {
			s.add(s.watches, resource)
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return resp, err
		}
		if resp.StatusCode == http.StatusGone {
			s.add(s.expired, resource)
		} else if watch {
			resp.Body = &expiredScanner{ReadCloser: resp.Body, found: func() { s.add(s.expired, resource) }}
		}
		return resp, nil
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// tooOld is in the message of every 410 a watch gets for an old
// resourceVersion (kube-apiserver's wording, which Skiff keeps), JSON or
// protobuf.
const tooOld = "too old resource version"

// expiredScanner passes a watch stream through and calls found for each
// tooOld it contains, also across reads.
type expiredScanner struct {
	io.ReadCloser
	found func()
	tail  []byte
}

func (e *expiredScanner) Read(p []byte) (int, error) {
	n, err := e.ReadCloser.Read(p)
	if n > 0 {
		buf := append(e.tail, p[:n]...)
		for i := 0; ; {
			j := strings.Index(string(buf[i:]), tooOld)
			if j < 0 {
				break
			}
			if i+j+len(tooOld) > len(e.tail) { // not seen by an earlier read
				e.found()
			}
			i += j + len(tooOld)
		}
		e.tail = slices.Clone(buf[max(0, len(buf)-len(tooOld)+1):])
	}
	return n, err
}

// startInformers starts a SharedInformerFactory on the pods and configmaps
// of informerNS with cfg (plus spy), and waits until both have synced. It
// returns the recorded events and the informers' stores; t.Cleanup stops it.
func startInformers(t *testing.T, cfg *rest.Config, spy *watchSpy) (*eventLog, map[string]cache.Store) {
	t.Helper()
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg = rest.CopyConfig(cfg)
	// client-go's own transport gives up a TLS handshake after 10 s; a
	// connection the proxy holds while the informer is cut off must not.
	cfg.TLSClientConfig = rest.TLSClientConfig{}
	cfg.Transport = &http.Transport{TLSClientConfig: tlsCfg, TLSHandshakeTimeout: 2 * time.Minute, MaxIdleConnsPerHost: 10}
	cfg.WrapTransport = spy.wrap
	cfg.Timeout = 0 // watches last as long as the server lets them
	cs := clientset(t, cfg)
	log := newEventLog()
	// The writer's objects only: the leader's kube-root-ca.crt is not one.
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(informerNS),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name!=kube-root-ca.crt" }))
	infs := map[string]cache.SharedIndexInformer{
		"configmaps": factory.Core().V1().ConfigMaps().Informer(),
		"pods":       factory.Core().V1().Pods().Informer(),
	}
	stores := map[string]cache.Store{}
	for resource, inf := range infs {
		if _, err := inf.AddEventHandler(log.handler(resource)); err != nil {
			t.Fatal(err)
		}
		stores[resource] = inf.GetStore()
	}
	stop := make(chan struct{})
	factory.Start(stop)
	t.Cleanup(func() {
		close(stop)
		factory.Shutdown()
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for resource, inf := range infs {
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			t.Fatalf("%s informer through %s did not sync within 30s", resource, cfg.Host)
		}
	}
	return log, stores
}

// waitConverged waits until the informer has delivered the last write of
// every object the writer wrote.
func waitConverged(t *testing.T, who string, log *eventLog, w *objectWriter, timeout time.Duration) {
	t.Helper()
	waitUntil(t, timeout, who+" to deliver the last write of every object", func(context.Context) error {
		events, _ := log.snapshot()
		var behind []string
		for key, h := range w.history() {
			want, ev := h[len(h)-1], events[key]
			switch {
			case want.op == "delete" && (len(ev) == 0 || ev[len(ev)-1].typ == "delete"):
			case len(ev) > 0 && ev[len(ev)-1].typ != "delete" && ev[len(ev)-1].rv == want.rv:
			default:
				behind = append(behind, fmt.Sprintf("%s: last write %v, delivered %v", key, want, ev))
			}
		}
		if len(behind) > 0 {
			slices.Sort(behind)
			return fmt.Errorf("%d objects behind, e.g. %s", len(behind), behind[0])
		}
		return nil
	})
}

// checkExactlyOnce checks an informer's events against the writer's log, as
// described at the top of this file. strict(key) says whether key's events
// must be exactly its writes (no re-list could have hidden any).
func checkExactlyOnce(hist map[string][]objWrite, events map[string][]informerEvent, strict func(key string) bool) []string {
	var bad []string
	problem := func(key, format string, args ...any) {
		bad = append(bad, fmt.Sprintf("%s: %s\n\twrites:  %v\n\tdelivered: %v", key, fmt.Sprintf(format, args...), hist[key], events[key]))
	}
	keys := map[string]bool{}
	for k := range hist {
		keys[k] = true
	}
	for k := range events {
		keys[k] = true
	}
	for key := range keys {
		h, all := hist[key], events[key]
		var ev []informerEvent // without the no-op resync updates, each checked here
		for i, e := range all {
			switch {
			case e.typ != "resync":
				ev = append(ev, e)
			case strict(key):
				problem(key, "event %d %v: an update that changes nothing, without a re-list", i, e)
			case len(ev) == 0 || ev[len(ev)-1].typ == "delete" || ev[len(ev)-1].rv != e.rv || ev[len(ev)-1].v != e.v:
				problem(key, "event %d %v: an update to the same resourceVersion that is not the state last delivered", i, e)
			}
		}
		if len(h) == 0 {
			problem(key, "events for an object never written")
			continue
		}
		written := map[uint64]objWrite{}
		var lastWriteRV uint64
		for _, wr := range h {
			if wr.op != "delete" {
				written[wr.rv] = wr
				lastWriteRV = wr.rv
			}
		}
		deleted := h[len(h)-1].op == "delete"
		for i, e := range ev {
			switch {
			case i == 0 && e.typ != "add":
				problem(key, "first event is %v, want an add", e)
			case i > 0 && e.typ == "add":
				problem(key, "event %d is a second add %v", i, e)
			case i > 0 && ev[i-1].typ == "delete":
				problem(key, "event %d %v comes after a delete", i, e)
			case e.typ == "update" && e.oldRV != ev[i-1].rv:
				problem(key, "event %d %v: its old object has resourceVersion %d, the previous event delivered %d", i, e, e.oldRV, ev[i-1].rv)
			case e.tombstone && (i == 0 || e.rv != ev[i-1].rv):
				problem(key, "event %d %v: a tombstone should carry the last state delivered", i, e)
			case !e.tombstone && i > 0 && e.rv <= ev[i-1].rv:
				problem(key, "event %d %v: resourceVersion %d not after the previous event's %d", i, e, e.rv, ev[i-1].rv)
			case e.typ == "delete" && !deleted:
				problem(key, "event %d %v: the object was never deleted", i, e)
			case e.typ == "delete" && !e.tombstone && (e.rv <= lastWriteRV || e.v != h[len(h)-2].v):
				problem(key, "event %d %v: want the last state (v=%d) at a resourceVersion after its last write %d", i, e, h[len(h)-2].v, lastWriteRV)
			case e.typ != "delete" && (written[e.rv].op == "" || written[e.rv].v != e.v):
				problem(key, "event %d %v: no write made this state", i, e)
			}
		}
		switch {
		case deleted && len(ev) > 0 && ev[len(ev)-1].typ != "delete":
			problem(key, "deleted, but the last event is %v", ev[len(ev)-1])
		case deleted && len(ev) == 0 && strict(key):
			problem(key, "deleted, but no event was delivered")
		case !deleted && (len(ev) == 0 || ev[len(ev)-1].rv != lastWriteRV):
			problem(key, "the last event is not the final state, resourceVersion %d", lastWriteRV)
		}
		if strict(key) {
			var want, got []string
			for _, wr := range h {
				switch wr.op {
				case "create":
					want = append(want, fmt.Sprintf("add@%d", wr.rv))
				case "update":
					want = append(want, fmt.Sprintf("update@%d", wr.rv))
				case "delete":
					want = append(want, "delete")
				}
			}
			for _, e := range ev {
				switch {
				case e.typ == "delete" && !e.tombstone:
					got = append(got, "delete")
				case e.tombstone:
					got = append(got, "delete(tombstone)")
				default:
					got = append(got, fmt.Sprintf("%s@%d", e.typ, e.rv))
				}
			}
			if !slices.Equal(got, want) {
				problem(key, "without a re-list, got events %v, want exactly %v", got, want)
			}
		}
	}
	slices.Sort(bad)
	return bad
}

// checkStores checks that each informer store holds exactly the objects
// the writer left, at their last resourceVersions.
func checkStores(t *testing.T, who string, stores map[string]cache.Store, w *objectWriter) {
	t.Helper()
	want := map[string]uint64{}
	for key, h := range w.history() {
		if last := h[len(h)-1]; last.op != "delete" {
			want[key] = last.rv
		}
	}
	got := map[string]uint64{}
	for resource, st := range stores {
		for _, obj := range st.List() {
			m, _ := meta.Accessor(obj)
			got[resource+"/"+m.GetName()] = objRV(obj.(runtime.Object))
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: informer stores hold %v, want %v", who, got, want)
	}
}

// checkServer checks that a default list through cs returns exactly the
// objects the writer left, at their last resourceVersions.
func checkServer(t *testing.T, cs kubernetes.Interface, w *objectWriter) {
	t.Helper()
	want := map[string]uint64{}
	for key, h := range w.history() {
		if last := h[len(h)-1]; last.op != "delete" {
			want[key] = last.rv
		}
	}
	got := map[string]uint64{}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cms, err := cs.CoreV1().ConfigMaps(informerNS).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name!=kube-root-ca.crt"})
	if err != nil {
		t.Fatalf("list configmaps: %v", err)
	}
	for i := range cms.Items {
		got["configmaps/"+cms.Items[i].Name] = objRV(&cms.Items[i])
	}
	pods, err := cs.CoreV1().Pods(informerNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list pods: %v", err)
	}
	for i := range pods.Items {
		got["pods/"+pods.Items[i].Name] = objRV(&pods.Items[i])
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the server holds %v, want what the writer left: %v", got, want)
	}
}

// createNamespace creates informerNS.
func createNamespace(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// TestInformersThroughLeaderKill runs two informers while a writer keeps
// writing and the leader master is killed with SIGKILL and restarted: one
// informer talks to a follower directly, the other to the leader through a
// proxy that reaches any live master, so the kill cuts its watches and it
// must resume elsewhere. Both must see every write exactly once.
func TestInformersThroughLeaderKill(t *testing.T) {
	ms := startMasters(t, 3)
	leader := ms.waitLeader(t)
	follower, writerAt := (leader+1)%3, (leader+2)%3
	cfgs := make([]*rest.Config, 3)
	for i := range cfgs {
		cfgs[i] = ms.apiConfig(t, i)
	}
	writerCS := clientset(t, cfgs[writerAt])
	createNamespace(t, writerCS, informerNS)

	direct := newWatchSpy()
	directLog, directStores := startInformers(t, cfgs[follower], direct)
	proxy := newTCPProxy(t, hostPort(t, cfgs[leader]), hostPort(t, cfgs[follower]), hostPort(t, cfgs[writerAt]))
	viaProxyCfg := rest.CopyConfig(cfgs[leader])
	viaProxyCfg.Host = "https://" + proxy.addr() // the serving certificates name 127.0.0.1
	proxied := newWatchSpy()
	proxiedLog, proxiedStores := startInformers(t, viaProxyCfg, proxied)
	if n := proxy.dialedTo(hostPort(t, cfgs[leader])); n == 0 {
		t.Fatalf("the proxied informer made no connection to the leader %s", ms.nodes[leader].name)
	}

	w := newObjectWriter(writerCS, informerNS)
	stop := make(chan struct{})
	writerDone := make(chan error, 1)
	seed := uint64(time.Now().UnixNano())
	t.Logf("writes through %s, random seed %d", ms.nodes[writerAt].name, seed)
	go func() { writerDone <- w.randomWrites(t.Context(), stop, seed) }()
	stopWriter := func() {
		select {
		case <-stop:
			return
		default:
		}
		close(stop)
		if err := <-writerDone; err != nil {
			t.Errorf("writer: %v", err)
		}
	}
	t.Cleanup(stopWriter)
	w.waitAcked(t, 150, 30*time.Second, "writes before the kill")

	ms.kill(t, leader)
	killedAt := w.ackedCount()
	t.Logf("killed the leader %s after %d writes", ms.nodes[leader].name, killedAt)
	proxy.setUpstreams(hostPort(t, cfgs[follower]), hostPort(t, cfgs[writerAt]))
	w.waitAcked(t, killedAt+150, 40*time.Second, "writes through a new leader")
	newLeader := ms.waitLeader(t)
	if newLeader == leader {
		t.Fatalf("got leader %s after killing it, want another", ms.nodes[leader].name)
	}

	ms.restart(t, leader)
	ms.waitCaughtUp(t, leader)
	cfgs[leader] = ms.apiConfig(t, leader) // a new port
	proxy.setUpstreams(hostPort(t, cfgs[follower]), hostPort(t, cfgs[writerAt]), hostPort(t, cfgs[leader]))
	restartedAt := w.ackedCount()
	w.waitAcked(t, restartedAt+100, 30*time.Second, "writes after the restart")
	stopWriter()
	// Last writes as a barrier: an informer that delivered them delivered
	// everything before them (one watch stream per resource, in order).
	for _, key := range []string{"configmaps/zz-last", "pods/zz-last"} {
		if err := w.write(t.Context(), "create", key, 0); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d writes acknowledged (%d settled by reading back after an error)", w.ackedCount(), w.retries)

	waitConverged(t, "the informer on a follower", directLog, w, 30*time.Second)
	waitConverged(t, "the informer through the proxy", proxiedLog, w, 30*time.Second)
	if n := proxy.dialedTo(hostPort(t, cfgs[follower])) + proxy.dialedTo(hostPort(t, cfgs[writerAt])); n == 0 {
		t.Errorf("the proxied informer never reconnected to another master after the kill")
	}
	for _, resource := range []string{"configmaps", "pods"} {
		if n := proxied.count(proxied.watches, resource); n == 0 {
			t.Errorf("the proxied %s informer never watched again after its connection to %s was cut", resource, ms.nodes[leader].name)
		}
	}
	hist := w.history()
	checkServer(t, clientset(t, cfgs[newLeader]), w)
	for _, c := range []struct {
		who    string
		spy    *watchSpy
		log    *eventLog
		stores map[string]cache.Store
	}{
		{"informer on follower " + ms.nodes[follower].name, direct, directLog, directStores},
		{"informer through the proxy (leader " + ms.nodes[leader].name + " first)", proxied, proxiedLog, proxiedStores},
	} {
		relisted := map[string]bool{}
		for _, resource := range []string{"configmaps", "pods"} {
			relisted[resource] = c.spy.count(c.spy.lists, resource) > 1
			t.Logf("%s, %s: %d full lists, %d watches, %d expired", c.who, resource,
				c.spy.count(c.spy.lists, resource), c.spy.count(c.spy.watches, resource), c.spy.count(c.spy.expired, resource))
		}
		// The informer on a follower keeps its watch: it must never re-list.
		if c.spy == direct && (relisted["configmaps"] || relisted["pods"]) {
			t.Errorf("%s re-listed: %v", c.who, relisted)
		}
		events, unreadable := c.log.snapshot()
		reportSome(t, c.who, unreadable)
		reportSome(t, c.who, checkExactlyOnce(hist, events, func(key string) bool {
			r, _ := splitKey(key)
			return !relisted[r]
		}))
		checkStores(t, c.who, c.stores, w)
	}
}

// TestInformerRelistAfterCompaction cuts an informer off its master with a
// proxy, writes meanwhile and waits until the master has compacted its
// history past everything the informer saw; when the informer reconnects
// its watch must get 410 Expired and it must re-list. Its handlers must
// still see every object's final state exactly once: updates made in the
// gap as one update to the latest state, deletes as tombstones, objects
// born and gone in the gap never; and every write after the re-list once.
func TestInformerRelistAfterCompaction(t *testing.T) {
	ms := startMastersWith(t, 3, "--compact-interval", "500ms")
	leader := ms.waitLeader(t)
	target := (leader + 1) % 3
	cfg := ms.apiConfig(t, target)
	cs := clientset(t, cfg)
	createNamespace(t, cs, informerNS)

	proxy := newTCPProxy(t, hostPort(t, cfg))
	viaProxy := rest.CopyConfig(cfg)
	viaProxy.Host = "https://" + proxy.addr()
	spy := newWatchSpy()
	log, stores := startInformers(t, viaProxy, spy)
	w := newObjectWriter(cs, informerNS)
	write := func(op, key string, v int) {
		t.Helper()
		if err := w.write(t.Context(), op, key, v); err != nil {
			t.Fatal(err)
		}
	}
	resources := []string{"configmaps", "pods"}

	// Before the gap: objects o0..o7, each created and updated once.
	for _, r := range resources {
		for i := range 8 {
			key := fmt.Sprintf("%s/o%d", r, i)
			write("create", key, 0)
			write("update", key, 1)
		}
	}
	waitConverged(t, "the informer", log, w, 20*time.Second)
	for _, r := range resources {
		if n := spy.count(spy.lists, r); n != 1 {
			t.Fatalf("%s: got %d full lists before the gap, want 1", r, n)
		}
	}

	proxy.freeze()
	frozen := time.Now()
	// The gap: o0..o2 updated twice, o3 updated then deleted, o4..o5
	// deleted, n0..n1 created, g0 created and deleted.
	for _, r := range resources {
		for i := range 3 {
			key := fmt.Sprintf("%s/o%d", r, i)
			write("update", key, 2)
			write("update", key, 3)
		}
		write("update", r+"/o3", 2)
		for i := 3; i <= 5; i++ {
			write("delete", fmt.Sprintf("%s/o%d", r, i), 0)
		}
		write("create", r+"/n0", 0)
		write("create", r+"/n1", 0)
		write("create", r+"/g0", 0)
		write("delete", r+"/g0", 0)
	}
	// The revision of everything written in the gap: a default list reads
	// at least that far.
	lctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	list, err := cs.CoreV1().ConfigMaps(informerNS).List(lctx, metav1.ListOptions{})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	gapRev, _ := strconv.ParseInt(list.ResourceVersion, 10, 64)
	waitUntil(t, 20*time.Second, fmt.Sprintf("%s to compact past revision %d", ms.nodes[target].name, gapRev), func(ctx context.Context) error {
		st, err := ms.status(ctx, target)
		if err != nil {
			return err
		}
		if st.CompactRev < gapRev {
			return fmt.Errorf("compacted up to %d", st.CompactRev)
		}
		return nil
	})
	// Each informer's watch was cut and is waiting to resume from before
	// the gap (a held connection per resource).
	waitUntil(t, 10*time.Second, "both informers to try to watch again", func(context.Context) error {
		if n := proxy.heldConns(); n < len(resources) {
			return fmt.Errorf("%d connections held", n)
		}
		return nil
	})
	t.Logf("cut off for %v; thawing", time.Since(frozen).Round(time.Millisecond))
	proxy.thaw()

	waitConverged(t, "the informer after the gap", log, w, 30*time.Second)
	for _, r := range resources {
		if n := spy.count(spy.expired, r); n == 0 {
			t.Errorf("%s: the informer's watch never got 410 Expired", r)
		}
		if n := spy.count(spy.lists, r); n < 2 {
			t.Errorf("%s: got %d full lists, want a re-list after the 410", r, n)
		}
	}

	// After the re-list: every write is seen exactly once again.
	for _, r := range resources {
		write("update", r+"/o0", 4)
		write("delete", r+"/o1", 0)
		write("create", r+"/p0", 0)
		write("update", r+"/p0", 1)
		write("create", r+"/p1", 0)
		write("delete", r+"/p1", 0)
		write("create", r+"/zz-last", 0)
	}
	waitConverged(t, "the informer after the re-list", log, w, 20*time.Second)

	events, unreadable := log.snapshot()
	reportSome(t, "informer", unreadable)
	born := func(key string) bool { // objects created after the re-list
		_, name := splitKey(key)
		return strings.HasPrefix(name, "p") || strings.HasPrefix(name, "zz")
	}
	reportSome(t, "informer", checkExactlyOnce(w.history(), events, born))
	checkStores(t, "informer", stores, w)
	checkServer(t, cs, w)

	// Every object's events, by type and value: the gap was delivered as
	// client-go delivers a re-list's difference.
	want := map[string]string{
		"o0":      "add0 update1 update3 update4", // updated twice in the gap: one update
		"o1":      "add0 update1 update3 delete3",
		"o2":      "add0 update1 update3",
		"o3":      "add0 update1 tombstone1", // updated and deleted in the gap: a tombstone of the last state seen
		"o4":      "add0 update1 tombstone1",
		"o5":      "add0 update1 tombstone1",
		"o6":      "add0 update1",
		"o7":      "add0 update1",
		"n0":      "add0", // created in the gap
		"n1":      "add0",
		"g0":      "", // created and deleted in the gap: never seen
		"p0":      "add0 update1",
		"p1":      "add0 delete0",
		"zz-last": "add0",
	}
	for _, r := range resources {
		for name, want := range want {
			var got []string
			for _, e := range events[r+"/"+name] {
				if e.typ == "resync" {
					continue // checked by checkExactlyOnce
				}
				typ := e.typ
				if e.tombstone {
					typ = "tombstone"
				}
				got = append(got, fmt.Sprintf("%s%d", typ, e.v))
			}
			if strings.Join(got, " ") != want {
				t.Errorf("%s/%s: got events %q, want %q", r, name, strings.Join(got, " "), want)
			}
		}
	}
}

// TestCheckExactlyOnce checks the checker on made-up histories.
func TestCheckExactlyOnce(t *testing.T) {
	hist := map[string][]objWrite{
		"configmaps/a": {{"create", 10, 0}, {"update", 12, 1}, {"update", 15, 2}, {"delete", 0, 0}},
	}
	add := func(rv uint64, v int) informerEvent { return informerEvent{typ: "add", rv: rv, v: v} }
	upd := func(old, rv uint64, v int) informerEvent {
		return informerEvent{typ: "update", oldRV: old, rv: rv, v: v}
	}
	del := func(rv uint64, v int) informerEvent { return informerEvent{typ: "delete", rv: rv, v: v} }
	tomb := func(rv uint64, v int) informerEvent {
		return informerEvent{typ: "delete", rv: rv, v: v, tombstone: true}
	}
	resync := func(rv uint64, v int) informerEvent { return informerEvent{typ: "resync", oldRV: rv, rv: rv, v: v} }
	for _, c := range []struct {
		name   string
		events []informerEvent
		strict bool
		ok     bool
	}{
		{"every write once", []informerEvent{add(10, 0), upd(10, 12, 1), upd(12, 15, 2), del(16, 2)}, true, true},
		{"a second add", []informerEvent{add(10, 0), add(12, 1), upd(12, 15, 2), del(16, 2)}, false, false},
		{"an update missed without a re-list", []informerEvent{add(10, 0), upd(10, 15, 2), del(16, 2)}, true, false},
		{"updates collapsed by a re-list", []informerEvent{add(10, 0), upd(10, 15, 2), del(16, 2)}, false, true},
		{"a tombstone after a re-list", []informerEvent{add(10, 0), upd(10, 12, 1), tomb(12, 1)}, false, true},
		{"a tombstone of another state", []informerEvent{add(10, 0), upd(10, 12, 1), tomb(15, 2)}, false, false},
		{"a no-op update after a re-list", []informerEvent{add(10, 0), upd(10, 12, 1), resync(12, 1), upd(12, 15, 2), del(16, 2)}, false, true},
		{"a no-op update without a re-list", []informerEvent{add(10, 0), upd(10, 12, 1), resync(12, 1), upd(12, 15, 2), del(16, 2)}, true, false},
		{"an update delivered twice", []informerEvent{add(10, 0), upd(10, 12, 1), upd(10, 12, 1), upd(12, 15, 2), del(16, 2)}, false, false},
		{"an older state after a newer one", []informerEvent{add(10, 0), upd(10, 15, 2), upd(15, 12, 1), del(16, 2)}, false, false},
		{"a state never written", []informerEvent{add(10, 0), upd(10, 13, 1), del(16, 1)}, false, false},
		{"the delete missing", []informerEvent{add(10, 0), upd(10, 12, 1), upd(12, 15, 2)}, false, false},
		{"nothing, after a re-list", nil, false, true},
		{"nothing, without a re-list", nil, true, false},
		{"a delete without the last state", []informerEvent{add(10, 0), upd(10, 12, 1), upd(12, 15, 2), del(16, 1)}, true, false},
	} {
		bad := checkExactlyOnce(hist, map[string][]informerEvent{"configmaps/a": c.events}, func(string) bool { return c.strict })
		if got := len(bad) == 0; got != c.ok {
			t.Errorf("%s: got ok=%v, want %v; problems: %v", c.name, got, c.ok, bad)
		}
	}
	if bad := checkExactlyOnce(nil, map[string][]informerEvent{"pods/x": {add(3, 0)}}, func(string) bool { return false }); len(bad) == 0 {
		t.Error("events for an object never written: got no problem")
	}
}
