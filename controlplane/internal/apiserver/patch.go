package apiserver

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"github.com/skiff-sh/skiff/controlplane/internal/registry"
)

// patch applies a JSON patch, merge patch or strategic merge patch to the
// stored object under GuaranteedUpdate, so a concurrent write makes it
// re-read and re-apply rather than fail. A resourceVersion put in the
// object by the patch is a precondition, as in kube-apiserver.
func (s *Server) patch(w http.ResponseWriter, r *http.Request, res *resource, ns, name string) error {
	dryRun, validation, err := writeParams(r.URL.Query())
	if err != nil {
		return err
	}
	p, err := s.readPatch(w, r)
	if err != nil {
		return err
	}
	d, _ := s.codecs.decoder(mediaJSON, validation == fieldValidationStrict)
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
		return obj, err
	}, registry.UpdateOptions{DryRun: dryRun})
	if err != nil {
		return err
	}
	setWarnings(w, warnings)
	return s.writeObjects(w, r, res, http.StatusOK, patched, []runtime.Object{patched})
}

// patchRequest is the body of a PATCH request, checked: its type and, for a
// JSON patch, its decoded operations.
type patchRequest struct {
	typ  types.PatchType
	body []byte
	ops  jsonpatch.Patch
}

// readPatch reads the patch of a PATCH request: 415 for a patch type that
// is not JSON, merge or strategic merge, 400 for a malformed patch.
func (s *Server) readPatch(w http.ResponseWriter, r *http.Request) (patchRequest, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		mt = r.Header.Get("Content-Type")
	}
	p := patchRequest{typ: types.PatchType(mt)}
	switch p.typ {
	case types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType:
	default:
		return p, &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType, Reason: metav1.StatusReasonUnsupportedMediaType,
			Message: fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: %s, %s, %s",
				types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType),
		}}
	}
	if p.body, err = readBody(w, r, s.cfg.MaxBodyBytes); err != nil {
		return p, err
	}
	if p.typ == types.JSONPatchType {
		if p.ops, err = jsonpatch.DecodePatch(p.body); err != nil {
			return p, apierrors.NewBadRequest(err.Error())
		}
	} else if !json.Valid(p.body) {
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
	default:
		return strategicpatch.StrategicMergePatch(orig, p.body, schema)
	}
}

// truncate shortens a body quoted in an error message.
func truncate(b []byte) string {
	const max = 100
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
