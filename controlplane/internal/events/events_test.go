package events_test

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
	"github.com/skiff-sh/skiff/controlplane/internal/events"
)

// TestRecorderWritesEvents records events about a pod and finds them
// through the API the way kubectl describe does: by involvedObject fields.
func TestRecorderWritesEvents(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	pod, err := cs.CoreV1().Pods("default").Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec, stop := events.NewRecorder(cs, "test-controller")
	defer stop()
	rec.Eventf(pod, corev1.EventTypeWarning, "FailedScheduling", "0/%d nodes are available", 3)
	rec.Event(pod, corev1.EventTypeNormal, "Scheduled", "assigned")
	rec.Event(pod, corev1.EventTypeNormal, "Scheduled", "assigned") // aggregated: count 2

	sel := fields.Set{"involvedObject.name": "p", "involvedObject.uid": string(pod.UID)}.AsSelector().String()
	apitest.WaitFor(t, 20*time.Second, "the events", func() error {
		list, err := cs.CoreV1().Events("default").List(t.Context(), metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return err
		}
		got := map[string]corev1.Event{}
		for _, e := range list.Items {
			got[e.Reason] = e
		}
		fs, sch := got["FailedScheduling"], got["Scheduled"]
		if fs.Type != corev1.EventTypeWarning || fs.Message != "0/3 nodes are available" || fs.Source.Component != "test-controller" {
			return fmt.Errorf("FailedScheduling event: got %+v", fs)
		}
		if sch.Count != 2 {
			return fmt.Errorf("Scheduled event count: got %d, want 2", sch.Count)
		}
		return nil
	})
}
