// Package events gives the leader-only components (scheduler, controllers)
// a Kubernetes event recorder that writes core/v1 Events through the API,
// as kube-controller-manager's components do, so `kubectl describe` and
// `kubectl get events` show what they did.
//
//	rec, stop := events.NewRecorder(client, "deployment-controller")
//	defer stop() // in Run, before it returns
//	rec.Eventf(obj, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled up replica set %s to %d", name, n)
//
// Recording never blocks the caller: events are queued, aggregated and
// rate-limited per object (client-go's correlator), and written in the
// background with retries. An event that cannot be written is dropped, as
// in Kubernetes: events are informative, never state.
package events

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// NewRecorder returns a recorder whose events name component as their
// source, and the function that stops it. stop flushes nothing: events
// still queued when it is called may be lost. The caller must call stop
// once it no longer records, at the latest when its Run returns.
func NewRecorder(client kubernetes.Interface, component string) (rec record.EventRecorder, stop func()) {
	b := record.NewBroadcaster()
	w := b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	return b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component}), func() {
		w.Stop()
		b.Shutdown()
	}
}
