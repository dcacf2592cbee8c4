package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/skiff-sh/skiff/controlplane/internal/fieldmanager"
	"github.com/skiff-sh/skiff/controlplane/internal/registry"
)

// patchTypes are the patch types a resource and its status accept, in
// kube-apiserver's order (its 415 lists them so). Server-side apply in CBOR
// (application/apply-patch+cbor) is behind a feature gate upstream and not
// served.
var patchTypes = []types.PatchType{types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType, types.ApplyYAMLPatchType}

// applyCreateAttempts bounds how often a server-side apply goes back and
// forth between "update: not found" and "create: already exists" while
// others create and delete the object.
const applyCreateAttempts = 5

// patch applies a JSON patch, merge patch or strategic merge patch to the
// stored object under GuaranteedUpdate, so a concurrent write makes it
// re-read and re-apply rather than fail. A resourceVersion put in the
// object by the patch is a precondition, as in kube-apiserver. The writer
// (?fieldManager=, or the User-Agent) takes over the fields it changes in
// managedFields. A server-side apply (application/apply-patch+yaml) goes to
// apply.
func (s *Server) patch(w http.ResponseWriter, r *http.Request, res *resource, ns, name string) error {
	q := r.URL.Query()
	dryRun, validation, err := writeParams(q, patchOptionsKind)
	if err != nil {
		return err
	}
	p, err := s.readPatchOf(w, r, patchTypes)
	if err != nil {
		return err
	}
	manager, force, err := patchOptions(q, p.typ, r.UserAgent())
	if err != nil {
		return err
	}
	sub := subresourceOf(r, res, name)
	if p.typ == types.ApplyYAMLPatchType {
		return s.apply(w, r, res, ns, name, sub, p.body, applyOptions{manager: manager, force: force, dryRun: dryRun, validation: validation})
	}
	d, _ := s.codecs.decoder(mediaJSON, strictDecoding(validation))
	var warnings []string
	patched, err := s.cfg.Store.GuaranteedUpdate(r.Context(), res.reg, ns, name, func(cur runtime.Object) (runtime.Object, error) {
		orig, err := json.Marshal(cur)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		out, err := p.apply(orig, res.reg.New())
		if err != nil {
			return nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", res.reg.GroupResource, name, err.Error(), 0, false)
		}
		obj, warn, err := decodeObject(d, out, res.reg.Kind, res.reg.New(), validation)
		warnings = warn
		if err != nil {
			return nil, err
		}
		return s.trackUpdate(r.Context(), res, sub, cur, obj, manager), nil
	}, registry.UpdateOptions{DryRun: dryRun})
	if err != nil {
		return err
	}
	setWarnings(w, warnings)
	return s.writeObjects(w, r, res, http.StatusOK, patched, []runtime.Object{patched})
}

// applyOptions are the query parameters of a server-side apply.
type applyOptions struct {
	manager    string
	force      bool
	dryRun     bool
	validation string
}

// apply serves a server-side apply of body, a YAML or JSON apply
// configuration, to ns/name through sub ("" or "status"): the fieldmanager
// merges it into the stored object under GuaranteedUpdate (a concurrent
// write makes it merge again into the new object) and the result is
// stored with 200. When the object does not exist, the main resource
// creates it from the configuration alone, with 201, like a POST
// (the namespace must exist); a status write answers 404.
//
// A field another manager set to a different value is a 409 Conflict
// unless force; with fieldValidation Strict, duplicate fields in the body
// are 400 (Warn: a warning); fields the schema does not know are always 400.
func (s *Server) apply(w http.ResponseWriter, r *http.Request, res *resource, ns, name, sub string, body []byte, opts applyOptions) error {
	m, err := s.fieldManager(res, sub)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("server-side apply of %s: %w", res.gvr.GroupResource(), err))
	}
	ctx := r.Context()
	for attempt := 1; ; attempt++ {
		var warnings []string
		obj, err := s.cfg.Store.GuaranteedUpdate(ctx, res.reg, ns, name, func(cur runtime.Object) (runtime.Object, error) {
			out, err := m.Apply(cur, body, opts.manager, opts.force)
			if err != nil {
				return nil, err
			}
			warnings, err = checkApplyFields(body, opts.validation)
			return out, err
		}, registry.UpdateOptions{DryRun: opts.dryRun})
		if err == nil {
			setWarnings(w, warnings)
			return s.writeObjects(w, r, res, http.StatusOK, obj, []runtime.Object{obj})
		}
		// tryUpdate never fails with NotFound: the object is not there.
		if !apierrors.IsNotFound(err) || sub != "" {
			return err
		}
		created, warnings, err := s.applyCreate(ctx, m, res, ns, name, body, opts)
		if apierrors.IsAlreadyExists(err) && attempt < applyCreateAttempts {
			continue // created meanwhile: apply to it
		}
		if err != nil {
			return err
		}
		setWarnings(w, warnings)
		return s.writeObjects(w, r, res, http.StatusCreated, created, []runtime.Object{created})
	}
}

// applyCreate creates ns/name from an apply configuration alone, as
// kube-apiserver's apply does when the object is missing.
func (s *Server) applyCreate(ctx context.Context, m *fieldmanager.Manager, res *resource, ns, name string, body []byte, opts applyOptions) (runtime.Object, []string, error) {
	obj, err := m.Apply(nil, body, opts.manager, opts.force)
	if err != nil {
		return nil, nil, err
	}
	warnings, err := checkApplyFields(body, opts.validation)
	if err != nil {
		return nil, nil, err
	}
	om, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil, apierrors.NewInternalError(err)
	}
	if uid := om.GetUID(); uid != "" {
		return nil, nil, apierrors.NewConflict(res.reg.GroupResource, name,
			fmt.Errorf("uid mismatch: the provided object specified uid %s, and no existing object was found", uid))
	}
	if om.GetName() != name {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", om.GetName(), name))
	}
	if res.namespaced {
		if err := s.checkNamespaceForCreate(ctx, res, ns, obj); err != nil {
			return nil, nil, err
		}
	}
	created, err := s.cfg.Store.Create(ctx, res.reg, ns, obj, registry.CreateOptions{DryRun: opts.dryRun})
	return created, warnings, err
}

// checkApplyFields checks an apply configuration for duplicate fields as
// fieldValidation asks: Strict fails with kube-apiserver's 400, Warn returns
// the problem as a warning. (Unknown fields fail any apply: the schema
// rejects them.)
func checkApplyFields(body []byte, validation string) ([]string, error) {
	if validation != fieldValidationStrict && validation != fieldValidationWarn {
		return nil, nil
	}
	if err := yaml.UnmarshalStrict(body, &map[string]any{}); err != nil {
		if validation == fieldValidationStrict {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("error strict decoding YAML: %v", err))
		}
		return []string{err.Error()}, nil
	}
	return nil, nil
}

// trackUpdate records in obj's managedFields that manager wrote obj over
// live (nil on create) through sub, after defaulting obj as the registry
// will, so that defaulted fields belong to the writer as in kube-apiserver.
// obj may be modified. Bookkeeping that fails does not fail the write (as
// in kube-apiserver): obj keeps live's managedFields and the failure is
// logged.
func (s *Server) trackUpdate(ctx context.Context, res *resource, sub string, live, obj runtime.Object, manager string) runtime.Object {
	m, err := s.fieldManager(res, sub)
	if err == nil {
		if res.reg.Default != nil {
			res.reg.Default(obj)
		}
		obj, err = m.Update(live, obj, manager)
	}
	if err != nil {
		s.cfg.Logger.WarnContext(ctx, "managedFields not updated", "resource", res.gvr.String(), "subresource", sub, "manager", manager, "err", err)
	}
	return obj
}

// fieldManager returns the field manager of res written through sub.
func (s *Server) fieldManager(res *resource, sub string) (*fieldmanager.Manager, error) {
	return s.fields.For(res.reg.Kind, sub)
}

// subresourceOf returns the subresource r writes ("status"), or "" for the
// main resource: update and patch serve both.
func subresourceOf(r *http.Request, res *resource, name string) string {
	p := strings.Trim(r.URL.Path, "/")
	for _, sub := range []string{subStatus, subScale} {
		if strings.HasSuffix(p, "/"+res.gvr.Resource+"/"+name+"/"+sub) {
			return sub
		}
	}
	return ""
}

// metaOptions are the options kinds whose ?fieldManager= is checked.
var (
	createOptionsKind = schema.GroupKind{Group: metav1.GroupName, Kind: "CreateOptions"}
	updateOptionsKind = schema.GroupKind{Group: metav1.GroupName, Kind: "UpdateOptions"}
	patchOptionsKind  = schema.GroupKind{Group: metav1.GroupName, Kind: "PatchOptions"}
)

// managerParam returns the field manager of a create or update: the
// ?fieldManager= parameter, checked as kube-apiserver does (422 Invalid on
// kind, CreateOptions or UpdateOptions), or else the User-Agent's name.
func managerParam(q url.Values, userAgent string, kind schema.GroupKind) (string, error) {
	manager := q.Get("fieldManager")
	if errs := fieldmanager.ValidateManager(manager, field.NewPath("fieldManager")); len(errs) > 0 {
		return "", apierrors.NewInvalid(kind, "", errs)
	}
	if manager == "" {
		manager = fieldmanager.ManagerFromUserAgent(userAgent)
	}
	return manager, nil
}

// patchOptions returns the field manager and ?force= of a PATCH, checked as
// kube-apiserver's ValidatePatchOptions does: an apply must name its
// manager and only an apply may force (422 Invalid on PatchOptions).
// force is read as kube-apiserver converts it: present and not "false" or
// "0" is true.
func patchOptions(q url.Values, typ types.PatchType, userAgent string) (manager string, force bool, err error) {
	manager = q.Get("fieldManager")
	errs := fieldmanager.ValidateManager(manager, field.NewPath("fieldManager"))
	_, forceSet := q["force"]
	if v := q.Get("force"); forceSet {
		force = v != "0" && !strings.EqualFold(v, "false")
	}
	switch {
	case typ == types.ApplyYAMLPatchType && manager == "":
		errs = append(field.ErrorList{field.Required(field.NewPath("fieldManager"), "is required for apply patch")}, errs...)
	case typ != types.ApplyYAMLPatchType && forceSet:
		errs = append(field.ErrorList{field.Forbidden(field.NewPath("force"), "may not be specified for non-apply patch")}, errs...)
	}
	if len(errs) > 0 {
		return "", false, apierrors.NewInvalid(patchOptionsKind, "", errs)
	}
	if manager == "" {
		manager = fieldmanager.ManagerFromUserAgent(userAgent)
	}
	return manager, force, nil
}

// patchRequest is the body of a PATCH request, checked: its type and, for a
// JSON patch, its decoded operations.
type patchRequest struct {
	typ  types.PatchType
	body []byte
	ops  jsonpatch.Patch
}

// readPatch reads the patch of a PATCH request of JSON, merge or strategic
// merge patch: 415 for another type, 400 for a malformed patch.
func (s *Server) readPatch(w http.ResponseWriter, r *http.Request) (patchRequest, error) {
	return s.readPatchOf(w, r, patchTypes[:3])
}

// readPatchOf reads the patch of a PATCH request of one of the types
// accepted: 415 listing them for another type, 400 for a malformed JSON,
// merge or strategic merge patch. An apply configuration is YAML and is
// decoded by apply.
func (s *Server) readPatchOf(w http.ResponseWriter, r *http.Request, accepted []types.PatchType) (patchRequest, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		mt = r.Header.Get("Content-Type")
	}
	p := patchRequest{typ: types.PatchType(mt)}
	ok := false
	names := make([]string, len(accepted))
	for i, t := range accepted {
		names[i] = string(t)
		ok = ok || t == p.typ
	}
	if !ok {
		return p, &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType, Reason: metav1.StatusReasonUnsupportedMediaType,
			Message: "the body of the request was in an unknown format - accepted media types include: " + strings.Join(names, ", "),
		}}
	}
	if p.body, err = readBody(w, r, s.cfg.MaxBodyBytes); err != nil {
		return p, err
	}
	switch {
	case p.typ == types.ApplyYAMLPatchType:
	case p.typ == types.JSONPatchType:
		if p.ops, err = jsonpatch.DecodePatch(p.body); err != nil {
			return p, apierrors.NewBadRequest(err.Error())
		}
	case !json.Valid(p.body):
		return p, apierrors.NewBadRequest(fmt.Sprintf("error decoding patch: the patch is not valid JSON: %s", truncate(p.body)))
	}
	return p, nil
}

// apply applies the patch to the JSON document orig. schema is an empty
// object of orig's type: a strategic merge patch takes its merge keys from it.
func (p patchRequest) apply(orig []byte, schema runtime.Object) ([]byte, error) {
	switch p.typ {
	case types.JSONPatchType:
		return p.ops.Apply(orig)
	case types.MergePatchType:
		return jsonpatch.MergePatch(orig, p.body)
	case types.StrategicMergePatchType:
		return strategicpatch.StrategicMergePatch(orig, p.body, schema)
	}
	return nil, fmt.Errorf("a %s patch is applied by the field manager", p.typ)
}

// truncate shortens a body quoted in an error message.
func truncate(b []byte) string {
	const max = 100
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
