// Package controllerref owns the claiming of pods by a controller that
// selects them by label (DaemonSet, StatefulSet), as upstream's controller
// ref manager does: an index of the pod informer by controller uid, the
// release of owned pods that no longer match, and the adoption of orphans
// that do.
//
//	m := controllerref.New("daemonset.controller", kind, client, logger)
//	err := m.Index(pods.Informer())                    // before the informer starts
//	owned, err := m.Claim(ctx, set, set.Spec.Selector, member) // in each sync
package controllerref

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Manager claims pods for the controllers of one kind. Index must be
// called once before Claim; Claim may then be called from any number of
// goroutines.
type Manager struct {
	index  string
	kind   schema.GroupVersionKind
	what   string // lower-case kind: error prefix and log key
	client kubernetes.Interface
	logger *slog.Logger
	pods   cache.Indexer
}

// New returns a Manager for controllers of kind. index names its index of
// the pod informer and must be unique among the informer's users, as the
// informer may be shared (e.g. "daemonset.controller"). client updates
// pods; logger records adoptions.
func New(index string, kind schema.GroupVersionKind, client kubernetes.Interface, logger *slog.Logger) *Manager {
	return &Manager{index: index, kind: kind, what: strings.ToLower(kind.Kind), client: client, logger: logger}
}

// Index adds the manager's index to the pod informer, which indexes pods
// by the uid of their controller and pods without one by orphanKey of
// their namespace, and reads pods from it from now on.
func (m *Manager) Index(pods cache.SharedIndexInformer) error {
	if err := pods.AddIndexers(cache.Indexers{m.index: controllerUID}); err != nil {
		return err
	}
	m.pods = pods.GetIndexer()
	return nil
}

func controllerUID(obj any) ([]string, error) {
	if p, ok := obj.(*corev1.Pod); ok {
		if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
			return []string{string(ref.UID)}, nil
		}
		return []string{orphanKey(p.Namespace)}, nil
	}
	return nil, nil
}

func orphanKey(ns string) string { return "orphan/" + ns }

// Of returns obj's controller reference when it names a controller of
// kind (kind and API version), else nil.
func Of(obj metav1.Object, kind schema.GroupVersionKind) *metav1.OwnerReference {
	ref := metav1.GetControllerOfNoCopy(obj)
	if ref == nil || ref.Kind != kind.Kind || ref.APIVersion != kind.GroupVersion().String() {
		return nil
	}
	return ref
}

// Claim returns the pods owner controls: those it owns that selector and
// member still match, or that are being deleted. It lets go of the other
// pods it owns (labels changed so that the selector misses them), and
// adopts the orphans in its namespace that match and are not being
// deleted. Both are updates with the cached resourceVersion, so a pod
// changed meanwhile is left for the next sync; the errors of those
// updates are joined, and the pods claimed so far returned with them.
func (m *Manager) Claim(ctx context.Context, owner metav1.Object, selector *metav1.LabelSelector, member func(*corev1.Pod) bool) ([]*corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return nil, fmt.Errorf("%s: selector of %s/%s: %w", m.what, owner.GetNamespace(), owner.GetName(), err)
	}
	owned, err := m.pods.ByIndex(m.index, string(owner.GetUID()))
	if err != nil {
		return nil, err
	}
	orphans, err := m.pods.ByIndex(m.index, orphanKey(owner.GetNamespace()))
	if err != nil {
		return nil, err
	}
	var pods []*corev1.Pod
	var errs []error
	for _, obj := range owned {
		p := obj.(*corev1.Pod)
		if sel.Matches(labels.Set(p.Labels)) && member(p) || p.DeletionTimestamp != nil {
			pods = append(pods, p)
			continue
		}
		c := p.DeepCopy()
		c.OwnerReferences = slices.DeleteFunc(c.OwnerReferences, func(ref metav1.OwnerReference) bool { return ref.UID == owner.GetUID() })
		if _, err := m.client.CoreV1().Pods(c.Namespace).Update(ctx, c, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("%s: release pod %s/%s: %w", m.what, c.Namespace, c.Name, err))
		}
	}
	for _, obj := range orphans {
		p := obj.(*corev1.Pod)
		if p.DeletionTimestamp != nil || !sel.Matches(labels.Set(p.Labels)) || !member(p) {
			continue
		}
		c := p.DeepCopy()
		c.OwnerReferences = append(c.OwnerReferences, *metav1.NewControllerRef(owner, m.kind))
		adopted, err := m.client.CoreV1().Pods(c.Namespace).Update(ctx, c, metav1.UpdateOptions{})
		if err != nil {
			if !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("%s: adopt pod %s/%s: %w", m.what, c.Namespace, c.Name, err))
			}
			continue
		}
		m.logger.Info("adopted pod", m.what, owner.GetNamespace()+"/"+owner.GetName(), "pod", c.Namespace+"/"+c.Name)
		pods = append(pods, adopted)
	}
	return pods, errors.Join(errs...)
}
