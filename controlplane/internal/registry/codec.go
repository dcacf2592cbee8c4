package registry

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
)

// codec turns objects into stored values and back.
//
// Values are Kubernetes' protobuf envelope ("k8s\x00" + runtime.Unknown), as
// kube-apiserver stores them in etcd. On a typical running Pod
// (BenchmarkCodecPod) it encodes in 2.5µs against JSON's 8.2µs, decodes in
// 5.2µs against 38µs, and stores 937 bytes against 1827; lists and watches
// decode every value they read, so decode speed matters most. A stored value never carries metadata.resourceVersion:
// that is the key's mod revision, set on the way out.
type codec struct {
	ser *protobuf.Serializer
}

func newCodec(scheme *runtime.Scheme) *codec {
	return &codec{ser: protobuf.NewSerializer(scheme, scheme)}
}

// encode encodes obj, which must have its TypeMeta set.
func (c *codec) encode(obj runtime.Object) ([]byte, error) {
	b, err := EncodeProtobuf(c.ser, obj)
	if err != nil {
		return nil, fmt.Errorf("registry: encode %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, err)
	}
	return b, nil
}

// EncodeProtobuf encodes obj with a protobuf serializer into the one
// slice the serializer allocates for it, without copying it (as writing
// to a bytes.Buffer would: another allocation and copy per object).
func EncodeProtobuf(enc runtime.EncoderWithAllocator, obj runtime.Object) ([]byte, error) {
	var alloc runtime.SimpleAllocator
	var buf sliceWriter
	if err := enc.EncodeWithAllocator(obj, &buf, &alloc); err != nil {
		return nil, err
	}
	return buf.b, nil
}

// decode decodes data into a new object from res.New.
func (c *codec) decode(res *Resource, data []byte) (runtime.Object, error) {
	into := res.New()
	obj, _, err := c.ser.Decode(data, nil, into)
	if err != nil {
		return nil, fmt.Errorf("registry: decode %s: %w", res.GroupResource, err)
	}
	return obj, nil
}

// sliceWriter keeps the one slice the serializer writes (it allocates the
// whole value once), without copying it.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	if w.b == nil {
		w.b = p
	} else {
		w.b = append(w.b[:len(w.b):len(w.b)], p...) // never into the first slice's spare capacity
	}
	return len(p), nil
}
