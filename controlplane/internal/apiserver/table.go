package apiserver

import (
	"encoding/json"
	"fmt"
	"mime"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

// column is one column of a server-side Table: its definition and how to
// compute its cell (a string or an int64, matching def.Type). now is the
// time relative cells (AGE, LAST SEEN, RESTARTS' "(5m ago)") are measured
// from. cell must not modify obj.
type column struct {
	def  metav1.TableColumnDefinition
	cell func(obj runtime.Object, now time.Time) any
}

func stringCol(name, desc string) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: "string", Description: desc}
}

func intCol(name, desc string) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: "integer", Description: desc}
}

// wide marks a column as priority 1: sent always, shown by kubectl only
// with -o wide.
func wide(def metav1.TableColumnDefinition) metav1.TableColumnDefinition {
	def.Priority = 1
	return def
}

var objectMetaDoc = metav1.ObjectMeta{}.SwaggerDoc()

var nameColumn = column{
	def: metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name", Description: objectMetaDoc["name"]},
	cell: func(obj runtime.Object, _ time.Time) any {
		m, _ := meta.Accessor(obj)
		return m.GetName()
	},
}

var ageColumn = column{
	def: stringCol("Age", objectMetaDoc["creationTimestamp"]),
	cell: func(obj runtime.Object, now time.Time) any {
		m, _ := meta.Accessor(obj)
		return since(m.GetCreationTimestamp(), now)
	},
}

// genericColumns are the columns of resources without their own.
var genericColumns = []column{nameColumn, ageColumn}

// orNone is kubectl's rendering of an empty value.
func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// includeObject is the ?includeObject= policy for table rows.
type includeObject string

const (
	includeNone     includeObject = "None"
	includeMetadata includeObject = "Metadata"
	includeFull     includeObject = "Object"
)

func parseIncludeObject(v string) (includeObject, error) {
	switch includeObject(v) {
	case "":
		return includeMetadata, nil
	case includeNone, includeMetadata, includeFull:
		return includeObject(v), nil
	}
	return "", apierrors.NewBadRequest(fmt.Sprintf("includeObject: Unsupported value: %q: supported values: \"Metadata\", \"None\", \"Object\"", v))
}

// The meta.k8s.io/v1 renderings a client may ask for with
// Accept: application/json;as=...;g=meta.k8s.io;v=v1.
const (
	asTable        = "Table"
	asMeta         = "PartialObjectMetadata"
	asMetaList     = "PartialObjectMetadataList"
	asPlainObjects = ""
)

// acceptedAs returns the rendering the Accept header prefers; see negotiate.
func acceptedAs(accept string) string {
	as, _ := negotiate(accept)
	return as
}

// negotiate returns the rendering the Accept header prefers, and whether
// in Kubernetes' protobuf encoding (else JSON): the first acceptable media
// type decides. Plain objects and PartialObjectMetadata[List] come in
// either encoding, Tables in JSON; other renderings, versions and
// encodings fall through to the next choice, and anything else gets JSON,
// which clients accept.
func negotiate(accept string) (as string, protobuf bool) {
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		as := params["as"]
		switch {
		case as == "":
			return asPlainObjects, mt == mediaProtobuf
		case as != asTable && as != asMeta && as != asMetaList, params["g"] != "meta.k8s.io", params["v"] != "v1":
		case mt == "application/json":
			return as, false
		case mt == mediaProtobuf && as != asTable:
			return as, true
		}
	}
	return asPlainObjects, false
}

// table renders objs as a Table with res's columns, every column
// (including the priority-1 wide ones) as kube-apiserver sends them. now is
// the time relative cells (AGE, LAST SEEN) are measured from; withHeaders
// false leaves the column definitions out (every watch event after the
// first).
func table(res *resource, objs []runtime.Object, now time.Time, inc includeObject, withHeaders bool) (*metav1.Table, error) {
	cols := res.columns
	if cols == nil {
		cols = genericColumns
	}
	t := &metav1.Table{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "Table"}, Rows: []metav1.TableRow{}}
	if withHeaders {
		for _, c := range cols {
			t.ColumnDefinitions = append(t.ColumnDefinitions, c.def)
		}
	}
	for _, obj := range objs {
		if _, err := meta.Accessor(obj); err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		row := metav1.TableRow{Cells: make([]any, len(cols))}
		for i, c := range cols {
			row.Cells[i] = c.cell(obj, now)
		}
		if p, ok := obj.(*corev1.Pod); ok {
			row.Conditions = podRowConditions(p)
		}
		var embedded any
		switch inc {
		case includeMetadata:
			embedded = &metav1.PartialObjectMetadata{
				TypeMeta:   metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "PartialObjectMetadata"},
				ObjectMeta: *obj.(metav1.ObjectMetaAccessor).GetObjectMeta().(*metav1.ObjectMeta),
			}
		case includeFull:
			embedded = obj
		}
		if embedded != nil {
			raw, err := json.Marshal(embedded)
			if err != nil {
				return nil, apierrors.NewInternalError(err)
			}
			row.Object.Raw = raw
		}
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}

// since is upstream's translateTimestampSince: the human duration from t
// to now ("5m", "3d4h"), or "<unknown>" for the zero time.
func since(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}
