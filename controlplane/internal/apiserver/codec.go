package apiserver

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/skiff-sh/skiff/controlplane/internal/registry"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
)

// Media types of request bodies.
const (
	mediaJSON     = "application/json"
	mediaYAML     = "application/yaml"
	mediaProtobuf = "application/vnd.kubernetes.protobuf"
)

// codecs decodes request bodies, and encodes objects in protobuf for the
// clients that prefer it (client-go's typed clients); other responses are
// JSON, which every client accepts whatever it prefers (guide 4.0).
type codecs struct {
	json, jsonStrict, yaml, yamlStrict, protobuf runtime.Decoder
	protobufEncoder                              runtime.EncoderWithAllocator
}

func newCodecs(scheme *runtime.Scheme) *codecs {
	ser := func(yaml, strict bool) runtime.Decoder {
		return json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Yaml: yaml, Strict: strict})
	}
	pb := protobuf.NewSerializer(scheme, scheme)
	return &codecs{
		json: ser(false, false), jsonStrict: ser(false, true),
		yaml: ser(true, false), yamlStrict: ser(true, true),
		protobuf: pb, protobufEncoder: pb,
	}
}

// decoder returns the decoder for a Content-Type, or 415.
func (c *codecs) decoder(contentType string, strict bool) (runtime.Decoder, error) {
	mt := mediaJSON // kube-apiserver also takes a body without a type as JSON
	if contentType != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(contentType); err != nil {
			return nil, unsupportedMediaType(contentType)
		}
	}
	switch {
	case mt == mediaJSON && strict:
		return c.jsonStrict, nil
	case mt == mediaJSON:
		return c.json, nil
	case mt == mediaYAML && strict:
		return c.yamlStrict, nil
	case mt == mediaYAML:
		return c.yaml, nil
	case mt == mediaProtobuf:
		return c.protobuf, nil
	}
	return nil, unsupportedMediaType(contentType)
}

func unsupportedMediaType(contentType string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType, Reason: metav1.StatusReasonUnsupportedMediaType,
		Message: fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: %s, %s, %s (got %q)",
			mediaJSON, mediaYAML, mediaProtobuf, contentType),
	}}
}

// MaxJSONDepth is the deepest nesting of arrays and objects accepted in a
// JSON request body (objects, DeleteOptions, every kind of patch). A deeper
// body is 400 before any decoder sees it. encoding/json alone stops at
// 10,000 levels; no Kubernetes object needs more than a few dozen, and a
// tighter bound keeps the recursive decoders and patchers cheap.
//
// YAML bodies are guarded by go-yaml v2 itself: its parser stops at 10,000
// levels and its decoder refuses a document whose alias expansion outweighs
// its own nodes ("document contains excessive aliasing"), so a "billion
// laughs" document fails after a few thousand nodes. The JSON it converts
// to then meets encoding/json's depth limit. Protobuf bodies are bounded by
// the body size.
const MaxJSONDepth = 1000

// readBody reads a request body of at most max bytes; a larger one is 413.
// A JSON body (by Content-Type; no type is JSON) nested deeper than
// MaxJSONDepth is 400.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, apierrors.NewRequestEntityTooLargeError("limit is " + strconv.FormatInt(max, 10))
	case err != nil:
		return nil, apierrors.NewBadRequest("reading the request body: " + err.Error())
	}
	if isJSON(r.Header.Get("Content-Type")) {
		if err := checkJSONDepth(body, MaxJSONDepth); err != nil {
			return nil, err
		}
	}
	return body, nil
}

// isJSON reports whether a Content-Type is JSON or one of the JSON patch
// types ("application/merge-patch+json", ...); an absent type is JSON.
func isJSON(contentType string) bool {
	if contentType == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == mediaJSON || strings.HasSuffix(mt, "+json"))
}

// checkJSONDepth returns a 400 if body nests arrays and objects more than
// max levels deep. It only counts brackets outside strings, in one pass and
// without allocating; whether body is valid JSON is the decoder's business.
func checkJSONDepth(body []byte, max int) error {
	depth, inString, escaped := 0, false, false
	for _, c := range body {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
		case inString:
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if depth++; depth > max {
				return apierrors.NewBadRequest(fmt.Sprintf("the JSON document is nested more than %d levels deep", max))
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return nil
}

// decodeObject decodes body into a new object of kind gvk with newObj. With
// validation Strict, unknown and duplicate fields are 400; otherwise they are
// returned as warnings. Any other decoding failure is 400 with
// kube-apiserver's wording, and so is an object of another kind.
func decodeObject(d runtime.Decoder, body []byte, gvk schema.GroupVersionKind, newObj runtime.Object, validation string) (runtime.Object, []string, error) {
	obj, got, err := d.Decode(body, &gvk, newObj)
	var warnings []string
	if err != nil && runtime.IsStrictDecodingError(err) && validation != fieldValidationStrict {
		if validation == fieldValidationWarn || validation == "" {
			if sde, ok := runtime.AsStrictDecodingError(err); ok {
				for _, e := range sde.Errors() {
					warnings = append(warnings, e.Error())
				}
			}
		}
		err = nil
	}
	if err != nil {
		// kube-apiserver's transformDecodeError: the kind of the data when
		// it could be read, else a summary of the data.
		if got != nil && got.Kind != "" {
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: %v", got.Kind, got.Version, gvk.Kind, err))
		}
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the object provided is unrecognized (must be of type %s): %v (%s)", gvk.Kind, err, summarizeData(body, 30)))
	}
	switch {
	case got.GroupVersion() != gvk.GroupVersion():
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s)", got.GroupVersion(), gvk.GroupVersion()))
	case got.Kind != gvk.Kind:
		// Worded as kube-apiserver, which fails converting one to the other.
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: converting (%s.%s) to (%s.%s): unknown conversion",
			got.Kind, got.Version, gvk.Kind, got.Version, got.Kind, internalGroup(gvk.Group), gvk.Kind))
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	return obj, warnings, nil
}

// setWarnings adds the Warning headers kube-apiserver sends (code 299).
func setWarnings(w http.ResponseWriter, warnings []string) {
	for _, msg := range warnings {
		w.Header().Add("Warning", "299 - "+strconv.Quote(strings.ReplaceAll(msg, "\n", " ")))
	}
}

// summarizeData is how kube-apiserver quotes a body it could not read: the
// first max bytes, as text when it looks like JSON, else in hex.
func summarizeData(data []byte, max int) string {
	more := ""
	if len(data) > max {
		data, more = data[:max], " ..."
	}
	switch {
	case len(data) == 0:
		return "<empty>"
	case data[0] == '{':
		return string(data) + more
	}
	return hex.EncodeToString(data) + more
}

// internalGroup is the name kube-apiserver's internal types have for group:
// "core" for the core group.
func internalGroup(group string) string {
	if group == "" {
		return "core"
	}
	return group
}

// writeProtobuf writes obj in Kubernetes' protobuf encoding; it fails,
// having written nothing, for an object without one.
func (c *codecs) writeProtobuf(w http.ResponseWriter, code int, obj runtime.Object) error {
	b, err := registry.EncodeProtobuf(c.protobufEncoder, obj)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", mediaProtobuf)
	w.WriteHeader(code)
	_, _ = w.Write(b) // a client that went away is not an error of ours
	return nil
}
