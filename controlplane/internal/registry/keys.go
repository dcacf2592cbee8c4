package registry

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// prefix returns the key prefix of res in ns ("" for all namespaces, and for
// cluster-scoped resources): /registry/<group or core>/<resource>/[<ns>/].
func prefix(res *Resource, ns string) string {
	group := res.GroupResource.Group
	if group == "" {
		group = "core"
	}
	p := "/registry/" + group + "/" + res.GroupResource.Resource + "/"
	if res.Namespaced && ns != "" {
		p += ns + "/"
	}
	return p
}

// key returns the key of one object.
func key(res *Resource, ns, name string) string {
	return prefix(res, ns) + name
}

// objectKey returns the key of the object a request names: 400 when a
// namespaced resource has no namespace or the name is missing. The
// namespace of a cluster-scoped resource is ignored.
func objectKey(res *Resource, ns, name string) (string, error) {
	switch {
	case name == "":
		return "", apierrors.NewBadRequest("name is required")
	case res.Namespaced && ns == "":
		return "", apierrors.NewBadRequest("namespace is required for " + res.GroupResource.String())
	case !res.Namespaced:
		ns = ""
	}
	return key(res, ns, name), nil
}

// continueToken is the body of a continue token, in kube-apiserver's format:
// the list revision and the key, relative to the listed prefix, to resume at.
type continueToken struct {
	APIVersion      string `json:"v"`
	ResourceVersion int64  `json:"rv"`
	StartKey        string `json:"start"`
}

// encodeContinue makes the token that resumes a list of keyPrefix after
// lastKey, at rev.
func encodeContinue(lastKey, keyPrefix string, rev int64) string {
	b, _ := json.Marshal(continueToken{APIVersion: "meta.k8s.io/v1", ResourceVersion: rev, StartKey: strings.TrimPrefix(lastKey, keyPrefix) + "\x00"})
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeContinue returns the key to list after (exclusive) and the revision
// of a token made by encodeContinue for keyPrefix.
func decodeContinue(token, keyPrefix string) (after string, rev int64, err error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return "", 0, fmt.Errorf("continue key is not valid: %v", err)
	}
	var t continueToken
	if err := json.Unmarshal(b, &t); err != nil {
		return "", 0, fmt.Errorf("continue key is not valid: %v", err)
	}
	if t.APIVersion != "meta.k8s.io/v1" {
		return "", 0, fmt.Errorf("continue key is not valid: server does not recognize this encoded key")
	}
	start, ok := strings.CutSuffix(t.StartKey, "\x00")
	if !ok || start == "" || strings.Contains(start, "..") || strings.HasPrefix(start, "/") {
		return "", 0, fmt.Errorf("continue key is not valid: invalid start key %q", t.StartKey)
	}
	if t.ResourceVersion <= 0 {
		return "", 0, fmt.Errorf("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
	}
	return keyPrefix + start, t.ResourceVersion, nil
}

// parseRV parses a resourceVersion parameter: 0 for "" (and "0", which the
// caller tells apart), else a positive revision. An invalid value is 400.
func parseRV(rv string) (int64, error) {
	if rv == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(rv, 10, 64)
	if err != nil || n < 0 {
		return 0, apierrors.NewBadRequest(fmt.Sprintf("invalid resource version %q", rv))
	}
	return n, nil
}

func formatRV(rev int64) string { return strconv.FormatInt(rev, 10) }
