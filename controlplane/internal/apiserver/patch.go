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
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		mt = r.Header.Get("Content-Type")
	}
	pt := types.PatchType(mt)
	switch pt {
	case types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType:
	default:
		return &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType, Reason: metav1.StatusReasonUnsupportedMediaType,
			Message: fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: %s, %s, %s",
				types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType),
		}}
	}
	body, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	var jp jsonpatch.Patch
	if pt == types.JSONPatchType {
		if jp, err = jsonpatch.DecodePatch(body); err != nil {
			return apierrors.NewBadRequest(err.Error())
		}
	} else if !json.Valid(body) {
		return apierrors.NewBadRequest(fmt.Sprintf("error decoding patch: the patch is not valid JSON: %s", truncate(body)))
	}
	d, _ := s.codecs.decoder(mediaJSON, validation == fieldValidationStrict)
	var warnings []string
	patched, err := s.cfg.Store.GuaranteedUpdate(r.Context(), res.reg, ns, name, func(cur runtime.Object) (runtime.Object, error) {
		orig, err := json.Marshal(cur)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		var out []byte
		switch pt {
		case types.JSONPatchType:
			out, err = jp.Apply(orig)
		case types.MergePatchType:
			out, err = jsonpatch.MergePatch(orig, body)
		case types.StrategicMergePatchType:
			out, err = strategicpatch.StrategicMergePatch(orig, body, res.reg.New())
		}
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

// truncate shortens a body quoted in an error message.
func truncate(b []byte) string {
	const max = 100
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
