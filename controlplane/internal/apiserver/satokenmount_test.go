package apiserver

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestServiceAccountTokenMount creates pods through the API with the
// ServiceAccount admission on and checks the token volume they get.
func TestServiceAccountTokenMount(t *testing.T) {
	_, ts := startAPIServerWith(t, func(c *Config) { c.ServiceAccountAdmission = true })
	api := ts.URL + "/api/v1/namespaces/default"
	mustDo(t, http.StatusCreated, "POST", api+"/serviceaccounts", "application/json", `{"metadata":{"name":"quiet"},"automountServiceAccountToken":false}`, nil)
	create := func(body string) *corev1.Pod {
		t.Helper()
		var pod corev1.Pod
		mustDo(t, http.StatusCreated, "POST", api+"/pods", "application/json", body, &pod)
		return &pod
	}
	tokenVolume := func(pod *corev1.Pod) *corev1.Volume {
		for i, v := range pod.Spec.Volumes {
			if strings.HasPrefix(v.Name, "kube-api-access-") {
				return &pod.Spec.Volumes[i]
			}
		}
		return nil
	}

	pod := create(`{"metadata":{"name":"p1"},"spec":{"initContainers":[{"name":"init","image":"busybox"}],"containers":[{"name":"a","image":"busybox"},{"name":"b","image":"busybox"}]}}`)
	v := tokenVolume(pod)
	if v == nil || len(v.Name) != len("kube-api-access-")+5 || v.Projected == nil {
		t.Fatalf("pod p1: got volumes %+v, want a projected kube-api-access-xxxxx", pod.Spec.Volumes)
	}
	got, _ := json.Marshal(v.Projected)
	want := `{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},` +
		`{"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}},` +
		`{"downwardAPI":{"items":[{"path":"namespace","fieldRef":{"apiVersion":"v1","fieldPath":"metadata.namespace"}}]}}],"defaultMode":420}`
	if string(got) != want {
		t.Errorf("projected source:\ngot  %s\nwant %s", got, want)
	}
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		if n := len(c.VolumeMounts); n != 1 || !reflect.DeepEqual(c.VolumeMounts[0], corev1.VolumeMount{Name: v.Name, ReadOnly: true, MountPath: TokenMountPath}) {
			t.Errorf("container %s: got mounts %+v", c.Name, c.VolumeMounts)
		}
	}

	for _, tt := range []struct{ name, body string }{
		{"pod opts out", `{"metadata":{"name":"p2"},"spec":{"automountServiceAccountToken":false,"containers":[{"name":"a","image":"busybox"}]}}`},
		{"account opts out", `{"metadata":{"name":"p3"},"spec":{"serviceAccountName":"quiet","containers":[{"name":"a","image":"busybox"}]}}`},
		{"every container mounts the path itself", `{"metadata":{"name":"p4"},"spec":{"volumes":[{"name":"mine","emptyDir":{}}],
			"containers":[{"name":"a","image":"busybox","volumeMounts":[{"name":"mine","mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}]}]}}`},
	} {
		if pod := create(tt.body); tokenVolume(pod) != nil {
			t.Errorf("%s: got volumes %+v, want no token volume", tt.name, pod.Spec.Volumes)
		}
	}
	// The pod's own setting wins over its account's.
	if pod := create(`{"metadata":{"name":"p5"},"spec":{"serviceAccountName":"quiet","automountServiceAccountToken":true,"containers":[{"name":"a","image":"busybox"}]}}`); tokenVolume(pod) == nil {
		t.Errorf("a pod opting in under an account opting out: got no token volume")
	}
	// A pod that brings a kube-api-access volume keeps it, mounted where missing.
	pod = create(`{"metadata":{"name":"p6"},"spec":{"volumes":[{"name":"kube-api-access-mine","emptyDir":{}}],"containers":[{"name":"a","image":"busybox"}]}}`)
	if len(pod.Spec.Volumes) != 1 || pod.Spec.Containers[0].VolumeMounts[0].Name != "kube-api-access-mine" {
		t.Errorf("pod with its own kube-api-access volume: got %+v, mounts %+v", pod.Spec.Volumes, pod.Spec.Containers[0].VolumeMounts)
	}
}
