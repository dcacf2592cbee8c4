package registry

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/raftstore"
)

func TestCreateGet(t *testing.T) {
	st, _ := newTestStore(t)
	ctx := t.Context()

	in := configMap("default", "cfg", map[string]string{"app": "web"}, map[string]string{"k": "v"})
	in.UID, in.ResourceVersion, in.Generation = "client-uid", "42", 7 // server-owned: ignored
	out := mustCreate(t, st, configMaps, "default", in).(*corev1.ConfigMap)
	if in.ResourceVersion != "42" || in.UID != "client-uid" {
		t.Fatalf("Create modified its argument: got rv %q uid %q", in.ResourceVersion, in.UID)
	}
	if out.UID == "" || out.UID == "client-uid" {
		t.Errorf("uid: got %q, want a fresh one", out.UID)
	}
	if want := testNow.Truncate(1e9); !out.CreationTimestamp.Time.Equal(want) {
		t.Errorf("creationTimestamp: got %v, want %v", out.CreationTimestamp.Time, want)
	}
	if out.Generation != 1 {
		t.Errorf("generation: got %d, want 1", out.Generation)
	}
	p := pod("default", "no-generation", "", nil)
	p.Generation = 3
	if got := mustCreate(t, st, pods, "default", p).(*corev1.Pod); got.Generation != 0 {
		t.Errorf("generation of a resource without: got %d, want 0", got.Generation)
	}
	if rv, err := strconv.ParseInt(out.ResourceVersion, 10, 64); err != nil || rv <= 0 {
		t.Errorf("resourceVersion: got %q, want a positive revision", out.ResourceVersion)
	}
	if out.Kind != "ConfigMap" || out.APIVersion != "v1" {
		t.Errorf("TypeMeta: got %q %q, want v1 ConfigMap", out.APIVersion, out.Kind)
	}

	for _, rv := range []string{"", "0", out.ResourceVersion} {
		got, err := st.Get(ctx, configMaps, "default", "cfg", GetOptions{ResourceVersion: rv})
		if err != nil {
			t.Fatalf("Get rv=%q: %v", rv, err)
		}
		if !semanticEqual(got, out) {
			t.Errorf("Get rv=%q: got %+v, want %+v", rv, got, out)
		}
	}

	ns := mustCreate(t, st, namespaces, "", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Namespace: "ignored"}}).(*corev1.Namespace)
	if ns.Namespace != "" {
		t.Errorf("cluster-scoped namespace field: got %q, want empty", ns.Namespace)
	}
	if got, err := st.Get(ctx, namespaces, "", "team-a", GetOptions{}); err != nil || got.(*corev1.Namespace).UID != ns.UID {
		t.Errorf("Get namespace: got %v, %v, want uid %s", got, err, ns.UID)
	}
}

func TestErrors(t *testing.T) {
	st, rs := newTestStore(t)
	ctx := t.Context()
	mustCreate(t, st, configMaps, "default", configMap("default", "cfg", nil, nil))
	mustCreate(t, st, namespaces, "", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}})
	future := strconv.FormatInt(rs.Revision()+1000, 10)

	tests := []struct {
		name     string
		call     func() error
		wantCode int32
		wantMsg  string
	}{
		{"get missing", func() error {
			_, err := st.Get(ctx, configMaps, "default", "nope", GetOptions{})
			return err
		}, 404, `configmaps "nope" not found`},
		{"get in other namespace", func() error {
			_, err := st.Get(ctx, configMaps, "other", "cfg", GetOptions{})
			return err
		}, 404, `configmaps "cfg" not found`},
		{"create existing", func() error {
			_, err := st.Create(ctx, configMaps, "default", configMap("", "cfg", nil, nil), CreateOptions{})
			return err
		}, 409, `configmaps "cfg" already exists`},
		{"create existing namespace", func() error {
			_, err := st.Create(ctx, namespaces, "", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}, CreateOptions{})
			return err
		}, 409, `namespaces "team-a" already exists`},
		{"namespace mismatch", func() error {
			_, err := st.Create(ctx, configMaps, "default", configMap("other", "x", nil, nil), CreateOptions{})
			return err
		}, 400, "the namespace of the provided object does not match the namespace sent on the request"},
		{"no name", func() error {
			_, err := st.Create(ctx, configMaps, "default", configMap("", "", nil, nil), CreateOptions{})
			return err
		}, 422, `ConfigMap "" is invalid: metadata.name: Required value: name or generateName is required`},
		{"bad name", func() error {
			_, err := st.Create(ctx, namespaces, "", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a.b"}}, CreateOptions{})
			return err
		}, 422, `Namespace "a.b" is invalid: metadata.name: Invalid value: "a.b": must not contain dots`},
		{"invalid resource version", func() error {
			_, err := st.Get(ctx, configMaps, "default", "cfg", GetOptions{ResourceVersion: "abc"})
			return err
		}, 400, `invalid resource version "abc"`},
		{"future resource version", func() error {
			_, err := st.Get(ctx, configMaps, "default", "cfg", GetOptions{ResourceVersion: future})
			return err
		}, 504, "Timeout: Too large resource version: " + future},
		{"update missing", func() error {
			_, err := st.Update(ctx, configMaps, "default", "nope", configMap("default", "nope", nil, nil), UpdateOptions{})
			return err
		}, 404, `configmaps "nope" not found`},
		{"update name mismatch", func() error {
			_, err := st.Update(ctx, configMaps, "default", "cfg", configMap("default", "other", nil, nil), UpdateOptions{})
			return err
		}, 400, "the name of the object (other) does not match the name on the URL (cfg)"},
		{"get without namespace", func() error {
			_, err := st.Get(ctx, configMaps, "", "cfg", GetOptions{})
			return err
		}, 400, "namespace is required for configmaps"},
		{"delete without name", func() error {
			_, err := st.Delete(ctx, configMaps, "default", "", DeleteOptions{})
			return err
		}, 400, "name is required"},
		{"delete missing", func() error {
			_, err := st.Delete(ctx, configMaps, "default", "nope", DeleteOptions{})
			return err
		}, 404, `configmaps "nope" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var se *apierrors.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("got error %v (%T), want a StatusError", err, err)
			}
			if got := se.Status().Code; got != tt.wantCode {
				t.Errorf("code: got %d (%s), want %d", got, se.Status().Reason, tt.wantCode)
			}
			if got := se.Error(); !strings.HasPrefix(got, tt.wantMsg) {
				t.Errorf("message: got %q, want prefix %q", got, tt.wantMsg)
			}
		})
	}
}

func TestStoreErrorMapping(t *testing.T) {
	deployments := &Resource{GroupResource: schema.GroupResource{Group: "apps", Resource: "deployments"}}
	tests := []struct {
		err        error
		wantReason metav1.StatusReason
		wantCode   int32
		wantMsg    string
	}{
		{raftstore.ErrKeyExists, metav1.StatusReasonAlreadyExists, 409, `deployments.apps "web" already exists`},
		{raftstore.ErrKeyNotFound, metav1.StatusReasonNotFound, 404, `deployments.apps "web" not found`},
		{&raftstore.ConflictError{Key: "k", Expected: 3}, metav1.StatusReasonConflict, 409,
			`Operation cannot be fulfilled on deployments.apps "web": the object has been modified; please apply your changes to the latest version and try again`},
		{&raftstore.CompactedError{Requested: 3, Compacted: 9}, metav1.StatusReasonExpired, 410, expiredList},
		{&raftstore.FutureRevisionError{Requested: 30, Current: 9}, metav1.StatusReasonTimeout, 504, "Timeout: Too large resource version: 30, current: 9"},
		{fmt.Errorf("%w: leadership lost", raftstore.ErrUnknownOutcome), metav1.StatusReasonInternalError, 500,
			"Internal error occurred: the outcome of the write is unknown, it may or may not have been applied: raftstore: write outcome unknown: leadership lost"},
		{fmt.Errorf("%w: deadline", raftstore.ErrNoLeader), metav1.StatusReasonTimeout, 504, "Timeout: the cluster has no leader"},
		{raftstore.ErrStopped, metav1.StatusReasonServiceUnavailable, 503, "the store of this server is not running"},
		{apierrors.NewBadRequest("as is"), metav1.StatusReasonBadRequest, 400, "as is"},
		{errors.New("boom"), metav1.StatusReasonInternalError, 500, "Internal error occurred: boom"},
	}
	for _, tt := range tests {
		err := storeError(deployments, "web", expiredList, tt.err)
		status := apierrors.APIStatus(nil)
		if !errors.As(err, &status) {
			t.Errorf("storeError(%v): got %T, want an APIStatus", tt.err, err)
			continue
		}
		s := status.Status()
		if s.Reason != tt.wantReason || s.Code != tt.wantCode || !strings.HasPrefix(s.Message, tt.wantMsg) {
			t.Errorf("storeError(%v): got %s %d %q, want %s %d %q", tt.err, s.Reason, s.Code, s.Message, tt.wantReason, tt.wantCode, tt.wantMsg)
		}
	}
}

func TestGenerateName(t *testing.T) {
	st, _ := newTestStore(t)
	seen := map[string]bool{}
	for range 3 {
		cm := configMap("default", "", nil, nil)
		cm.GenerateName = "web-"
		out := mustCreate(t, st, configMaps, "default", cm).(*corev1.ConfigMap)
		if !strings.HasPrefix(out.Name, "web-") || len(out.Name) != len("web-")+5 || seen[out.Name] {
			t.Errorf("generated name: got %q, want web- and 5 new characters", out.Name)
		}
		seen[out.Name] = true
		if _, err := st.Get(t.Context(), configMaps, "default", out.Name, GetOptions{}); err != nil {
			t.Errorf("Get %s: %v", out.Name, err)
		}
	}
	long := configMap("default", "", nil, nil)
	long.GenerateName = strings.Repeat("a", 70)
	if out := mustCreate(t, st, configMaps, "default", long).(*corev1.ConfigMap); len(out.Name) != 63 {
		t.Errorf("generated name from a long base: got %d characters, want 63", len(out.Name))
	}
}

func TestListSelectors(t *testing.T) {
	st, _ := newTestStore(t)
	web, db := map[string]string{"app": "web"}, map[string]string{"app": "db"}
	for _, p := range []*corev1.Pod{
		pod("a", "web-1", "n1", web), pod("a", "web-2", "n2", web), pod("a", "db-1", "n1", db),
		pod("b", "web-1", "n1", web), pod("ab", "db-1", "", db),
	} {
		mustCreate(t, st, pods, p.Namespace, p)
	}
	tests := []struct {
		name  string
		ns    string
		label string
		field string
		want  []string
	}{
		{"all namespaces", "", "", "", []string{"a/db-1", "a/web-1", "a/web-2", "ab/db-1", "b/web-1"}},
		{"one namespace, not its prefix", "a", "", "", []string{"a/db-1", "a/web-1", "a/web-2"}},
		{"label", "", "app=web", "", []string{"a/web-1", "a/web-2", "b/web-1"}},
		{"label set", "a", "app in (db)", "", []string{"a/db-1"}},
		{"field hook", "", "", "spec.nodeName=n1", []string{"a/db-1", "a/web-1", "b/web-1"}},
		{"unscheduled", "", "", "spec.nodeName=", []string{"ab/db-1"}},
		{"metadata.name", "", "", "metadata.name=web-1", []string{"a/web-1", "b/web-1"}},
		{"metadata.namespace", "", "", "metadata.namespace!=a", []string{"ab/db-1", "b/web-1"}},
		{"label and field", "", "app=web", "spec.nodeName=n1,metadata.namespace=a", []string{"a/web-1"}},
		{"status phase", "", "", "status.phase=Running", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := ListOptions{}
			var err error
			if opts.LabelSelector, err = labels.Parse(tt.label); err != nil {
				t.Fatal(err)
			}
			if opts.FieldSelector, err = fields.ParseSelector(tt.field); err != nil {
				t.Fatal(err)
			}
			list, err := st.List(t.Context(), pods, tt.ns, opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(t, list); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if rv := listMeta(t, list).GetResourceVersion(); rv == "" || rv == "0" {
				t.Errorf("list resourceVersion: got %q, want the revision read", rv)
			}
		})
	}
}

func TestListPaging(t *testing.T) {
	st, _ := newTestStore(t)
	ctx := t.Context()
	var want []string
	for i := range 10 {
		lbl := map[string]string{"even": strconv.FormatBool(i%2 == 0)}
		mustCreate(t, st, configMaps, "default", configMap("default", fmt.Sprintf("cm-%02d", i), lbl, nil))
		want = append(want, fmt.Sprintf("default/cm-%02d", i))
	}
	evenOnly := labels.SelectorFromSet(labels.Set{"even": "true"})

	tests := []struct {
		name     string
		limit    int64
		selector labels.Selector
		want     []string
		pages    int
	}{
		{"limit 3", 3, nil, want, 4},
		{"limit 5 exact pages", 5, nil, want, 2},
		{"limit 2 with a selector", 2, evenOnly, []string{"default/cm-00", "default/cm-02", "default/cm-04", "default/cm-06", "default/cm-08"}, 3},
		{"no limit", 0, nil, want, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			opts := ListOptions{Limit: tt.limit, LabelSelector: tt.selector}
			firstRV := ""
			pages := 0
			for {
				list, err := st.List(ctx, configMaps, "default", opts)
				if err != nil {
					t.Fatalf("page %d: %v", pages, err)
				}
				pages++
				lm := listMeta(t, list)
				if firstRV == "" {
					firstRV = lm.GetResourceVersion()
				} else if lm.GetResourceVersion() != firstRV {
					t.Errorf("page %d resourceVersion: got %s, want the first page's %s", pages, lm.GetResourceVersion(), firstRV)
				}
				got = append(got, names(t, list)...)
				// Writes between pages must not show up in later pages.
				mustCreate(t, st, configMaps, "default", configMap("default", fmt.Sprintf("cm-%02d-%s-%d", 0, strings.ReplaceAll(tt.name, " ", "-"), pages), map[string]string{"even": "true"}, nil))
				if _, err := st.Delete(ctx, configMaps, "default", "cm-09", DeleteOptions{DryRun: true}); err != nil {
					t.Fatal(err)
				}
				if lm.GetContinue() == "" {
					break
				}
				opts.Continue = lm.GetContinue()
			}
			if !slices.Equal(got, tt.want) || pages != tt.pages {
				t.Errorf("got %v in %d pages, want %v in %d", got, pages, tt.want, tt.pages)
			}
			// Clean up the objects written between pages.
			all, err := st.List(ctx, configMaps, "default", ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range names(t, all) {
				if !slices.Contains(want, n) {
					if _, err := st.Delete(ctx, configMaps, "default", strings.TrimPrefix(n, "default/"), DeleteOptions{}); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

func TestListResourceVersion(t *testing.T) {
	st, rs := newTestStore(t)
	ctx := t.Context()
	v1 := mustCreate(t, st, configMaps, "default", configMap("default", "cfg", nil, map[string]string{"v": "1"}))
	mustCreate(t, st, configMaps, "default", configMap("default", "later", nil, nil))
	if _, err := st.Update(ctx, configMaps, "default", "cfg", configMap("default", "cfg", nil, map[string]string{"v": "2"}), UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	future := strconv.FormatInt(rs.Revision()+1000, 10)

	tests := []struct {
		name      string
		opts      ListOptions
		want      []string // names, with data v of cfg
		wantRV    string
		wantCode  int32
		wantError string
	}{
		{"latest", ListOptions{}, []string{"cfg=2", "later"}, "", 0, ""},
		{"local replica", ListOptions{ResourceVersion: "0"}, []string{"cfg=2", "later"}, "", 0, ""},
		{"exact", ListOptions{ResourceVersion: rvOf(t, v1), ResourceVersionMatch: metav1.ResourceVersionMatchExact}, []string{"cfg=1"}, rvOf(t, v1), 0, ""},
		{"legacy with limit is exact", ListOptions{ResourceVersion: rvOf(t, v1), Limit: 10}, []string{"cfg=1"}, rvOf(t, v1), 0, ""},
		{"not older than", ListOptions{ResourceVersion: rvOf(t, v1), ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan}, []string{"cfg=2", "later"}, "", 0, ""},
		{"future", ListOptions{ResourceVersion: future}, nil, "", 504, "Timeout: Too large resource version: " + future},
		{"exact future", ListOptions{ResourceVersion: future, ResourceVersionMatch: metav1.ResourceVersionMatchExact}, nil, "", 504, "Timeout: Too large resource version: " + future},
		{"bad match", ListOptions{ResourceVersion: "1", ResourceVersionMatch: "Newest"}, nil, "", 400, "unknown ResourceVersionMatch value: Newest"},
		{"match without rv", ListOptions{ResourceVersionMatch: metav1.ResourceVersionMatchExact}, nil, "", 400, "resourceVersionMatch is forbidden unless resourceVersion is provided"},
		{"rv with continue", ListOptions{ResourceVersion: "5", Continue: encodeContinue("/registry/core/configmaps/default/cfg", "/registry/core/configmaps/default/", 5)}, nil, "", 400, "specifying resource version is not allowed when using continue"},
		{"bad continue", ListOptions{Continue: "!!"}, nil, "", 400, "invalid continue token: continue key is not valid"},
		{"bad rv", ListOptions{ResourceVersion: "-3"}, nil, "", 400, `invalid resource version "-3"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, err := st.List(ctx, configMaps, "default", tt.opts)
			if tt.wantCode != 0 {
				if code := apierrors.ReasonForError(err); err == nil || apiCode(err) != tt.wantCode || !strings.HasPrefix(err.Error(), tt.wantError) {
					t.Fatalf("got error %v (%s), want %d %q", err, code, tt.wantCode, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, cm := range list.(*corev1.ConfigMapList).Items {
				if v := cm.Data["v"]; v != "" {
					got = append(got, cm.Name+"="+v)
				} else {
					got = append(got, cm.Name)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if tt.wantRV != "" && listMeta(t, list).GetResourceVersion() != tt.wantRV {
				t.Errorf("list resourceVersion: got %s, want %s", listMeta(t, list).GetResourceVersion(), tt.wantRV)
			}
		})
	}
}

func apiCode(err error) int32 {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return status.Status().Code
	}
	return 0
}

func TestListContinueCompacted(t *testing.T) {
	st, rs := newTestStore(t)
	ctx := t.Context()
	for i := range 4 {
		mustCreate(t, st, configMaps, "default", configMap("default", fmt.Sprintf("cm-%d", i), nil, nil))
	}
	first, err := st.List(ctx, configMaps, "default", ListOptions{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	token := listMeta(t, first).GetContinue()
	after := mustCreate(t, st, configMaps, "default", configMap("default", "cm-9", nil, nil))
	rev, _ := strconv.ParseInt(rvOf(t, after), 10, 64)
	if err := rs.Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	_, err = st.List(ctx, configMaps, "default", ListOptions{Limit: 2, Continue: token})
	if !apierrors.IsResourceExpired(err) || apiCode(err) != 410 || err.Error() != continueExpired {
		t.Fatalf("continue after compaction: got %v, want 410 Expired %q", err, continueExpired)
	}
	_, err = st.List(ctx, configMaps, "default", ListOptions{ResourceVersion: listMeta(t, first).GetResourceVersion(), ResourceVersionMatch: metav1.ResourceVersionMatchExact})
	if !apierrors.IsResourceExpired(err) || err.Error() != expiredList {
		t.Fatalf("exact list at a compacted revision: got %v, want 410 Expired %q", err, expiredList)
	}
}

func TestContinueToken(t *testing.T) {
	const p = "/registry/core/pods/"
	token := encodeContinue(p+"ns/web", p, 42)
	after, rev, err := decodeContinue(token, p)
	if err != nil || after != p+"ns/web" || rev != 42 {
		t.Fatalf("decodeContinue(encodeContinue): got %q %d %v, want %q 42", after, rev, err, p+"ns/web")
	}
	// The format is kube-apiserver's, so tokens read the same in logs.
	if want := `{"v":"meta.k8s.io/v1","rv":42,"start":"ns/web\u0000"}`; decodeB64(t, token) != want {
		t.Errorf("token body: got %s, want %s", decodeB64(t, token), want)
	}
	for _, bad := range []string{"", "xx", b64(`{"v":"meta.k8s.io/v2","rv":1,"start":"a\u0000"}`), b64(`{"v":"meta.k8s.io/v1","rv":0,"start":"a\u0000"}`),
		b64(`{"v":"meta.k8s.io/v1","rv":1,"start":"../a\u0000"}`), b64(`{"v":"meta.k8s.io/v1","rv":1,"start":"a"}`)} {
		if _, _, err := decodeContinue(bad, p); err == nil {
			t.Errorf("decodeContinue(%q): got nil error, want one", bad)
		}
	}
}

func TestUpdate(t *testing.T) {
	st, _ := newTestStore(t)
	ctx := t.Context()
	created := mustCreate(t, st, configMaps, "default", configMap("default", "cfg", nil, map[string]string{"v": "1"})).(*corev1.ConfigMap)

	// An update with the current resourceVersion succeeds, and carries the
	// server-owned metadata over.
	upd := created.DeepCopy()
	upd.Data["v"] = "2"
	upd.CreationTimestamp = metav1.Now()
	upd.Generation = 9
	got, err := st.Update(ctx, configMaps, "default", "cfg", upd, UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm := got.(*corev1.ConfigMap)
	if cm.ResourceVersion == created.ResourceVersion || cm.UID != created.UID || !cm.CreationTimestamp.Equal(&created.CreationTimestamp) || cm.Generation != 1 || cm.Data["v"] != "2" {
		t.Errorf("updated: got rv %s uid %s created %v generation %d data %v, want a new rv, uid %s, created %v, generation 1, v=2",
			cm.ResourceVersion, cm.UID, cm.CreationTimestamp, cm.Generation, cm.Data, created.UID, created.CreationTimestamp)
	}

	// The stale resourceVersion is now a conflict.
	stale := created.DeepCopy()
	stale.Data["v"] = "3"
	_, err = st.Update(ctx, configMaps, "default", "cfg", stale, UpdateOptions{})
	wantMsg := `Operation cannot be fulfilled on configmaps "cfg": the object has been modified; please apply your changes to the latest version and try again`
	if !apierrors.IsConflict(err) || err.Error() != wantMsg {
		t.Fatalf("stale update: got %v, want 409 %q", err, wantMsg)
	}

	// So is a different uid.
	other := cm.DeepCopy()
	other.UID = types.UID("someone-else")
	_, err = st.Update(ctx, configMaps, "default", "cfg", other, UpdateOptions{})
	if want := `Operation cannot be fulfilled on configmaps "cfg": Precondition failed: UID in precondition: someone-else, UID in object meta: ` + string(created.UID); !apierrors.IsConflict(err) || err.Error() != want {
		t.Fatalf("update with another uid: got %v, want %q", err, want)
	}

	// Without resourceVersion the update is unconditional.
	blind := configMap("", "cfg", nil, map[string]string{"v": "4"})
	got, err = st.Update(ctx, configMaps, "default", "cfg", blind, UpdateOptions{})
	if err != nil || got.(*corev1.ConfigMap).Data["v"] != "4" || got.(*corev1.ConfigMap).UID != created.UID {
		t.Fatalf("unconditional update: got %v, %v, want v=4 with uid %s", got, err, created.UID)
	}

	// An update that changes nothing writes nothing.
	same, err := st.Update(ctx, configMaps, "default", "cfg", got, UpdateOptions{})
	if err != nil || rvOf(t, same) != rvOf(t, got) {
		t.Fatalf("no-op update: got rv %s, %v, want rv %s", rvOf(t, same), err, rvOf(t, got))
	}
}

func TestUpdateHooks(t *testing.T) {
	st, _ := newTestStore(t)
	ctx := t.Context()
	// A resource whose "spec" is the data: generation follows it, and v must be a number.
	res := *configMaps
	res.PrepareForUpdate = func(obj, old runtime.Object) {
		n, o := obj.(*corev1.ConfigMap), old.(*corev1.ConfigMap)
		if !semanticEqual(n.Data, o.Data) {
			n.Generation = o.Generation + 1
		}
	}
	validate := func(obj runtime.Object) field.ErrorList {
		if _, err := strconv.Atoi(obj.(*corev1.ConfigMap).Data["v"]); err != nil {
			return field.ErrorList{field.Invalid(field.NewPath("data", "v"), obj.(*corev1.ConfigMap).Data["v"], "must be a number")}
		}
		return nil
	}
	res.Validate = validate
	res.ValidateUpdate = func(obj, _ runtime.Object) field.ErrorList { return validate(obj) }

	mustCreate(t, st, &res, "default", configMap("default", "cfg", nil, map[string]string{"v": "1"}))
	tests := []struct {
		data     map[string]string
		labels   map[string]string
		wantGen  int64
		wantCode int32
	}{
		{map[string]string{"v": "2"}, nil, 2, 0},
		{map[string]string{"v": "2"}, map[string]string{"a": "b"}, 2, 0},
		{map[string]string{"v": "3"}, nil, 3, 0},
		{map[string]string{"v": "x"}, nil, 0, 422},
	}
	for _, tt := range tests {
		got, err := st.Update(ctx, &res, "default", "cfg", configMap("default", "cfg", tt.labels, tt.data), UpdateOptions{})
		if tt.wantCode != 0 {
			if apiCode(err) != tt.wantCode || !strings.Contains(err.Error(), `ConfigMap "cfg" is invalid: data.v: Invalid value: "x": must be a number`) {
				t.Errorf("update %v: got %v, want %d", tt.data, err, tt.wantCode)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if g := objMeta(t, got).GetGeneration(); g != tt.wantGen {
			t.Errorf("update %v %v: got generation %d, want %d", tt.data, tt.labels, g, tt.wantGen)
		}
	}
	bad := configMap("default", "bad", nil, map[string]string{"v": "y"})
	if _, err := st.Create(ctx, &res, "default", bad, CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Errorf("create invalid: got %v, want 422 Invalid", err)
	} else if causes := err.(*apierrors.StatusError).Status().Details.Causes; len(causes) != 1 || causes[0].Field != "data.v" {
		t.Errorf("create invalid causes: got %+v, want one on data.v", causes)
	}
}

func TestGuaranteedUpdateRetries(t *testing.T) {
	st, _ := newTestStore(t)
	ctx := t.Context()
	mustCreate(t, st, configMaps, "default", configMap("default", "counter", nil, map[string]string{"n": "0"}))
	const writers, each = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for range writers {
		wg.Go(func() {
			for range each {
				_, err := st.GuaranteedUpdate(ctx, configMaps, "default", "counter", func(cur runtime.Object) (runtime.Object, error) {
					cm := cur.(*corev1.ConfigMap)
					n, _ := strconv.Atoi(cm.Data["n"])
					cm.Data["n"] = strconv.Itoa(n + 1)
					return cm, nil
				}, UpdateOptions{})
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.Get(ctx, configMaps, "default", "counter", GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := got.(*corev1.ConfigMap).Data["n"]; n != strconv.Itoa(writers*each) {
		t.Errorf("counter: got %s, want %d", n, writers*each)
	}
	// tryUpdate's error is returned as is.
	boom := errors.New("boom")
	if _, err := st.GuaranteedUpdate(ctx, configMaps, "default", "counter", func(runtime.Object) (runtime.Object, error) { return nil, boom }, UpdateOptions{}); err != boom {
		t.Errorf("tryUpdate error: got %v, want %v", err, boom)
	}
}

func TestFinalizers(t *testing.T) {
	st, _ := newTestStore(t)
	ctx := t.Context()
	cm := configMap("default", "guarded", nil, nil)
	cm.Finalizers = []string{"example.com/a", "example.com/b"}
	created := mustCreate(t, st, configMaps, "default", cm).(*corev1.ConfigMap)

	got, err := st.Delete(ctx, configMaps, "default", "guarded", DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deleting := got.(*corev1.ConfigMap)
	if deleting.DeletionTimestamp == nil || !deleting.DeletionTimestamp.Time.Equal(testNow.Truncate(1e9)) ||
		deleting.DeletionGracePeriodSeconds == nil || *deleting.DeletionGracePeriodSeconds != 0 || deleting.Generation != 2 {
		t.Fatalf("after delete: got deletionTimestamp %v grace %v generation %d, want %v, 0, 2",
			deleting.DeletionTimestamp, deleting.DeletionGracePeriodSeconds, deleting.Generation, testNow.Truncate(1e9))
	}
	if deleting.ResourceVersion == created.ResourceVersion {
		t.Errorf("after delete: got resourceVersion %s unchanged, want a new one", deleting.ResourceVersion)
	}
	// Deleting again changes nothing.
	again, err := st.Delete(ctx, configMaps, "default", "guarded", DeleteOptions{})
	if err != nil || rvOf(t, again) != deleting.ResourceVersion {
		t.Fatalf("second delete: got %v, %v, want the object at rv %s", again, err, deleting.ResourceVersion)
	}
	// No new finalizers on an object being deleted.
	more := deleting.DeepCopy()
	more.Finalizers = append(more.Finalizers, "example.com/c")
	if _, err := st.Update(ctx, configMaps, "default", "guarded", more, UpdateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted") {
		t.Fatalf("adding a finalizer while deleting: got %v, want 422 forbidden", err)
	}
	// Clearing the deletion fields in an update is ignored.
	one := deleting.DeepCopy()
	one.Finalizers = []string{"example.com/b"}
	one.DeletionTimestamp = nil
	got, err = st.Update(ctx, configMaps, "default", "guarded", one, UpdateOptions{})
	if err != nil || got.(*corev1.ConfigMap).DeletionTimestamp == nil {
		t.Fatalf("removing one finalizer: got %v, %v, want the object still being deleted", got, err)
	}
	if _, err := st.Get(ctx, configMaps, "default", "guarded", GetOptions{}); err != nil {
		t.Fatalf("Get with a finalizer left: %v", err)
	}
	last := got.(*corev1.ConfigMap).DeepCopy()
	last.Finalizers = nil
	gone, err := st.Update(ctx, configMaps, "default", "guarded", last, UpdateOptions{})
	if err != nil {
		t.Fatalf("removing the last finalizer: %v", err)
	}
	if revOf(t, gone) <= revOf(t, got) {
		t.Errorf("removing the last finalizer: got rv %s, want the revision of the delete, after %s", rvOf(t, gone), rvOf(t, got))
	}
	if _, err := st.Get(ctx, configMaps, "default", "guarded", GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("Get after the last finalizer: got %v, want NotFound", err)
	}
}

func TestDeletePreconditions(t *testing.T) {
	st, _ := newTestStore(t)
	ctx := t.Context()
	created := mustCreate(t, st, configMaps, "default", configMap("default", "cfg", nil, nil)).(*corev1.ConfigMap)
	wrongUID, wrongRV := types.UID("other-uid"), "1"
	tests := []struct {
		name string
		pre  *metav1.Preconditions
		want string
	}{
		{"uid", &metav1.Preconditions{UID: &wrongUID},
			`Operation cannot be fulfilled on configmaps "cfg": Precondition failed: UID in precondition: other-uid, UID in object meta: ` + string(created.UID)},
		{"resourceVersion", &metav1.Preconditions{ResourceVersion: &wrongRV},
			`Operation cannot be fulfilled on configmaps "cfg": Precondition failed: ResourceVersion in precondition: 1, ResourceVersion in object meta: ` + created.ResourceVersion},
	}
	for _, tt := range tests {
		_, err := st.Delete(ctx, configMaps, "default", "cfg", DeleteOptions{Preconditions: tt.pre})
		if !apierrors.IsConflict(err) || err.Error() != tt.want {
			t.Errorf("%s precondition: got %v, want 409 %q", tt.name, err, tt.want)
		}
	}
	got, err := st.Delete(ctx, configMaps, "default", "cfg", DeleteOptions{Preconditions: &metav1.Preconditions{UID: &created.UID, ResourceVersion: &created.ResourceVersion}})
	if err != nil || !semanticEqual(got, created) {
		t.Fatalf("delete with matching preconditions: got %v, %v, want the last state %v", got, err, created)
	}
	if _, err := st.Get(ctx, configMaps, "default", "cfg", GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("Get after delete: got %v, want NotFound", err)
	}
}

func TestDryRun(t *testing.T) {
	st, rs := newTestStore(t)
	ctx := t.Context()
	fin := configMap("default", "fin", nil, nil)
	fin.Finalizers = []string{"example.com/x"}
	mustCreate(t, st, configMaps, "default", fin)
	created := mustCreate(t, st, configMaps, "default", configMap("default", "cfg", nil, map[string]string{"v": "1"}))
	before := rs.Revision()

	out, err := st.Create(ctx, configMaps, "default", configMap("default", "new", nil, nil), CreateOptions{DryRun: true})
	if err != nil || objMeta(t, out).GetUID() == "" || rvOf(t, out) != "" {
		t.Errorf("dry-run create: got %v, %v, want an object with a uid and no resourceVersion", out, err)
	}
	if _, err := st.Create(ctx, configMaps, "default", configMap("default", "cfg", nil, nil), CreateOptions{DryRun: true}); !apierrors.IsAlreadyExists(err) {
		t.Errorf("dry-run create of an existing object: got %v, want AlreadyExists", err)
	}
	out, err = st.Update(ctx, configMaps, "default", "cfg", configMap("default", "cfg", nil, map[string]string{"v": "2"}), UpdateOptions{DryRun: true})
	if err != nil || out.(*corev1.ConfigMap).Data["v"] != "2" {
		t.Errorf("dry-run update: got %v, %v, want v=2", out, err)
	}
	if _, err := st.Delete(ctx, configMaps, "default", "cfg", DeleteOptions{DryRun: true}); err != nil {
		t.Errorf("dry-run delete: %v", err)
	}
	out, err = st.Delete(ctx, configMaps, "default", "fin", DeleteOptions{DryRun: true})
	if err != nil || objMeta(t, out).GetDeletionTimestamp() == nil {
		t.Errorf("dry-run delete with finalizers: got %v, %v, want a deletionTimestamp", out, err)
	}

	if after := rs.Revision(); after != before {
		t.Errorf("store revision: got %d after dry runs, want %d", after, before)
	}
	if _, err := st.Get(ctx, configMaps, "default", "new", GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Get dry-run created: got %v, want NotFound", err)
	}
	got, err := st.Get(ctx, configMaps, "default", "cfg", GetOptions{})
	if err != nil || !semanticEqual(got, created) {
		t.Errorf("Get after dry runs: got %v, %v, want %v", got, err, created)
	}
	if got, err := st.Get(ctx, configMaps, "default", "fin", GetOptions{}); err != nil || objMeta(t, got).GetDeletionTimestamp() != nil {
		t.Errorf("Get fin after dry-run delete: got %v, %v, want no deletionTimestamp", got, err)
	}
}

func revOf(t testing.TB, obj runtime.Object) int64 {
	t.Helper()
	n, err := strconv.ParseInt(rvOf(t, obj), 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q: %v", rvOf(t, obj), err)
	}
	return n
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func decodeB64(t testing.TB, s string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGracefulDelete(t *testing.T) {
	st, _ := newTestStore(t)
	ctx := t.Context()
	// The pod strategy of the API server, in short: the asked-for grace
	// period, else 30 s; 0 for a pod on no node.
	graceful := *pods
	graceful.GracePeriod = func(obj runtime.Object, requested *int64) int64 {
		switch {
		case obj.(*corev1.Pod).Spec.NodeName == "":
			return 0
		case requested != nil:
			return *requested
		}
		return 30
	}
	res := &graceful
	secs := func(n int64) *int64 { return &n }

	mustCreate(t, st, res, "default", pod("default", "unscheduled", "", nil))
	if _, err := st.Delete(ctx, res, "default", "unscheduled", DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, res, "default", "unscheduled", GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a pod on no node: got %v after delete, want NotFound", err)
	}

	mustCreate(t, st, res, "default", pod("default", "running", "node-1", nil))
	got, err := st.Delete(ctx, res, "default", "running", DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := got.(*corev1.Pod)
	if p.DeletionTimestamp == nil || !p.DeletionTimestamp.Time.Equal(testNow.Truncate(time.Second).Add(30*time.Second)) || p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds != 30 {
		t.Fatalf("graceful delete: got deletionTimestamp %v grace %v, want now+30s and 30", p.DeletionTimestamp, p.DeletionGracePeriodSeconds)
	}
	// A longer grace period changes nothing; a shorter one shortens it.
	if again, err := st.Delete(ctx, res, "default", "running", DeleteOptions{GracePeriodSeconds: secs(60)}); err != nil || rvOf(t, again) != p.ResourceVersion {
		t.Fatalf("delete with a longer grace period: got %v, %v, want the object unchanged", again, err)
	}
	got, err = st.Delete(ctx, res, "default", "running", DeleteOptions{GracePeriodSeconds: secs(5)})
	if err != nil {
		t.Fatal(err)
	}
	if p := got.(*corev1.Pod); *p.DeletionGracePeriodSeconds != 5 || !p.DeletionTimestamp.Time.Equal(testNow.Truncate(time.Second).Add(5*time.Second)) {
		t.Fatalf("shortened: got deletionTimestamp %v grace %d, want now+5s and 5", p.DeletionTimestamp, *p.DeletionGracePeriodSeconds)
	}
	// The pod is still there until a delete with grace period 0 (the agent's, or --force).
	if _, err := st.Get(ctx, res, "default", "running", GetOptions{}); err != nil {
		t.Fatalf("Get during the grace period: %v", err)
	}
	if _, err := st.Delete(ctx, res, "default", "running", DeleteOptions{GracePeriodSeconds: secs(0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, res, "default", "running", GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after the grace-0 delete: got %v, want NotFound", err)
	}

	// A graceful pod with a finalizer: removing the finalizer during the
	// grace period does not remove the pod; the grace-0 delete then does
	// not either while a finalizer is left.
	fin := pod("default", "fin", "node-1", nil)
	fin.Finalizers = []string{"example.com/f"}
	mustCreate(t, st, res, "default", fin)
	got, err = st.Delete(ctx, res, "default", "fin", DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	upd := got.(*corev1.Pod).DeepCopy()
	upd.Finalizers = nil
	if _, err := st.Update(ctx, res, "default", "fin", upd, UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, res, "default", "fin", GetOptions{}); err != nil {
		t.Fatalf("finalizer removed during the grace period: got %v, want the pod still there", err)
	}
	if _, err := st.Delete(ctx, res, "default", "fin", DeleteOptions{GracePeriodSeconds: secs(0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, res, "default", "fin", GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("grace-0 delete without finalizers: got %v, want NotFound", err)
	}
}

// laggingKV is a raftstore whose local replica lags: a stale read sees the
// state as of revision at (when set), a linearizable read the latest. It
// counts both.
type laggingKV struct {
	*raftstore.Store
	mu                sync.Mutex
	at                int64
	stale, linearized int
}

func (l *laggingKV) Get(ctx context.Context, key string, o raftstore.ReadOptions) (*raftstore.KeyValue, int64, error) {
	l.mu.Lock()
	if o.Stale {
		l.stale++
		if l.at != 0 && o.Revision == 0 {
			o.Revision = l.at
		}
	} else {
		l.linearized++
	}
	l.mu.Unlock()
	return l.Store.Get(ctx, key, o)
}

func (l *laggingKV) lagAt(rev int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at, l.stale, l.linearized = rev, 0, 0
}

func (l *laggingKV) reads() (stale, linearized int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stale, l.linearized
}

// TestGuaranteedUpdateStaleReplica: an update first reads the local
// replica, without a read index; what a lagging replica shows never makes
// an update wrong, only slower (a linearizable retry).
func TestGuaranteedUpdateStaleReplica(t *testing.T) {
	kv := &laggingKV{Store: startRaft(t)}
	st, err := New(Config{KV: kv, Scheme: testScheme(t), Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	v1 := mustCreate(t, st, configMaps, "default", configMap("default", "cfg", nil, map[string]string{"v": "1"})).(*corev1.ConfigMap)
	bump := func(v string) func(runtime.Object) (runtime.Object, error) {
		return func(cur runtime.Object) (runtime.Object, error) {
			cm := cur.(*corev1.ConfigMap)
			cm.Data["v"] = v
			return cm, nil
		}
	}

	// A current replica: one read, no read index.
	kv.lagAt(0)
	v2, err := st.GuaranteedUpdate(ctx, configMaps, "default", "cfg", bump("2"), UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s, l := kv.reads(); s != 1 || l != 0 {
		t.Errorf("current replica: %d stale and %d linearizable reads, want 1 and 0", s, l)
	}

	// The replica lags at v1: the write of v3 over what it shows fails its
	// revision check and is redone on the latest state.
	kv.lagAt(rvInt(t, v1))
	v3, err := st.GuaranteedUpdate(ctx, configMaps, "default", "cfg", func(cur runtime.Object) (runtime.Object, error) {
		cm := cur.(*corev1.ConfigMap)
		cm.Data["was"] = cm.Data["v"]
		cm.Data["v"] = "3"
		return cm, nil
	}, UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := v3.(*corev1.ConfigMap).Data; d["was"] != "2" || d["v"] != "3" {
		t.Errorf("lagging replica: wrote %v, want was=2 (the latest) and v=3", d)
	}
	if s, l := kv.reads(); s != 1 || l != 1 {
		t.Errorf("lagging replica: %d stale and %d linearizable reads, want 1 and 1", s, l)
	}

	// A client holding the latest resourceVersion is not refused because
	// the replica shows an older one.
	kv.lagAt(rvInt(t, v2))
	upd := v3.(*corev1.ConfigMap).DeepCopy()
	upd.Data["v"] = "4"
	v4, err := st.Update(ctx, configMaps, "default", "cfg", upd, UpdateOptions{})
	if err != nil || v4.(*corev1.ConfigMap).Data["v"] != "4" {
		t.Fatalf("update at the latest resourceVersion through a lagging replica: %v, %v", v4, err)
	}

	// Nothing to write on the replica's state: the current object comes
	// back, not the replica's.
	kv.lagAt(rvInt(t, v3))
	same, err := st.GuaranteedUpdate(ctx, configMaps, "default", "cfg", bump("3"), UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := same.(*corev1.ConfigMap).Data; d["v"] != "3" || rvOf(t, same) == rvOf(t, v3) {
		t.Errorf("v=3 again through a replica at v3: got v=%s at rv %s; want v=3 written over v4", d["v"], rvOf(t, same))
	}
	kv.lagAt(rvInt(t, v3))
	noop, err := st.GuaranteedUpdate(ctx, configMaps, "default", "cfg", func(cur runtime.Object) (runtime.Object, error) { return cur, nil }, UpdateOptions{})
	if err != nil || rvOf(t, noop) != rvOf(t, same) {
		t.Errorf("no-op through a lagging replica: rv %s, %v; want the latest, %s", rvOf(t, noop), err, rvOf(t, same))
	}

	// An object the replica does not have yet.
	kv.lagAt(rvInt(t, same))
	mustCreate(t, st, configMaps, "default", configMap("default", "newer", nil, map[string]string{"v": "1"}))
	if _, err := st.GuaranteedUpdate(ctx, configMaps, "default", "newer", bump("2"), UpdateOptions{}); err != nil {
		t.Errorf("update of an object the replica does not have yet: %v", err)
	}

	// tryUpdate's verdict on the replica's state is not final either.
	kv.lagAt(rvInt(t, v1))
	if _, err := st.GuaranteedUpdate(ctx, configMaps, "default", "cfg", func(cur runtime.Object) (runtime.Object, error) {
		if cur.(*corev1.ConfigMap).Data["v"] == "1" {
			return nil, errors.New("judged on the replica's old state")
		}
		return cur, nil
	}, UpdateOptions{}); err != nil {
		t.Errorf("tryUpdate failing on the replica's state only: %v", err)
	}

	// Concurrent writers through a lagging replica still count right.
	kv.lagAt(rvInt(t, v1))
	mustCreate(t, st, configMaps, "default", configMap("default", "counter", nil, map[string]string{"n": "0"}))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5 {
				if _, err := st.GuaranteedUpdate(ctx, configMaps, "default", "counter", func(cur runtime.Object) (runtime.Object, error) {
					cm := cur.(*corev1.ConfigMap)
					n, _ := strconv.Atoi(cm.Data["n"])
					cm.Data["n"] = strconv.Itoa(n + 1)
					return cm, nil
				}, UpdateOptions{}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if got, err := st.Get(ctx, configMaps, "default", "counter", GetOptions{}); err != nil || got.(*corev1.ConfigMap).Data["n"] != "20" {
		t.Errorf("counter: %v, %v; want n=20", got, err)
	}
}

func rvInt(t *testing.T, obj runtime.Object) int64 {
	t.Helper()
	n, err := strconv.ParseInt(rvOf(t, obj), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
