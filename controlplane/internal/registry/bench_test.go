package registry

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func BenchmarkCreateConfigMap(b *testing.B) {
	st, _ := newTestStore(b)
	data := map[string]string{"payload": strings.Repeat("x", 1024)}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := st.Create(b.Context(), configMaps, "default", configMap("default", fmt.Sprintf("cm-%d", i), nil, data), CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkListPods(b *testing.B) {
	st, _ := newTestStore(b)
	const n, writers = 10000, 64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				p := benchPod(fmt.Sprintf("pod-%05d", i))
				if _, err := st.Create(b.Context(), pods, "default", p, CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		list, err := st.List(b.Context(), pods, "", ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if got := len(list.(*corev1.PodList).Items); got != n {
			b.Fatalf("got %d pods, want %d", got, n)
		}
	}
}

// BenchmarkCodecPod compares the two candidate storage encodings on a
// typical scheduled Pod; see codec.
func BenchmarkCodecPod(b *testing.B) {
	scheme := testScheme(b)
	p := benchPod("web-7d4b9c8f6d-x2x9q")
	p.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	jsonSer := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{})
	codecs := []struct {
		name   string
		encode func(runtime.Object) ([]byte, error)
		decode func([]byte) error
	}{
		{"protobuf", newCodec(scheme).encode, func(d []byte) error {
			_, err := newCodec(scheme).decode(pods, d)
			return err
		}},
		{"json", func(o runtime.Object) ([]byte, error) {
			var buf bytes.Buffer
			err := jsonSer.Encode(o, &buf)
			return buf.Bytes(), err
		}, func(d []byte) error {
			_, _, err := jsonSer.Decode(d, nil, &corev1.Pod{})
			return err
		}},
	}
	for _, c := range codecs {
		data, err := c.encode(p)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name+"/encode", func(b *testing.B) {
			for b.Loop() {
				if _, err := c.encode(p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(data)), "stored-bytes")
		})
		b.Run(c.name+"/decode", func(b *testing.B) {
			for b.Loop() {
				if err := c.decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchPod is a Pod of the size a Deployment's pods have once scheduled and
// running.
func benchPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "default", UID: "0d4a3b0e-2b71-4b69-9d0c-6c3c2f1f8a11",
			Labels:            map[string]string{"app": "web", "pod-template-hash": "7d4b9c8f6d"},
			Annotations:       map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-01-02T03:04:05Z"},
			CreationTimestamp: metav1.Now().Rfc3339Copy(),
			OwnerReferences:   []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d4b9c8f6d", UID: "5e1f7c2a-1111-4b69-9d0c-6c3c2f1f8a11"}},
		},
		Spec: corev1.PodSpec{
			NodeName: "worker-1", RestartPolicy: corev1.RestartPolicyAlways, DNSPolicy: corev1.DNSClusterFirst,
			SchedulerName: "default-scheduler", ServiceAccountName: "default",
			Containers: []corev1.Container{{
				Name: "web", Image: "nginx:1.27", ImagePullPolicy: corev1.PullIfNotPresent,
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP}},
				Env:   []corev1.EnvVar{{Name: "MODE", Value: "production"}, {Name: "LOG_LEVEL", Value: "info"}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
				},
				ReadinessProbe:         &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstrPort(80)}}, PeriodSeconds: 10},
				VolumeMounts:           []corev1.VolumeMount{{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
				TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			}},
			Volumes: []corev1.Volume{{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}},
			}}}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.244.1.17", HostIP: "192.168.1.11", QOSClass: corev1.PodQOSBurstable,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.PodScheduled, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "web", Ready: true, Image: "nginx:1.27", ImageID: "docker.io/library/nginx@sha256:0123456789abcdef",
				ContainerID: "containerd://0123456789abcdef", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}},
		},
	}
}

func intstrPort(p int32) intstr.IntOrString { return intstr.FromInt32(p) }
