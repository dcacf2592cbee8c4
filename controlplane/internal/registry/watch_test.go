package registry

import (
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

func TestWatchFromRevision(t *testing.T) {
	st, rs := newTestStore(t)
	ctx := t.Context()
	mustCreate(t, st, configMaps, "default", configMap("default", "before", nil, nil))
	from := strconv.FormatInt(rs.Revision(), 10)

	w, err := st.Watch(ctx, configMaps, "default", ListOptions{ResourceVersion: from})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	created := mustCreate(t, st, configMaps, "default", configMap("default", "cfg", nil, map[string]string{"v": "1"}))
	mustCreate(t, st, configMaps, "other", configMap("other", "elsewhere", nil, nil)) // not watched
	upd := created.(*corev1.ConfigMap).DeepCopy()
	upd.Data["v"] = "2"
	updated, err := st.Update(ctx, configMaps, "default", "cfg", upd, UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Delete(ctx, configMaps, "default", "cfg", DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleteRev := strconv.FormatInt(rs.Revision(), 10)

	ev := nextEvent(t, w)
	wantEvent(t, ev, watch.Added, "cfg", rvOf(t, created))
	if !semanticEqual(ev.Object, created) {
		t.Errorf("ADDED object: got %+v, want %+v", ev.Object, created)
	}
	ev = nextEvent(t, w)
	wantEvent(t, ev, watch.Modified, "cfg", rvOf(t, updated))
	if !semanticEqual(ev.Object, updated) {
		t.Errorf("MODIFIED object: got %+v, want %+v", ev.Object, updated)
	}
	ev = nextEvent(t, w)
	wantEvent(t, ev, watch.Deleted, "cfg", deleteRev)
	if got := ev.Object.(*corev1.ConfigMap); got.Data["v"] != "2" || got.UID != updated.(*corev1.ConfigMap).UID || got.Kind != "ConfigMap" {
		t.Errorf("DELETED object: got %+v, want the last state (v=2) with TypeMeta", got)
	}

	// Stop closes the result channel.
	w.Stop()
	if _, ok := <-w.ResultChan(); ok {
		t.Error("result channel open after Stop, want closed")
	}
}

func TestWatchSelectorTransitions(t *testing.T) {
	st, rs := newTestStore(t)
	ctx := t.Context()
	web := map[string]string{"app": "web"}
	mustCreate(t, st, pods, "default", pod("default", "p1", "", web))
	from := strconv.FormatInt(rs.Revision(), 10)

	tests := []struct {
		name  string
		label string
		field string
	}{
		{"label", "app=web", ""},
		{"field hook", "", "spec.nodeName=n1"},
	}
	watchers := make([]watch.Interface, len(tests))
	for i, tt := range tests {
		opts := ListOptions{ResourceVersion: from}
		opts.LabelSelector, _ = labels.Parse(tt.label)
		opts.FieldSelector, _ = fields.ParseSelector(tt.field)
		w, err := st.Watch(ctx, pods, "", opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
		watchers[i] = w
	}
	update := func(mutate func(*corev1.Pod)) *corev1.Pod {
		t.Helper()
		out, err := st.GuaranteedUpdate(ctx, pods, "default", "p1", func(cur runtime.Object) (runtime.Object, error) {
			pp := cur.(*corev1.Pod)
			mutate(pp)
			return pp, nil
		}, UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return out.(*corev1.Pod)
	}
	bound := update(func(p *corev1.Pod) { p.Spec.NodeName = "n1" })             // field: ADDED; label: MODIFIED
	unlabeled := update(func(p *corev1.Pod) { p.Labels = nil })                 // label: DELETED; field: MODIFIED
	relabeled := update(func(p *corev1.Pod) { p.Labels = web })                 // label: ADDED; field: MODIFIED
	moved := update(func(p *corev1.Pod) { p.Spec.NodeName = "n2" })             // field: DELETED; label: MODIFIED
	mustCreate(t, st, pods, "default", pod("default", "p2", "n3", nil))         // neither
	last := mustCreate(t, st, pods, "default", pod("default", "p3", "n1", web)) // both ADDED

	wantLabel := []struct {
		typ watch.EventType
		obj *corev1.Pod
		rv  string
	}{
		{watch.Modified, bound, bound.ResourceVersion},
		{watch.Deleted, bound, unlabeled.ResourceVersion}, // the last matching state, at the revision it stopped matching
		{watch.Added, relabeled, relabeled.ResourceVersion},
		{watch.Modified, moved, moved.ResourceVersion},
	}
	wantField := []struct {
		typ watch.EventType
		obj *corev1.Pod
		rv  string
	}{
		{watch.Added, bound, bound.ResourceVersion},
		{watch.Modified, unlabeled, unlabeled.ResourceVersion},
		{watch.Modified, relabeled, relabeled.ResourceVersion},
		{watch.Deleted, relabeled, moved.ResourceVersion},
	}
	for i, want := range [][]struct {
		typ watch.EventType
		obj *corev1.Pod
		rv  string
	}{wantLabel, wantField} {
		for j, w := range want {
			ev := nextEvent(t, watchers[i])
			wantEvent(t, ev, w.typ, "p1", w.rv)
			got := ev.Object.(*corev1.Pod)
			if !semanticEqual(got.Labels, w.obj.Labels) || got.Spec.NodeName != w.obj.Spec.NodeName {
				t.Errorf("%s watch event %d: got labels %v node %q, want %v %q", tests[i].name, j, got.Labels, got.Spec.NodeName, w.obj.Labels, w.obj.Spec.NodeName)
			}
		}
		// p2 matches neither: the next event is p3's.
		wantEvent(t, nextEvent(t, watchers[i]), watch.Added, "p3", rvOf(t, last))
	}

}

func TestWatchInitialEvents(t *testing.T) {
	st, _ := newTestStore(t)
	ctx := t.Context()
	a := mustCreate(t, st, configMaps, "default", configMap("default", "a", map[string]string{"x": "1"}, nil))
	mustCreate(t, st, configMaps, "default", configMap("default", "b", nil, nil))
	c := mustCreate(t, st, configMaps, "default", configMap("default", "c", map[string]string{"x": "1"}, nil))
	for _, rv := range []string{"", "0"} {
		t.Run("rv="+rv, func(t *testing.T) {
			w, err := st.Watch(ctx, configMaps, "default", ListOptions{ResourceVersion: rv, LabelSelector: labels.SelectorFromSet(labels.Set{"x": "1"})})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			wantEvent(t, nextEvent(t, w), watch.Added, "a", rvOf(t, a))
			wantEvent(t, nextEvent(t, w), watch.Added, "c", rvOf(t, c))
			d := mustCreate(t, st, configMaps, "default", configMap("default", "d"+rv, map[string]string{"x": "1"}, nil))
			wantEvent(t, nextEvent(t, w), watch.Added, "d"+rv, rvOf(t, d))
			if _, err := st.Delete(ctx, configMaps, "default", "d"+rv, DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			if ev := nextEvent(t, w); ev.Type != watch.Deleted {
				t.Fatalf("got %s, want DELETED", ev.Type)
			}
		})
	}
}

func TestWatchCompacted(t *testing.T) {
	st, rs := newTestStore(t)
	ctx := t.Context()
	first := mustCreate(t, st, configMaps, "default", configMap("default", "a", nil, nil))
	last := mustCreate(t, st, configMaps, "default", configMap("default", "b", nil, nil))
	if err := rs.Compact(ctx, revOf(t, last)); err != nil {
		t.Fatal(err)
	}
	w, err := st.Watch(ctx, configMaps, "", ListOptions{ResourceVersion: rvOf(t, first)})
	if err != nil {
		t.Fatalf("Watch: got error %v, want an ERROR event", err)
	}
	defer w.Stop()
	ev := nextEvent(t, w)
	status, ok := ev.Object.(*metav1.Status)
	if ev.Type != watch.Error || !ok {
		t.Fatalf("got %s %T, want ERROR with a *metav1.Status", ev.Type, ev.Object)
	}
	want := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: 410, Reason: metav1.StatusReasonExpired,
		Message: "too old resource version: " + rvOf(t, first) + " (" + rvOf(t, last) + ")",
	}
	if !semanticEqual(*status, want) {
		t.Errorf("ERROR status: got %+v, want %+v", *status, want)
	}
	if _, ok := <-w.ResultChan(); ok {
		t.Error("watch open after the ERROR event, want closed")
	}
	// From the compaction revision on, the watch works.
	w2, err := st.Watch(ctx, configMaps, "", ListOptions{ResourceVersion: rvOf(t, last)})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	c := mustCreate(t, st, configMaps, "default", configMap("default", "c", nil, nil))
	wantEvent(t, nextEvent(t, w2), watch.Added, "c", rvOf(t, c))
}

func TestWatchInvalidResourceVersion(t *testing.T) {
	st, _ := newTestStore(t)
	if _, err := st.Watch(t.Context(), configMaps, "", ListOptions{ResourceVersion: "x1"}); apiCode(err) != 400 {
		t.Fatalf("got %v, want 400", err)
	}
}

func TestWatchSendInitialEvents(t *testing.T) {
	st, rs := newTestStore(t)
	ctx := t.Context()
	yes, no := true, false
	for i, rv := range []string{"", "0", "1"} {
		t.Run("rv="+rv, func(t *testing.T) {
			ns := "ns" + strconv.Itoa(i)
			a := mustCreate(t, st, configMaps, ns, configMap(ns, "a", nil, nil))
			b := mustCreate(t, st, configMaps, ns, configMap(ns, "b", nil, nil))
			mustCreate(t, st, configMaps, "other", configMap("other", "elsewhere"+rv, nil, nil))
			listRev := strconv.FormatInt(rs.Revision(), 10)
			w, err := st.Watch(ctx, configMaps, ns, ListOptions{ResourceVersion: rv, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan, SendInitialEvents: &yes, AllowBookmarks: true})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			wantEvent(t, nextEvent(t, w), watch.Added, "a", rvOf(t, a))
			wantEvent(t, nextEvent(t, w), watch.Added, "b", rvOf(t, b))
			ev := nextEvent(t, w)
			m := objMeta(t, ev.Object)
			if ev.Type != watch.Bookmark || m.GetResourceVersion() != listRev || m.GetAnnotations()[metav1.InitialEventsAnnotationKey] != "true" || m.GetName() != "" {
				t.Fatalf("got %s %q rv %s annotations %v, want the initial-events-end BOOKMARK at %s", ev.Type, m.GetName(), m.GetResourceVersion(), m.GetAnnotations(), listRev)
			}
			if gvk := ev.Object.GetObjectKind().GroupVersionKind(); gvk.Kind != "ConfigMap" || gvk.Version != "v1" {
				t.Errorf("bookmark kind %v, want v1 ConfigMap", gvk)
			}
			c := mustCreate(t, st, configMaps, ns, configMap(ns, "c", nil, nil))
			wantEvent(t, nextEvent(t, w), watch.Added, "c", rvOf(t, c))
		})
	}

	// sendInitialEvents=false: no initial events, only later changes.
	w, err := st.Watch(ctx, configMaps, "ns0", ListOptions{ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan, SendInitialEvents: &no, AllowBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	d := mustCreate(t, st, configMaps, "ns0", configMap("ns0", "d", nil, nil))
	wantEvent(t, nextEvent(t, w), watch.Added, "d", rvOf(t, d))
}

func TestWatchBookmarks(t *testing.T) {
	rs := startRaft(t)
	st, err := New(Config{KV: rs, Scheme: testScheme(t), BookmarkInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	mustCreate(t, st, configMaps, "setup", configMap("setup", "first", nil, nil))
	from := strconv.FormatInt(rs.Revision(), 10)
	quiet, err := st.Watch(ctx, configMaps, "default", ListOptions{ResourceVersion: from}) // no bookmarks asked for
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Stop()
	sel := labels.SelectorFromSet(labels.Set{"watched": "yes"})
	w, err := st.Watch(ctx, configMaps, "default", ListOptions{ResourceVersion: from, AllowBookmarks: true, LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	// Changes the watch does not select (another namespace, other labels)
	// move the store on; the watch reports how far with a bookmark.
	mustCreate(t, st, configMaps, "other", configMap("other", "x", nil, nil))
	last := mustCreate(t, st, configMaps, "default", configMap("default", "unselected", nil, nil))
	want, _ := strconv.ParseInt(rvOf(t, last), 10, 64)
	for got := int64(0); got < want; {
		ev := nextEvent(t, w) // a bookmark may come between the two creates
		m := objMeta(t, ev.Object)
		n, _ := strconv.ParseInt(m.GetResourceVersion(), 10, 64)
		if ev.Type != watch.Bookmark || n <= got || len(m.GetAnnotations()) != 0 {
			t.Fatalf("got %s at %d after %d, want a later BOOKMARK, up to %d", ev.Type, n, got, want)
		}
		got = n
	}
	// A selected change comes through as usual, after the bookmark.
	sel1 := mustCreate(t, st, configMaps, "default", configMap("default", "selected", map[string]string{"watched": "yes"}, nil))
	wantEvent(t, nextEvent(t, w), watch.Added, "selected", rvOf(t, sel1))

	// The watch without AllowBookmarks saw only its events.
	wantEvent(t, nextEvent(t, quiet), watch.Added, "unselected", rvOf(t, last))
	wantEvent(t, nextEvent(t, quiet), watch.Added, "selected", rvOf(t, sel1))
	select {
	case ev := <-quiet.ResultChan():
		t.Fatalf("got %s on a watch without bookmarks, want nothing", ev.Type)
	case <-time.After(200 * time.Millisecond): // four bookmark intervals
	}
}

// TestWatchersShareDecodedEvents: two watchers of one resource get the same
// decoded object for each change (decoded once), with the event's
// resourceVersion; a delete's object is the deleted version.
func TestWatchersShareDecodedEvents(t *testing.T) {
	st, rs := newTestStore(t)
	ctx := t.Context()
	from := strconv.FormatInt(rs.Revision(), 10)
	var ws []watch.Interface
	for range 2 {
		w, err := st.Watch(ctx, configMaps, "default", ListOptions{ResourceVersion: from})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
		ws = append(ws, w)
	}
	created := mustCreate(t, st, configMaps, "default", configMap("default", "shared", nil, map[string]string{"v": "1"}))
	if _, err := st.Delete(ctx, configMaps, "default", "shared", DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleteRev := strconv.FormatInt(rs.Revision(), 10)
	for _, want := range []struct {
		typ watch.EventType
		rv  string
	}{{watch.Added, rvOf(t, created)}, {watch.Deleted, deleteRev}} {
		a, b := nextEvent(t, ws[0]), nextEvent(t, ws[1])
		wantEvent(t, a, want.typ, "shared", want.rv)
		wantEvent(t, b, want.typ, "shared", want.rv)
		if a.Object != b.Object {
			t.Errorf("%s: the two watchers got two decodings of one change", want.typ)
		}
	}
}

// TestWatchMatchesReplacedObjectAsDecoded: a filtered watch matches the
// object a change replaced as it was decoded when it was current, instead
// of decoding it again as of the change; only an object leaving the
// filter is decoded as of the change, to be sent.
func TestWatchMatchesReplacedObjectAsDecoded(t *testing.T) {
	st, rs := newTestStore(t)
	ctx := t.Context()
	from := strconv.FormatInt(rs.Revision(), 10)
	opts := ListOptions{ResourceVersion: from}
	opts.FieldSelector, _ = fields.ParseSelector("spec.nodeName=n1")
	w, err := st.Watch(ctx, pods, "", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	created := mustCreate(t, st, pods, "default", pod("default", "p1", "n1", nil))
	labeled, err := st.GuaranteedUpdate(ctx, pods, "default", "p1", func(cur runtime.Object) (runtime.Object, error) {
		p := cur.(*corev1.Pod)
		p.Labels = map[string]string{"v": "2"}
		return p, nil
	}, UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantEvent(t, nextEvent(t, w), watch.Added, "p1", rvOf(t, created))
	wantEvent(t, nextEvent(t, w), watch.Modified, "p1", rvOf(t, labeled))

	createdRev, err := strconv.ParseInt(rvOf(t, created), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	labeledRev, err := strconv.ParseInt(rvOf(t, labeled), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	st.events.mu.Lock()
	defer st.events.mu.Unlock()
	for k := range st.events.objs {
		if k.mod == createdRev && k.rev == labeledRev {
			t.Errorf("the replaced object was decoded again as of revision %d to be matched", labeledRev)
		}
	}
	if len(st.events.objs) != 2 {
		var keys []eventKey
		for k := range st.events.objs {
			keys = append(keys, eventKey{key: k.key, mod: k.mod, rev: k.rev})
		}
		t.Errorf("got %d decoded event objects %v, want 2 (each version once)", len(keys), keys)
	}
}
