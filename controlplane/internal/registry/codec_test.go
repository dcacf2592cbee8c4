package registry

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestDecodeMatchesSerializer: decode, which unmarshals a stored value of
// the resource's kind in place, gives what the protobuf serializer gives,
// value for value and error for error, also for envelopes it leaves to the
// serializer (another kind, an encoding, a broken value).
func TestDecodeMatchesSerializer(t *testing.T) {
	scheme := testScheme(t)
	if err := appsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c := newCodec(scheme)
	deployments := &Resource{
		GroupResource: appsv1.Resource("deployments"),
		Kind:          appsv1.SchemeGroupVersion.WithKind("Deployment"),
		New:           func() runtime.Object { return &appsv1.Deployment{} },
	}
	encode := func(obj runtime.Object) []byte {
		t.Helper()
		data, err := c.encode(obj)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	pod := benchPod("web-1")
	pod.SetGroupVersionKind(pods.Kind)
	podData := encode(pod)
	replicas := int32(3)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Template: corev1.PodTemplateSpec{Spec: pod.Spec}}}
	dep.SetGroupVersionKind(deployments.Kind)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Data: map[string]string{"k": "v"}}
	cm.SetGroupVersionKind(configMaps.Kind)

	// envelope builds "k8s\x00" + runtime.Unknown from its fields.
	envelope := func(apiVersion, kind string, raw []byte, encoding string) []byte {
		var tm, b []byte
		tm = protowire.AppendTag(tm, 1, protowire.BytesType)
		tm = protowire.AppendString(tm, apiVersion)
		tm = protowire.AppendTag(tm, 2, protowire.BytesType)
		tm = protowire.AppendString(tm, kind)
		b = append(b, protobufPrefix...)
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, tm)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, raw)
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendString(b, encoding)
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendString(b, "")
		return b
	}
	podRaw, err := pod.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		res      *Resource
		data     []byte
		fastPath bool
	}{
		{"pod", pods, podData, true},
		{"deployment", deployments, encode(dep), true},
		{"configmap", configMaps, encode(cm), true},
		{"rebuilt envelope", pods, envelope("v1", "Pod", podRaw, ""), true},
		{"another kind", configMaps, podData, false},
		{"another group", deployments, envelope("apps/v1beta1", "Deployment", podRaw, ""), false},
		{"content encoding", pods, envelope("v1", "Pod", podRaw, "gzip"), false},
		{"broken value", pods, envelope("v1", "Pod", podRaw[:len(podRaw)/2], ""), true},
		{"truncated envelope", pods, podData[:len(podData)-3], false},
		{"not protobuf", pods, []byte(`{"kind":"Pod","apiVersion":"v1"}`), false},
		{"empty", pods, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := storedRaw(tc.data, tc.res.Kind); ok != tc.fastPath {
				t.Errorf("storedRaw ok = %v, want %v", ok, tc.fastPath)
			}
			got, gotErr := c.decode(tc.res, tc.data)
			want, _, wantErr := c.ser.Decode(tc.data, nil, tc.res.New())
			if (gotErr == nil) != (wantErr == nil) {
				t.Fatalf("decode error %v, serializer error %v", gotErr, wantErr)
			}
			if gotErr != nil {
				return
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decode gave\n%#v\nthe serializer\n%#v", got, want)
			}
		})
	}
}
