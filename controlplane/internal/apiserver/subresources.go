package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/controlplane/internal/registry"
	"github.com/skiff-sh/skiff/controlplane/internal/strategy"
)

// The subresources served, by name.
const (
	subStatus   = "status"
	subScale    = "scale"
	subBinding  = "binding"
	subFinalize = "finalize"
)

// subresource is one served subresource of a resource.
type subresource struct {
	name string
	// kind is what requests and responses carry; empty means the parent's kind.
	kind  schema.GroupVersionKind
	verbs []string
}

var (
	scaleKind   = autoscalingv1.SchemeGroupVersion.WithKind("Scale")
	bindingKind = corev1.SchemeGroupVersion.WithKind("Binding")
	// getPatchUpdate are the verbs of status and scale.
	getPatchUpdate = []string{"get", "patch", "update"}
)

// subresources returns the subresources of res, in discovery order
// (kube-apiserver's, alphabetical).
func subresources(res *resource) []subresource {
	status := subresource{name: subStatus, verbs: getPatchUpdate}
	scale := subresource{name: subScale, kind: scaleKind, verbs: getPatchUpdate}
	switch res.gvr.GroupResource() {
	case schema.GroupResource{Resource: "namespaces"}:
		return []subresource{{name: subFinalize, verbs: []string{"update"}}, status}
	case schema.GroupResource{Resource: "pods"}:
		return podSubresources()
	case schema.GroupResource{Resource: "serviceaccounts"}:
		return []subresource{{name: subToken, kind: tokenRequestKind, verbs: []string{"create"}}}
	case schema.GroupResource{Resource: "nodes"}, schema.GroupResource{Resource: "services"},
		schema.GroupResource{Group: "apps", Resource: "daemonsets"}, schema.GroupResource{Group: "batch", Resource: "jobs"},
		schema.GroupResource{Group: "batch", Resource: "cronjobs"}, schema.GroupResource{Group: "policy", Resource: "poddisruptionbudgets"}:
		return []subresource{status}
	case schema.GroupResource{Group: "apps", Resource: "deployments"},
		schema.GroupResource{Group: "apps", Resource: "replicasets"},
		schema.GroupResource{Group: "apps", Resource: "statefulsets"}:
		return []subresource{scale, status}
	}
	return nil
}

// subresourceDiscovery returns the APIResourceList entries of the
// subresources of res ("deployments/scale"), as kube-apiserver lists them
// after their resource: without singular name, with group and version only
// when the kind is not the parent's group version.
func subresourceDiscovery(res *resource) []metav1.APIResource {
	var out []metav1.APIResource
	for _, sub := range subresources(res) {
		e := metav1.APIResource{Name: res.gvr.Resource + "/" + sub.name, Namespaced: res.namespaced, Kind: res.kind, Verbs: sub.verbs}
		if !sub.kind.Empty() {
			e.Kind = sub.kind.Kind
			if sub.kind.GroupVersion() != res.gvr.GroupVersion() {
				e.Group, e.Version = sub.kind.Group, sub.kind.Version
			}
		}
		out = append(out, e)
	}
	return out
}

// serveSubresource serves {prefix}[/namespaces/{ns}]/{resource}/{name}/{sub}.
// A subresource the resource does not have is 404; a verb it does not
// support is 405.
func (s *Server) serveSubresource(w http.ResponseWriter, r *http.Request, res *resource, ns, name, sub string) {
	var err error
	switch {
	case !hasSubresource(res, sub):
		err = notFound()
	case sub == subStatus:
		err = s.serveStatus(w, r, res, ns, name)
	case sub == subScale:
		err = s.serveScale(w, r, res, ns, name)
	case sub == subBinding && r.Method == http.MethodPost:
		err = s.bind(w, r, res, ns, name)
	case sub == subFinalize && r.Method == http.MethodPut:
		err = s.finalize(w, r, res, name)
	case sub == subToken && r.Method == http.MethodPost:
		err = s.requestToken(w, r, res, ns, name)
	case sub == subEviction && r.Method == http.MethodPost:
		err = s.evict(w, r, res, ns, name)
	case sub == subLog || sub == subExec || sub == subAttach || sub == subPortForward:
		err = s.proxyToAgent(w, r, res, ns, name, sub)
	default:
		err = methodNotAllowed(r.Method)
	}
	if err != nil {
		writeError(w, err)
	}
}

func hasSubresource(res *resource, name string) bool {
	for _, sub := range subresources(res) {
		if sub.name == name {
			return true
		}
	}
	return false
}

// withUpdate returns a copy of res whose registry description updates with
// prepare and validate instead of the main resource's PrepareForUpdate and
// ValidateUpdate, and defaults nothing: a subresource write starts from the
// stored, defaulted object.
// Keys and errors stay those of res.
func withUpdate(res *resource, prepare func(obj, old runtime.Object), validate func(obj, old runtime.Object) field.ErrorList) *resource {
	c, reg := *res, *res.reg
	reg.Default, reg.PrepareForUpdate, reg.ValidateUpdate = nil, prepare, validate
	c.reg = &reg
	return &c
}

// serveStatus serves the status subresource: GET returns the object, PUT
// and PATCH write its status (and labels and annotations, which
// kube-apiserver's status strategies also let through); everything else
// in the request is ignored.
func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request, res *resource, ns, name string) error {
	switch r.Method {
	case http.MethodGet:
		return s.get(w, r, res, ns, name)
	case http.MethodPut:
		return s.update(w, r, withUpdate(res, onlyStatus, strategy.ValidateStatusUpdate), ns, name)
	case http.MethodPatch:
		return s.patch(w, r, withUpdate(res, onlyStatus, strategy.ValidateStatusUpdate), ns, name)
	}
	return methodNotAllowed(r.Method)
}

// onlyStatus is the PrepareForUpdate of status writes: obj becomes the
// stored object old with obj's status, labels, annotations and managedFields.
func onlyStatus(obj, old runtime.Object) {
	m := obj.(metav1.Object)
	labels, annotations, managed := m.GetLabels(), m.GetAnnotations(), m.GetManagedFields()
	status := reflect.ValueOf(obj).Elem().FieldByName("Status")
	keep := reflect.New(status.Type()).Elem()
	keep.Set(status)
	reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(old.DeepCopyObject()).Elem())
	reflect.ValueOf(obj).Elem().FieldByName("Status").Set(keep)
	m.SetLabels(labels)
	m.SetAnnotations(annotations)
	m.SetManagedFields(managed) // the write's, computed by the field manager
}

// serveScale serves the autoscaling/v1 Scale of a workload: GET builds it
// from the workload, PUT and PATCH set the workload's spec.replicas (which
// bumps its generation). The Scale's resourceVersion is the workload's,
// and a non-empty one is a precondition of the write.
func (s *Server) serveScale(w http.ResponseWriter, r *http.Request, res *resource, ns, name string) error {
	switch r.Method {
	case http.MethodGet:
		obj, err := s.cfg.Store.Get(r.Context(), res.reg, ns, name, registry.GetOptions{ResourceVersion: r.URL.Query().Get("resourceVersion")})
		if err != nil {
			return err
		}
		return s.writeScale(w, res, obj)
	case http.MethodPut, http.MethodPatch:
	default:
		return methodNotAllowed(r.Method)
	}
	dryRun, validation, err := writeParams(r.URL.Query(), updateOptionsKind)
	if err != nil {
		return err
	}
	manager, err := managerParam(r.URL.Query(), r.UserAgent(), updateOptionsKind)
	if err != nil {
		return err
	}
	var (
		put      runtime.Object // the Scale of a PUT
		p        patchRequest   // the patch of a PATCH
		warnings []string
	)
	d, _ := s.codecs.decoder(mediaJSON, strictDecoding(validation)) // for patched JSON
	if r.Method == http.MethodPut {
		if put, warnings, err = s.decodeBody(w, r, scaleKind, &autoscalingv1.Scale{}, validation); err != nil {
			return err
		}
	} else if p, err = s.readPatch(w, r); err != nil {
		return err
	}
	updated, err := s.cfg.Store.GuaranteedUpdate(r.Context(), res.reg, ns, name, func(cur runtime.Object) (runtime.Object, error) {
		scale, err := newScale(res, cur)
		if err != nil {
			return nil, err
		}
		want := put
		if want == nil {
			orig, err := json.Marshal(scale)
			if err != nil {
				return nil, apierrors.NewInternalError(err)
			}
			out, err := p.apply(orig, &autoscalingv1.Scale{})
			if err != nil {
				return nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", res.reg.GroupResource, name, err.Error(), 0, false)
			}
			if want, warnings, err = decodeObject(d, out, scaleKind, &autoscalingv1.Scale{}, validation); err != nil {
				return nil, err
			}
		}
		obj, err := applyScale(res, name, cur.DeepCopyObject(), want.(*autoscalingv1.Scale))
		if err != nil {
			return nil, err
		}
		return s.trackUpdate(r.Context(), res, subScale, cur, obj, manager), nil
	}, registry.UpdateOptions{DryRun: dryRun})
	if err != nil {
		return err
	}
	setWarnings(w, warnings)
	return s.writeScale(w, res, updated)
}

func (s *Server) writeScale(w http.ResponseWriter, res *resource, obj runtime.Object) error {
	scale, err := newScale(res, obj)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, scale)
	return nil
}

// newScale returns the Scale of the workload obj: its metadata, spec.replicas,
// status.replicas and its selector as a label selector string.
func newScale(res *resource, obj runtime.Object) (*autoscalingv1.Scale, error) {
	m := obj.(metav1.Object)
	v := reflect.ValueOf(obj).Elem()
	scale := &autoscalingv1.Scale{
		TypeMeta: metav1.TypeMeta{Kind: scaleKind.Kind, APIVersion: scaleKind.GroupVersion().String()},
		ObjectMeta: metav1.ObjectMeta{
			Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUID(),
			ResourceVersion: m.GetResourceVersion(), CreationTimestamp: m.GetCreationTimestamp(),
		},
		Status: autoscalingv1.ScaleStatus{Replicas: int32(v.FieldByName("Status").FieldByName("Replicas").Int())},
	}
	if n := v.FieldByName("Spec").FieldByName("Replicas").Interface().(*int32); n != nil {
		scale.Spec.Replicas = *n
	}
	if sel := v.FieldByName("Spec").FieldByName("Selector").Interface().(*metav1.LabelSelector); sel != nil {
		ls, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			return nil, apierrors.NewInternalError(fmt.Errorf("%s %q: selector: %w", res.gvr.GroupResource(), m.GetName(), err))
		}
		scale.Status.Selector = ls.String()
	}
	return scale, nil
}

// applyScale sets spec.replicas of the workload cur from scale; the Scale's
// resourceVersion and uid become the update's preconditions.
func applyScale(res *resource, name string, cur runtime.Object, scale *autoscalingv1.Scale) (runtime.Object, error) {
	if scale.Name != "" && scale.Name != name {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", scale.Name, name))
	}
	if scale.Spec.Replicas < 0 {
		return nil, apierrors.NewInvalid(scaleKind.GroupKind(), name, field.ErrorList{
			field.Invalid(field.NewPath("spec", "replicas"), scale.Spec.Replicas, "must be greater than or equal to 0"),
		})
	}
	m := cur.(metav1.Object)
	m.SetResourceVersion(scale.ResourceVersion)
	if scale.UID != "" {
		m.SetUID(scale.UID)
	}
	n := scale.Spec.Replicas
	reflect.ValueOf(cur).Elem().FieldByName("Spec").FieldByName("Replicas").Set(reflect.ValueOf(&n))
	return cur, nil
}

// bind serves POST pods/{name}/binding, as kube-scheduler sends it: it
// sets the pod's spec.nodeName and its PodScheduled condition, and adds
// the binding's annotations. A pod already bound, or being deleted, is 409.
func (s *Server) bind(w http.ResponseWriter, r *http.Request, res *resource, ns, name string) error {
	dryRun, validation, err := writeParams(r.URL.Query(), createOptionsKind)
	if err != nil {
		return err
	}
	obj, warnings, err := s.decodeBody(w, r, bindingKind, &corev1.Binding{}, validation)
	if err != nil {
		return err
	}
	b := obj.(*corev1.Binding)
	switch {
	case b.Name != "" && b.Name != name:
		return apierrors.NewBadRequest("name in URL does not match name in Binding object")
	case b.Target.Kind != "" && b.Target.Kind != "Node":
		return apierrors.NewInvalid(bindingKind.GroupKind(), name, field.ErrorList{
			field.NotSupported(field.NewPath("target", "kind"), b.Target.Kind, []string{"Node", "<empty>"})})
	case b.Target.Name == "":
		return apierrors.NewInvalid(bindingKind.GroupKind(), name, field.ErrorList{field.Required(field.NewPath("target", "name"), "")})
	}
	// The pod's own update rules would keep its status: a binding writes
	// spec and status together.
	// A binding changes spec.nodeName, which a pod update may not: the
	// binding itself was checked above.
	binding := withUpdate(res, nil, nil)
	_, err = s.cfg.Store.GuaranteedUpdate(r.Context(), binding.reg, ns, name, func(cur runtime.Object) (runtime.Object, error) {
		pod := cur.(*corev1.Pod)
		if pod.DeletionTimestamp != nil {
			return nil, apierrors.NewConflict(res.reg.GroupResource, name, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", name))
		}
		if pod.Spec.NodeName != "" {
			return nil, apierrors.NewConflict(res.reg.GroupResource, name, fmt.Errorf("pod %v is already assigned to node %q", name, pod.Spec.NodeName))
		}
		if b.UID != "" {
			pod.UID = b.UID // a precondition, checked by the registry
		}
		pod.Spec.NodeName = b.Target.Name
		for k, v := range b.Annotations {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[k] = v
		}
		setPodScheduled(&pod.Status)
		return pod, nil
	}, registry.UpdateOptions{DryRun: dryRun})
	if err != nil {
		return err
	}
	setWarnings(w, warnings)
	writeJSON(w, http.StatusCreated, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: http.StatusCreated})
	return nil
}

// setPodScheduled sets the pod's PodScheduled condition to True.
func setPodScheduled(st *corev1.PodStatus) {
	now := metav1.Now().Rfc3339Copy()
	for i := range st.Conditions {
		if c := &st.Conditions[i]; c.Type == corev1.PodScheduled {
			if c.Status != corev1.ConditionTrue {
				c.Status, c.LastTransitionTime, c.Reason, c.Message = corev1.ConditionTrue, now, "", ""
			}
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now})
}

// finalize serves PUT namespaces/{name}/finalize, as the namespace
// controller sends it: only spec.finalizers of the request is written.
func (s *Server) finalize(w http.ResponseWriter, r *http.Request, res *resource, name string) error {
	return s.update(w, r, withUpdate(res, func(obj, old runtime.Object) {
		finalizers := obj.(*corev1.Namespace).Spec.Finalizers
		old.(*corev1.Namespace).DeepCopyInto(obj.(*corev1.Namespace))
		obj.(*corev1.Namespace).Spec.Finalizers = finalizers
	}, res.reg.ValidateUpdate), "", name)
}
