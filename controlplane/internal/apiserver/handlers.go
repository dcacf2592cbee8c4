package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/controlplane/internal/registry"
)

// The values of ?fieldValidation=.
const (
	fieldValidationIgnore = "Ignore"
	fieldValidationWarn   = "Warn"
	fieldValidationStrict = "Strict"
)

// serveCollection serves {prefix}[/namespaces/{ns}]/{resource}.
func (s *Server) serveCollection(w http.ResponseWriter, r *http.Request, res *resource, ns string) {
	var err error
	switch r.Method {
	case http.MethodGet:
		if watch := r.URL.Query().Get("watch"); watch == "true" || watch == "1" {
			err = s.serveWatch(w, r, res, ns)
		} else {
			err = s.list(w, r, res, ns)
		}
	case http.MethodPost:
		if res.namespaced && ns == "" {
			err = methodNotAllowed(r.Method)
			break
		}
		err = s.create(w, r, res, ns)
	case http.MethodDelete:
		if !slices.Contains(res.verbs, "deletecollection") {
			err = methodNotAllowed(r.Method)
			break
		}
		err = s.deleteCollection(w, r, res, ns)
	default:
		err = methodNotAllowed(r.Method)
	}
	if err != nil {
		writeError(w, err)
	}
}

// serveItem serves {prefix}[/namespaces/{ns}]/{resource}/{name}.
func (s *Server) serveItem(w http.ResponseWriter, r *http.Request, res *resource, ns, name string) {
	var err error
	switch r.Method {
	case http.MethodGet:
		err = s.get(w, r, res, ns, name)
	case http.MethodPut:
		err = s.update(w, r, res, ns, name)
	case http.MethodPatch:
		err = s.patch(w, r, res, ns, name)
	case http.MethodDelete:
		err = s.delete(w, r, res, ns, name)
	default:
		err = methodNotAllowed(r.Method)
	}
	if err != nil {
		writeError(w, err)
	}
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, res *resource, ns, name string) error {
	obj, err := s.cfg.Store.Get(r.Context(), res.reg, ns, name, registry.GetOptions{ResourceVersion: r.URL.Query().Get("resourceVersion")})
	if err != nil {
		return err
	}
	return s.writeObjects(w, r, res, http.StatusOK, obj, []runtime.Object{obj})
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, res *resource, ns string) error {
	if err := checkListQuery(r.URL.Query(), false); err != nil {
		return err
	}
	opts, err := listOptions(r.URL.Query(), res)
	if err != nil {
		return err
	}
	list, err := s.cfg.Store.List(r.Context(), res.reg, ns, opts)
	if err != nil {
		return err
	}
	list.GetObjectKind().SetGroupVersionKind(res.gvr.GroupVersion().WithKind(res.kind + "List"))
	items, err := meta.ExtractList(list)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	return s.writeObjects(w, r, res, http.StatusOK, list, items)
}

// writeObjects writes obj, or a Table of items, or obj's metadata only, as
// the client asks.
func (s *Server) writeObjects(w http.ResponseWriter, r *http.Request, res *resource, code int, obj runtime.Object, items []runtime.Object) error {
	as, protobuf := negotiate(r.Header.Get("Accept"))
	switch as {
	case asPlainObjects, asMeta, asMetaList:
		if as != asPlainObjects {
			var err error
			if obj, err = metadataOnly(r.Header.Get("Accept"), obj); err != nil {
				return err
			}
		}
		if protobuf && s.codecs.writeProtobuf(w, code, obj) == nil {
			return nil
		}
		writeJSON(w, code, obj)
		return nil
	}
	inc, err := parseIncludeObject(r.URL.Query().Get("includeObject"))
	if err != nil {
		return err
	}
	t, err := table(res, items, s.cfg.Now(), inc, true)
	if err != nil {
		return err
	}
	if lm, err := meta.ListAccessor(obj); err == nil {
		t.ResourceVersion, t.Continue, t.RemainingItemCount = lm.GetResourceVersion(), lm.GetContinue(), lm.GetRemainingItemCount()
	}
	writeJSON(w, code, t)
	return nil
}

// create serves a POST. The writer (?fieldManager=, or the User-Agent)
// owns every field of the new object in its managedFields.
func (s *Server) create(w http.ResponseWriter, r *http.Request, res *resource, ns string) error {
	q := r.URL.Query()
	dryRun, validation, err := writeParams(q, createOptionsKind)
	if err != nil {
		return err
	}
	manager, err := managerParam(q, r.UserAgent(), createOptionsKind)
	if err != nil {
		return err
	}
	obj, warnings, err := s.decodeBody(w, r, res.reg.Kind, res.reg.New(), validation)
	if err != nil {
		return err
	}
	if res.namespaced {
		if err := s.checkNamespaceForCreate(r.Context(), res, ns, obj); err != nil {
			return err
		}
	}
	obj = s.trackUpdate(r.Context(), res, "", nil, obj, manager)
	if pod, ok := obj.(*corev1.Pod); ok && s.cfg.ServiceAccountAdmission {
		if err := s.admitServiceAccountToken(r.Context(), ns, pod); err != nil {
			return err
		}
	}
	created, err := s.cfg.Store.Create(r.Context(), res.reg, ns, obj, registry.CreateOptions{DryRun: dryRun})
	if err != nil {
		return err
	}
	setWarnings(w, warnings)
	return s.writeObjects(w, r, res, http.StatusCreated, created, []runtime.Object{created})
}

// update serves a PUT of the main resource or of its status, under the
// registry's Update rules. The writer (?fieldManager=, or the User-Agent)
// takes over the fields it changes in managedFields.
func (s *Server) update(w http.ResponseWriter, r *http.Request, res *resource, ns, name string) error {
	q := r.URL.Query()
	dryRun, validation, err := writeParams(q, updateOptionsKind)
	if err != nil {
		return err
	}
	manager, err := managerParam(q, r.UserAgent(), updateOptionsKind)
	if err != nil {
		return err
	}
	obj, warnings, err := s.decodeBody(w, r, res.reg.Kind, res.reg.New(), validation)
	if err != nil {
		return err
	}
	sub := subresourceOf(r, res, name)
	// Store.Update is this GuaranteedUpdate; the field manager needs the
	// object it replaces.
	updated, err := s.cfg.Store.GuaranteedUpdate(r.Context(), res.reg, ns, name, func(cur runtime.Object) (runtime.Object, error) {
		return s.trackUpdate(r.Context(), res, sub, cur, obj.DeepCopyObject(), manager), nil
	}, registry.UpdateOptions{DryRun: dryRun})
	if err != nil {
		return err
	}
	setWarnings(w, warnings)
	return s.writeObjects(w, r, res, http.StatusOK, updated, []runtime.Object{updated})
}

// decodeBody reads and decodes the request body as an object of kind gvk, into into.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, gvk schema.GroupVersionKind, into runtime.Object, validation string) (runtime.Object, []string, error) {
	body, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		return nil, nil, err
	}
	d, err := s.codecs.decoder(r.Header.Get("Content-Type"), strictDecoding(validation))
	if err != nil {
		return nil, nil, err
	}
	return decodeObject(d, body, gvk, into, validation)
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, res *resource, ns, name string) error {
	opts, err := s.deleteOptions(w, r)
	if err != nil {
		return err
	}
	obj, err := s.cfg.Store.Delete(r.Context(), res.reg, ns, name, opts)
	if err != nil {
		return err
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if m.GetDeletionTimestamp() != nil {
		// Held by finalizers or a grace period (or a held pod now gone):
		// kube-apiserver answers with the object, 202 when the client asked
		// for its dependents to go first with the deprecated orphanDependents.
		code := http.StatusOK
		if o := opts.OrphanDependents; o != nil && !*o {
			code = http.StatusAccepted
		}
		return s.writeObjects(w, r, res, code, obj, []runtime.Object{obj})
	}
	writeJSON(w, http.StatusOK, &metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusSuccess,
		Details:  &metav1.StatusDetails{Name: name, Group: res.gvr.Group, Kind: res.gvr.Resource, UID: m.GetUID()},
	})
	return nil
}

// deleteCollection deletes every object a list with the request's
// selectors returns, one by one, and answers with the deleted objects.
func (s *Server) deleteCollection(w http.ResponseWriter, r *http.Request, res *resource, ns string) error {
	opts, err := s.deleteOptions(w, r)
	if err != nil {
		return err
	}
	lopts, err := listOptions(r.URL.Query(), res)
	if err != nil {
		return err
	}
	lopts.Limit, lopts.Continue = 0, ""
	list, err := s.cfg.Store.List(r.Context(), res.reg, ns, lopts)
	if err != nil {
		return err
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	deleted := make([]runtime.Object, 0, len(items))
	for _, item := range items {
		m, _ := meta.Accessor(item)
		obj, err := s.cfg.Store.Delete(r.Context(), res.reg, m.GetNamespace(), m.GetName(), opts)
		if apierrors.IsNotFound(err) {
			continue // deleted by someone else meanwhile
		}
		if err != nil {
			return err
		}
		deleted = append(deleted, obj)
	}
	if err := meta.SetList(list, deleted); err != nil {
		return apierrors.NewInternalError(err)
	}
	list.GetObjectKind().SetGroupVersionKind(res.gvr.GroupVersion().WithKind(res.kind + "List"))
	writeJSON(w, http.StatusOK, list)
	return nil
}

// deleteOptions reads the DeleteOptions of a delete from its body (JSON,
// YAML or protobuf; may be empty) and its query, which wins.
func (s *Server) deleteOptions(w http.ResponseWriter, r *http.Request) (registry.DeleteOptions, error) {
	body, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		return registry.DeleteOptions{}, err
	}
	opts := &metav1.DeleteOptions{}
	if len(body) > 0 {
		d, err := s.codecs.decoder(r.Header.Get("Content-Type"), false)
		if err != nil {
			return registry.DeleteOptions{}, err
		}
		obj, _, err := d.Decode(body, &deleteOptionsKind, opts)
		if err != nil {
			return registry.DeleteOptions{}, apierrors.NewBadRequest("DeleteOptions cannot be decoded: " + err.Error())
		}
		var ok bool
		if opts, ok = obj.(*metav1.DeleteOptions); !ok {
			return registry.DeleteOptions{}, apierrors.NewBadRequest(fmt.Sprintf("the body is a %T, not DeleteOptions", obj))
		}
	}
	q := r.URL.Query()
	if v := q.Get("propagationPolicy"); v != "" {
		p := metav1.DeletionPropagation(v)
		opts.PropagationPolicy = &p
	}
	if v := q.Get("gracePeriodSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return registry.DeleteOptions{}, apierrors.NewBadRequest(fmt.Sprintf("gracePeriodSeconds: invalid value %q", v))
		}
		opts.GracePeriodSeconds = &n
	}
	if _, ok := q["dryRun"]; ok {
		opts.DryRun = q["dryRun"]
	}
	return registryDeleteOptions(opts)
}

var deleteOptionsKind = metav1.SchemeGroupVersion.WithKind("DeleteOptions")

// writeParams reads ?dryRun= and ?fieldValidation= of a create, update or
// patch (options names CreateOptions, UpdateOptions or PatchOptions in
// errors): values kube-apiserver refuses are 422 Invalid, with its
// wording. An unset fieldValidation is Warn, kube-apiserver's default.
func writeParams(q url.Values, options schema.GroupKind) (dryRun bool, validation string, err error) {
	validation = q.Get("fieldValidation")
	errs := metav1validation.ValidateDryRun(field.NewPath("dryRun"), q["dryRun"])
	errs = append(errs, metav1validation.ValidateFieldValidation(field.NewPath("fieldValidation"), validation)...)
	if len(errs) > 0 {
		return false, "", apierrors.NewInvalid(options, "", errs)
	}
	if validation == "" {
		validation = fieldValidationWarn
	}
	return len(q["dryRun"]) > 0, validation, nil
}

// strictDecoding says whether a body is decoded strictly (unknown and
// duplicate fields found): for Strict, which refuses them, and for Warn,
// which reports them in Warning headers.
func strictDecoding(validation string) bool { return validation != fieldValidationIgnore }

// listOptions reads the selection and paging parameters of a list or watch.
// A field selector on a field the resource does not index is 400.
func listOptions(q url.Values, res *resource) (registry.ListOptions, error) {
	opts := registry.ListOptions{
		Continue:             q.Get("continue"),
		ResourceVersion:      q.Get("resourceVersion"),
		ResourceVersionMatch: metav1.ResourceVersionMatch(q.Get("resourceVersionMatch")),
	}
	if v := q.Get("labelSelector"); v != "" {
		sel, err := labels.Parse(v)
		if err != nil {
			return opts, apierrors.NewBadRequest(err.Error())
		}
		opts.LabelSelector = sel
	}
	if v := q.Get("fieldSelector"); v != "" {
		sel, err := fields.ParseSelector(v)
		if err != nil {
			return opts, apierrors.NewBadRequest(err.Error())
		}
		for _, req := range sel.Requirements() {
			known := req.Field == "metadata.name" || (res.namespaced && req.Field == "metadata.namespace") || slices.Contains(res.fieldLabels, req.Field)
			switch {
			case known:
			case len(res.fieldLabels) == 0:
				// kube-apiserver's wording for kinds with only the generic fields
				only := `"metadata.name"`
				if res.namespaced {
					only += `, "metadata.namespace"`
				}
				return opts, apierrors.NewBadRequest(fmt.Sprintf("%q is not a known field selector: only %s", req.Field, only))
			default:
				return opts, apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", req.Field))
			}
		}
		opts.FieldSelector = sel
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return opts, apierrors.NewBadRequest(err.Error())
		}
		if n > 0 {
			opts.Limit = n
		}
	}
	return opts, nil
}

// requestContext is a request's context, ended after ?timeoutSeconds= when given.
func requestContext(r *http.Request) (context.Context, context.CancelFunc, error) {
	v := r.URL.Query().Get("timeoutSeconds")
	if v == "" {
		ctx, cancel := context.WithCancel(r.Context())
		return ctx, cancel, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("timeoutSeconds: invalid value %q", v))
	}
	ctx, cancel := context.WithTimeout(r.Context(), secondsDuration(n))
	return ctx, cancel, nil
}

// checkNamespaceForCreate refuses to create obj in namespace ns when ns
// does not exist (404 namespaces "ns" not found) or is being deleted (403,
// as kube-apiserver's NamespaceLifecycle admission).
//
// Like kube-apiserver, which answers from a cache, it reads the local
// replica; only a namespace not found there is read again through the
// leader, so that one just created on another master is found.
func (s *Server) checkNamespaceForCreate(ctx context.Context, res *resource, ns string, obj runtime.Object) error {
	nsRes := s.byGV["v1"]["namespaces"].reg
	nsObj, err := s.cfg.Store.Get(ctx, nsRes, "", ns, registry.GetOptions{ResourceVersion: "0"})
	if apierrors.IsNotFound(err) {
		nsObj, err = s.cfg.Store.Get(ctx, nsRes, "", ns, registry.GetOptions{})
	}
	if err != nil {
		return err
	}
	if nsObj.(metav1.Object).GetDeletionTimestamp() == nil {
		return nil
	}
	name := ""
	if m, err := meta.Accessor(obj); err == nil {
		name = m.GetName()
	}
	msg := fmt.Sprintf("unable to create new content in namespace %s because it is being terminated", ns)
	st := apierrors.NewForbidden(res.gvr.GroupResource(), name, errors.New(msg))
	st.ErrStatus.Details.Causes = append(st.ErrStatus.Details.Causes, metav1.StatusCause{
		Type: corev1.NamespaceTerminatingCause, Message: msg, Field: "metadata.namespace",
	})
	return st
}
