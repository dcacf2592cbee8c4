package fieldmanager

import (
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/managedfields"
	smdschema "sigs.k8s.io/structured-merge-diff/v6/schema"
	"sigs.k8s.io/structured-merge-diff/v6/typed"
	"sigs.k8s.io/structured-merge-diff/v6/value"
)

// goTypes is the type converter every Manager uses: the schemas' own
// (applyconfigurations.NewTypeConverter), except that an object of a Go
// type is not validated against its kind's schema when converted. The
// field manager converts the live and the new object of every write; the
// schema walk that checks them was half the cost of a pod status update.
//
// A Go object of a k8s.io/api type cannot break the schema it was
// generated with: its fields are the schema's, typed as it says. What the
// walk would still catch (a list element without its key, two elements
// with one key) the comparison and merge that follow report themselves;
// duplicates were allowed on these conversions anyway. Unstructured
// objects (the configurations of server-side apply) are still validated:
// they come from clients as they are.
type goTypes struct {
	managedfields.TypeConverter
	kinds sync.Map // schema.GroupVersionKind → kindType
}

// kindType is where a kind's type is in the schemas.
type kindType struct {
	schema *smdschema.Schema
	ref    smdschema.TypeRef
}

func newGoTypes(inner managedfields.TypeConverter) *goTypes {
	return &goTypes{TypeConverter: inner}
}

// ObjectToTyped converts obj. The first object of a kind is converted by
// the schemas' converter, validated; that tells where the kind's type is.
func (c *goTypes) ObjectToTyped(obj runtime.Object, opts ...typed.ValidationOptions) (*typed.TypedValue, error) {
	if _, ok := obj.(runtime.Unstructured); ok {
		return c.TypeConverter.ObjectToTyped(obj, opts...)
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	if k, ok := c.kinds.Load(gvk); ok {
		v, err := value.NewValueReflect(obj)
		if err != nil {
			return nil, err
		}
		// Deprecated upstream as "validation is no longer expensive"; it
		// still was 40% of a status update's bookkeeping here
		// (BenchmarkPodStatusUpdate: 112 µs validated, 71 µs not).
		//lint:ignore SA1019 measured: see above
		return typed.AsTypedUnvalidated(v, k.(kindType).schema, k.(kindType).ref), nil
	}
	tv, err := c.TypeConverter.ObjectToTyped(obj, opts...)
	if err == nil {
		c.kinds.Store(gvk, kindType{schema: tv.Schema(), ref: tv.TypeRef()})
	}
	return tv, err
}

var _ managedfields.TypeConverter = (*goTypes)(nil)
