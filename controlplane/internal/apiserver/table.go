package apiserver

import (
	"encoding/json"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

// column is one column of a server-side Table: its definition and how to
// compute its cell (a string or an int64, matching def.Type).
type column struct {
	def  metav1.TableColumnDefinition
	cell func(obj runtime.Object) any
}

func stringCol(name, desc string) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: "string", Description: desc}
}

func intCol(name, desc string) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: "integer", Description: desc}
}

func wide(def metav1.TableColumnDefinition) metav1.TableColumnDefinition {
	def.Priority = 1
	return def
}

var nameColumn = column{
	def: metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
	cell: func(obj runtime.Object) any {
		m, _ := meta.Accessor(obj)
		return m.GetName()
	},
}

// ageColumn's cell is filled by the table builder, which knows the time.
var ageColumn = column{def: stringCol("Age", metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"])}

var genericColumns = []column{nameColumn, ageColumn}

var podColumns = []column{
	nameColumn,
	{def: stringCol("Ready", "The aggregate readiness state of this pod for accepting traffic."), cell: func(obj runtime.Object) any {
		p := obj.(*corev1.Pod)
		ready := 0
		for _, s := range p.Status.ContainerStatuses {
			if s.Ready {
				ready++
			}
		}
		return fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers))
	}},
	{def: stringCol("Status", "The aggregate status of the containers in this pod."), cell: func(obj runtime.Object) any {
		p := obj.(*corev1.Pod)
		switch {
		case p.DeletionTimestamp != nil:
			return "Terminating"
		case p.Status.Reason != "":
			return p.Status.Reason
		}
		return string(p.Status.Phase)
	}},
	{def: stringCol("Restarts", "The number of times the containers in this pod have been restarted."), cell: func(obj runtime.Object) any {
		var n int32
		for _, s := range obj.(*corev1.Pod).Status.ContainerStatuses {
			n += s.RestartCount
		}
		return strconv.Itoa(int(n))
	}},
	ageColumn,
	{def: wide(stringCol("IP", "IP address allocated to the pod.")), cell: func(obj runtime.Object) any {
		return orNone(obj.(*corev1.Pod).Status.PodIP)
	}},
	{def: wide(stringCol("Node", "Name of the node the pod is assigned to.")), cell: func(obj runtime.Object) any {
		return orNone(obj.(*corev1.Pod).Spec.NodeName)
	}},
}

var deploymentColumns = []column{
	nameColumn,
	{def: stringCol("Ready", "Number of the pod with ready state"), cell: func(obj runtime.Object) any {
		d := obj.(*appsv1.Deployment)
		var want int32
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		return fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, want)
	}},
	{def: intCol("Up-to-date", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."), cell: func(obj runtime.Object) any {
		return int64(obj.(*appsv1.Deployment).Status.UpdatedReplicas)
	}},
	{def: intCol("Available", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."), cell: func(obj runtime.Object) any {
		return int64(obj.(*appsv1.Deployment).Status.AvailableReplicas)
	}},
	ageColumn,
}

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

// wantsTable reports whether the Accept header prefers a meta.k8s.io/v1
// Table to the plain object: the first acceptable media type decides.
// Protobuf and other types are answered with JSON, which clients accept.
func wantsTable(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if params["as"] == "Table" {
			if mt == "application/json" && params["g"] == "meta.k8s.io" && params["v"] == "v1" {
				return true
			}
			continue // v1beta1 Tables, or Tables in other encodings: fall through to the next choice
		}
		return false
	}
	return false
}

// table renders objs as a Table with res's columns. now is the time the
// Age cells are relative to; withHeaders false leaves the column
// definitions out (every watch event after the first).
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
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		row := metav1.TableRow{Cells: make([]any, len(cols))}
		for i, c := range cols {
			if c.cell == nil {
				row.Cells[i] = age(m.GetCreationTimestamp(), now)
				continue
			}
			row.Cells[i] = c.cell(obj)
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

// age is kubectl's AGE cell: a human duration since creation.
func age(created metav1.Time, now time.Time) string {
	if created.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(created.Time))
}
