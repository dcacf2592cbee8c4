// Package fieldmanager owns server-side apply and the bookkeeping of
// metadata.managedFields: which field manager set which fields of an object,
// by Apply or by Update, through the main resource or a subresource. It is a
// thin layer over k8s.io/apimachinery/pkg/util/managedfields with the
// structured-merge-diff schemas of every built-in type that client-go
// embeds (applyconfigurations.NewTypeConverter), so merges, list keys and
// conflicts are exactly kube-apiserver's.
//
// The API server builds one Set over its scheme and, per request, takes the
// Manager of the resource's kind and subresource:
//
//	fields := fieldmanager.New(scheme)
//	m, err := fields.For(appsv1.SchemeGroupVersion.WithKind("Deployment"), "")
//	// create, update and every non-apply patch, before the write:
//	obj, err = m.Update(live /* nil on create */, obj, "kubectl-create")
//	// server-side apply (PATCH application/apply-patch+yaml):
//	obj, err = m.Apply(live /* nil when absent */, body, "kubectl", force)
//
// Both run before the write is proposed, inside the registry's
// GuaranteedUpdate, so a retried write recomputes them from the object it
// read; the timestamps of managedFields entries come from the wall clock,
// decided before proposing, as uids are.
//
// Conflicts are 409 Conflict with kube-apiserver's wording and causes
// ("Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1:
// .spec.replicas"). Set, Manager and their methods are safe for concurrent
// use; they never modify the objects they are given.
package fieldmanager

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/applyconfigurations"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v6/typed"
)

// ErrNoSchema is returned by Set.For for a kind the embedded
// structured-merge-diff schemas do not describe (a kind that is not a
// built-in Kubernetes type). Such a kind cannot be applied; its writes
// cannot be tracked.
var ErrNoSchema = errors.New("fieldmanager: no structured-merge-diff schema for the kind")

// Set builds and keeps one Manager per kind and subresource. See the package
// comment.
type Set struct {
	scheme *runtime.Scheme
	types  managedfields.TypeConverter
	// shortcuts are New's, which the reference Set of the tests (newSet)
	// does without: updates leave the field their subresource cannot set
	// out of the comparison (Manager.skip), and objects are not copied
	// when converted to the version they have (sameVersion).
	shortcuts bool

	mu       sync.Mutex
	managers map[managerKey]*Manager
}

type managerKey struct {
	gvk         schema.GroupVersionKind
	subresource string
}

// New returns a Set for the kinds of scheme, which must have every served
// kind registered with its Go type from k8s.io/api. Managers are built on
// first use by For.
func New(scheme *runtime.Scheme) *Set {
	s := newSet(scheme, newGoTypes(applyconfigurations.NewTypeConverter(scheme)))
	s.shortcuts = true
	return s
}

// newSet is New with the type converter types.
func newSet(scheme *runtime.Scheme, types managedfields.TypeConverter) *Set {
	return &Set{scheme: scheme, types: types, managers: map[managerKey]*Manager{}}
}

// For returns the Manager of kind gvk written through subresource ("" for
// the main resource, "status", "scale"). The first call for a kind checks
// that the scheme knows it and that a schema describes it: an error wraps
// ErrNoSchema when none does. Later calls return the same Manager.
func (s *Set) For(gvk schema.GroupVersionKind, subresource string) (*Manager, error) {
	k := managerKey{gvk, subresource}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.managers[k]; m != nil {
		return m, nil
	}
	probe, err := s.scheme.New(gvk)
	if err != nil {
		return nil, fmt.Errorf("fieldmanager: %s: %w", gvk, err)
	}
	probe.GetObjectKind().SetGroupVersionKind(gvk)
	if _, err := s.types.ObjectToTyped(probe); err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrNoSchema, gvk, err)
	}
	var conv runtime.ObjectConvertor = s.scheme
	if s.shortcuts {
		conv = sameVersion{s.scheme}
	}
	fm, err := managedfields.NewDefaultFieldManager(s.types, conv, noDefaults{}, s.scheme,
		gvk, gvk.GroupVersion(), subresource, resetFields(gvk.GroupVersion(), subresource))
	if err != nil {
		return nil, fmt.Errorf("fieldmanager: %s: %w", gvk, err)
	}
	m := &Manager{gvk: gvk, subresource: subresource, scheme: s.scheme, types: s.types, fields: fm,
		reset: resetFields(gvk.GroupVersion(), subresource)[fieldpath.APIVersion(gvk.GroupVersion().String())], skip: -1}
	if s.shortcuts {
		m.skip = jsonField(probe, resetField(subresource))
		m.fast = true
	}
	s.managers[k] = m
	return m, nil
}

// sameVersion is the scheme as the field manager's object converter,
// except that an object asked for the version it already has is returned
// as it is, not deep-copied: the field manager only reads the objects it
// converts (into typed values), and the Manager hands it copies of its
// own anyway. The two copies of a pod were a tenth of a status update's
// bookkeeping.
type sameVersion struct{ *runtime.Scheme }

func (c sameVersion) ConvertToVersion(in runtime.Object, gv runtime.GroupVersioner) (runtime.Object, error) {
	if c.isAt(in, gv) {
		return in, nil
	}
	return c.Scheme.ConvertToVersion(in, gv)
}

// isAt reports whether in, of a Go type the scheme registers for the kind
// in names, names gv's version of that kind.
func (c sameVersion) isAt(in runtime.Object, gv runtime.GroupVersioner) bool {
	if _, ok := in.(runtime.Unstructured); ok {
		return false
	}
	gvk := in.GetObjectKind().GroupVersionKind()
	kinds, _, err := c.ObjectKinds(in)
	if gvk.Empty() || err != nil || !slices.Contains(kinds, gvk) {
		return false
	}
	target, ok := gv.KindForGroupVersionKinds(kinds)
	return ok && target == gvk
}

// resetFields are the fields a write through subresource cannot set, whose
// changes are owned by no one, as kube-apiserver's strategies declare them
// (GetResetFields): the main resource and /scale do not write status, and
// /status writes nothing but status and metadata. A path the kind does not
// have filters nothing.
func resetFields(gv schema.GroupVersion, subresource string) map[fieldpath.APIVersion]fieldpath.Filter {
	return map[fieldpath.APIVersion]fieldpath.Filter{
		fieldpath.APIVersion(gv.String()): fieldpath.NewExcludeSetFilter(fieldpath.NewSet(fieldpath.MakePathOrDie(resetField(subresource)))),
	}
}

// resetField is the top-level field a write through subresource cannot set.
func resetField(subresource string) string {
	if subresource == "status" {
		return "spec"
	}
	return "status"
}

// noDefaults is the defaulter of the merged result of an apply. Skiff
// defaults in the registry, on every write, after the field manager.
type noDefaults struct{}

func (noDefaults) Default(runtime.Object) {}

// Manager records the field managers of one kind written through one
// subresource. Build it with Set.For.
type Manager struct {
	gvk         schema.GroupVersionKind
	subresource string
	scheme      *runtime.Scheme
	types       managedfields.TypeConverter
	fields      *managedfields.FieldManager
	// reset filters out what writes through subresource cannot set.
	reset fieldpath.Filter
	// skip is the index in the kind's Go struct of the field reset
	// filters out (spec or status), which update leaves out of the
	// comparison; -1 to compare it all the same.
	skip int
	// fast: updates may take updateFast (New's Sets; not the tests'
	// reference one).
	fast bool

	emptyOnce sync.Once
	empty     *typed.TypedValue // the kind's zero object, typed; nil if it fails

	// cache holds the managedFields sets updateFast decoded.
	cache setCache
}

// Kind is the kind the Manager was built for.
func (m *Manager) Kind() schema.GroupVersionKind { return m.gvk }

// Apply merges patch, a server-side apply configuration in YAML or JSON
// (the body of an application/apply-patch+yaml PATCH), into live as
// manager, and returns the merged object (of live's Go type) with
// managedFields updated: manager owns exactly the fields patch sets, and
// fields it owned alone before that patch no longer sets are removed. live
// is the stored object, or nil when there is none (apply creates); it is not
// modified.
//
// Errors: 400 BadRequest when patch does not decode, names another kind or
// version ("invalid object type: ..."), sets managedFields, or has fields the
// schema does not declare; 409 Conflict when patch changes fields other
// managers own and force is false (force takes them over instead).
func (m *Manager) Apply(live runtime.Object, patch []byte, manager string, force bool) (runtime.Object, error) {
	applied := &unstructured.Unstructured{Object: map[string]any{}}
	if err := yaml.Unmarshal(patch, &applied.Object); err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("error decoding YAML: %v", err))
	}
	if applied.Object == nil { // an empty document or "null"
		applied.Object = map[string]any{}
	}
	if applied.GroupVersionKind() == m.gvk {
		// The field manager reports a patch its schema rejects (an unknown
		// field, a list element without its key) as a plain error, which
		// kube-apiserver turns into a 500 (kubernetes#122480). It is the
		// client's mistake: say so with a 400 and the same words.
		if _, err := m.types.ObjectToTyped(applied); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("failed to create typed patch object (%s): %v", describe(applied), err))
		}
	}
	live, err := m.liveOrNew(live)
	if err != nil {
		return nil, err
	}
	out, err := m.fields.Apply(live, applied, manager, force)
	if err != nil {
		var status apierrors.APIStatus
		if errors.As(err, &status) {
			return nil, err
		}
		return nil, apierrors.NewInternalError(fmt.Errorf("server-side apply of %s: %w", describe(applied), err))
	}
	return m.typed(out)
}

// Update records that manager wrote obj over live (nil on create) by an
// ordinary create, update or patch, and returns obj with managedFields
// updated: manager now owns the fields it changed, taken from whoever owned
// them. obj's own managedFields are kept when they are valid and not empty
// (a client may set them; a list with one empty entry resets them);
// otherwise live's are the starting point. Through a subresource, live's are
// always the starting point. Call it after defaulting obj, so that defaulted
// fields belong to the manager that caused them, as in kube-apiserver.
//
// Neither live nor obj is modified. If the fields cannot be computed, Update
// returns obj with live's managedFields and the error: kube-apiserver writes
// such an object anyway rather than fail the request, and a caller may too.
func (m *Manager) Update(live, obj runtime.Object, manager string) (runtime.Object, error) {
	if live == nil && m.subresource == "" {
		if om := objectMeta(obj); om != nil && len(om.GetManagedFields()) == 0 {
			if out, ok := m.create(obj, manager); ok {
				return out, nil
			}
		}
	}
	if live != nil && m.fast {
		if out, ok := m.updateFast(live, obj, manager); ok {
			return out, nil
		}
	}
	return m.update(live, obj, manager)
}

// update is Update through the full field manager pipeline.
func (m *Manager) update(live, obj runtime.Object, manager string) (runtime.Object, error) {
	live, err := m.liveOrNew(live)
	if err != nil {
		return nil, err
	}
	obj = obj.DeepCopyObject()
	obj.GetObjectKind().SetGroupVersionKind(m.gvk)
	var out runtime.Object
	if m.skip >= 0 {
		out, err = m.updateSkipping(live, obj, manager)
	} else {
		out, err = m.fields.Update(live, obj, manager)
	}
	if err == nil {
		out, err = m.typed(out)
	}
	if err != nil {
		if om, lm := objectMeta(obj), objectMeta(live); om != nil && lm != nil {
			om.SetManagedFields(lm.GetManagedFields())
		}
		return obj, fmt.Errorf("fieldmanager: managedFields of %s not updated: %w", describe(obj), err)
	}
	return out, nil
}

// updateSkipping is fields.Update of obj over live (copies update may
// change) with the field a write through the subresource cannot set (a
// pod's spec, on a status update) zeroed in both while the field manager
// compares them. The comparison drops whatever differs there anyway (the
// reset filter), so the managedFields are the same; a kubelet's status
// update no longer walks the pod's spec twice. It returns obj, whole, with
// the managedFields computed.
func (m *Manager) updateSkipping(live, obj runtime.Object, manager string) (runtime.Object, error) {
	reflect.ValueOf(live).Elem().Field(m.skip).SetZero()
	field := reflect.ValueOf(obj).Elem().Field(m.skip)
	kept := reflect.New(field.Type()).Elem()
	kept.Set(field)
	field.SetZero()
	out, err := m.fields.Update(live, obj, manager)
	field.Set(kept)
	if err != nil {
		return nil, err
	}
	if out != obj {
		om, oo := objectMeta(obj), objectMeta(out)
		if om == nil || oo == nil {
			return nil, fmt.Errorf("fieldmanager: %s has no metadata", describe(obj))
		}
		om.SetManagedFields(oo.GetManagedFields())
	}
	return obj, nil
}

// jsonField returns the index of the field of obj's struct whose JSON name
// is name, or -1.
func jsonField(obj runtime.Object, name string) int {
	t := reflect.TypeOf(obj)
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return -1
	}
	t = t.Elem()
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); tag == name {
			return i
		}
	}
	return -1
}

// stripped are the fields no managedFields entry holds (the field manager's
// strip set).
var stripped = fieldpath.NewSet(
	fieldpath.MakePathOrDie("apiVersion"),
	fieldpath.MakePathOrDie("kind"),
	fieldpath.MakePathOrDie("metadata"),
	fieldpath.MakePathOrDie("metadata", "name"),
	fieldpath.MakePathOrDie("metadata", "namespace"),
	fieldpath.MakePathOrDie("metadata", "creationTimestamp"),
	fieldpath.MakePathOrDie("metadata", "selfLink"),
	fieldpath.MakePathOrDie("metadata", "uid"),
	fieldpath.MakePathOrDie("metadata", "clusterName"),
	fieldpath.MakePathOrDie("metadata", "generation"),
	fieldpath.MakePathOrDie("metadata", "managedFields"),
	fieldpath.MakePathOrDie("metadata", "resourceVersion"),
)

// create is Update's path for the commonest write, a create through the
// main resource that brings no managedFields: manager owns exactly what
// differs from the kind's zero object, less the reset and stripped fields,
// as the full field manager pipeline computes it (TestCreateFastPath
// compares the two), without its layers of conversions and copies. ok is
// false when the fast path cannot tell; Update then takes the full one.
func (m *Manager) create(obj runtime.Object, manager string) (runtime.Object, bool) {
	empty := m.zero()
	if empty == nil {
		return nil, false
	}
	obj = obj.DeepCopyObject()
	obj.GetObjectKind().SetGroupVersionKind(m.gvk)
	tv, err := m.types.ObjectToTyped(obj, typed.AllowDuplicates)
	if err != nil {
		return nil, false
	}
	cmp, err := empty.Compare(tv)
	if err != nil {
		return nil, false
	}
	set := cmp.Modified.Union(cmp.Added)
	if m.reset != nil {
		set = m.reset.Filter(set)
	}
	set = set.Difference(stripped)
	om := objectMeta(obj)
	if set.Empty() {
		om.SetManagedFields(nil)
		return obj, true
	}
	raw, err := set.ToJSON()
	if err != nil {
		return nil, false
	}
	now := metav1.Now()
	om.SetManagedFields([]metav1.ManagedFieldsEntry{{
		Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: m.gvk.GroupVersion().String(),
		Time: &now, FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(string(raw)),
	}})
	return obj, true
}

// zero returns the kind's zero object, typed; nil if it cannot be.
func (m *Manager) zero() *typed.TypedValue {
	m.emptyOnce.Do(func() {
		zero, err := m.scheme.New(m.gvk)
		if err != nil {
			return
		}
		zero.GetObjectKind().SetGroupVersionKind(m.gvk)
		if tv, err := m.types.ObjectToTyped(zero, typed.AllowDuplicates); err == nil {
			m.empty = tv
		}
	})
	return m.empty
}

// liveOrNew returns a copy of live with its kind set, or a new empty object
// of the kind when live is nil.
func (m *Manager) liveOrNew(live runtime.Object) (runtime.Object, error) {
	if live == nil {
		obj, err := m.scheme.New(m.gvk)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		live = obj
	} else {
		live = live.DeepCopyObject()
	}
	live.GetObjectKind().SetGroupVersionKind(m.gvk)
	return live, nil
}

// typed converts what the field manager returns (unstructured after an
// apply) to the kind's Go type, with its kind set.
func (m *Manager) typed(obj runtime.Object) (runtime.Object, error) {
	if _, ok := obj.(runtime.Unstructured); !ok {
		obj.GetObjectKind().SetGroupVersionKind(m.gvk)
		return obj, nil
	}
	out, err := m.scheme.ConvertToVersion(obj, m.gvk.GroupVersion())
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("fieldmanager: converting %s: %w", describe(obj), err))
	}
	out.GetObjectKind().SetGroupVersionKind(m.gvk)
	return out, nil
}

func objectMeta(obj runtime.Object) metav1.Object {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil
	}
	return m
}

// describe names an object in errors: "namespace/name; group/version, Kind=K".
func describe(obj runtime.Object) string {
	name := "<unknown>"
	if m := objectMeta(obj); m != nil {
		name = m.GetNamespace() + "/" + m.GetName()
	}
	return fmt.Sprintf("%s; %s", name, obj.GetObjectKind().GroupVersionKind())
}

// ValidateManager checks a ?fieldManager= value as kube-apiserver does: at
// most 128 characters, all printable. The errors are those of
// metav1/validation; the caller reports them as 422 Invalid on its options
// kind (CreateOptions, UpdateOptions, PatchOptions).
var ValidateManager = metavalidation.ValidateFieldManager

// ManagerFromUserAgent is the manager name of a write that names none: the
// User-Agent up to its first "/", without unprintable characters and cut to
// 128 bytes, as kube-apiserver derives it ("kubectl/v1.32.4 (linux/amd64)
// kubernetes/abc" → "kubectl"; client-go's default agent starts with the
// program name).
func ManagerFromUserAgent(userAgent string) string {
	prefix, _, _ := strings.Cut(userAgent, "/")
	var b bytes.Buffer
	for _, r := range prefix {
		if !unicode.IsPrint(r) {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > metavalidation.FieldManagerMaxLength {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
