package apiserver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-sh/skiff/controlplane/bootstrap"
	"github.com/skiff-sh/skiff/controlplane/internal/registry"
)

// Node restriction: what kube-apiserver's NodeRestriction admission plugin
// allows a node's agent (user system:node:NAME in group system:nodes) to
// write, beyond what RBAC's system:node role grants every node:
//
//   - its own Node only, without changing its taints, and with no label
//     but those bootstrap.NodeMaySetLabel allows (set, changed or removed);
//   - the status of pods bound to it (not their labels), the deletion and
//     eviction of those pods, and no other pod write but a mirror pod's
//     create;
//   - its own Lease in kube-node-lease, and no other Lease;
//   - service account tokens bound to a pod bound to it.
//
// restrictNode checks what the request says (serveHTTP calls it before
// serving a write); admitNodeWrite checks the objects (Registry.Admit of
// nodes, pods and leases); nodeToken checks a TokenRequest. Requests of
// other users pass untouched.

// mirrorPodAnnotation marks a mirror pod: the API's copy of a node's
// static pod, the only pod a node may create.
const mirrorPodAnnotation = "kubernetes.io/config.mirror"

var (
	nodesResource  = corev1.Resource("nodes")
	podsResource   = corev1.Resource("pods")
	leasesResource = coordinationv1.Resource("leases")
)

// requestingNode returns the name of the node whose agent made the request
// in ctx, and false when its user is not a node.
func (s *Server) requestingNode(ctx context.Context) (string, bool) {
	if s.cfg.UserFrom == nil {
		return "", false
	}
	u, ok := s.cfg.UserFrom(ctx)
	if !ok || !slices.Contains(u.Groups, bootstrap.NodesGroup) || !strings.HasPrefix(u.Name, bootstrap.NodeUserPrefix) {
		return "", false
	}
	name := strings.TrimPrefix(u.Name, bootstrap.NodeUserPrefix)
	return name, name != ""
}

// restrictNode refuses the writes a node may not make, from what the
// request names: the resource, namespace, name (empty for a collection)
// and subresource. Writes it cannot judge without the object are left to
// admitNodeWrite.
func (s *Server) restrictNode(r *http.Request, res *resource, ns, name, sub string) error {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		return nil
	}
	node, ok := s.requestingNode(r.Context())
	if !ok {
		return nil
	}
	forbid := func(gr schema.GroupResource, format string, args ...any) error {
		return apierrors.NewForbidden(gr, name, fmt.Errorf(format, args...))
	}
	switch res.gvr.GroupResource() {
	case nodesResource:
		switch {
		case name == "" && r.Method == http.MethodDelete:
			return forbid(nodesResource, "node %q is not allowed to delete nodes", node)
		case name != "" && name != node:
			return forbid(nodesResource, "node %q is not allowed to modify node %q", node, name)
		}
	case podsResource:
		switch {
		case sub == subLog || sub == subExec || sub == subAttach || sub == subPortForward:
			return nil // connections, which RBAC alone governs
		case name == "" && r.Method == http.MethodPost:
			return nil // a create: admitNodeWrite allows mirror pods
		case name == "":
			return forbid(podsResource, "node %q can only create and delete mirror pods", node)
		case sub == subStatus:
			return nil // admitNodeWrite checks the pod is bound to it
		case sub == "" && r.Method == http.MethodDelete:
			return s.boundTo(r.Context(), res, ns, name, node, "delete")
		case sub == subEviction:
			return s.boundTo(r.Context(), res, ns, name, node, "evict")
		case sub == "":
			return forbid(podsResource, "node %q can only create and delete mirror pods", node)
		default:
			return forbid(podsResource, "node %q cannot write the %s of pods", node, sub)
		}
	case leasesResource:
		switch {
		case ns != corev1.NamespaceNodeLease:
			return forbid(leasesResource, "can only access leases in the %q system namespace", corev1.NamespaceNodeLease)
		case name != "" && name != node:
			return forbid(leasesResource, "can only access node lease with the same name as the requesting node")
		case name == "" && r.Method != http.MethodPost:
			return forbid(leasesResource, "can only access node lease with the same name as the requesting node")
		}
	}
	return nil
}

// boundTo refuses the node's verb on pod ns/name unless the pod is bound
// to node. A pod that does not exist is left to the handler's 404.
func (s *Server) boundTo(ctx context.Context, res *resource, ns, name, node, verb string) error {
	obj, err := s.cfg.Store.Get(ctx, res.reg, ns, name, registry.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if obj.(*corev1.Pod).Spec.NodeName != node {
		return apierrors.NewForbidden(podsResource, name, fmt.Errorf("node %q can only %s pods with spec.nodeName set to itself", node, verb))
	}
	return nil
}

// admitNodeWrite is Registry.Admit of nodes, pods and leases: a node's
// create (old nil) or update of obj, as restrictNode let through.
func (s *Server) admitNodeWrite(ctx context.Context, obj, old runtime.Object) error {
	node, ok := s.requestingNode(ctx)
	if !ok {
		return nil
	}
	switch o := obj.(type) {
	case *corev1.Node:
		if o.Name != node {
			return apierrors.NewForbidden(nodesResource, o.Name, fmt.Errorf("node %q is not allowed to modify node %q", node, o.Name))
		}
		var before *corev1.Node
		if old != nil {
			before = old.(*corev1.Node)
		}
		if before != nil && !equality.Semantic.DeepEqual(o.Spec.Taints, before.Spec.Taints) {
			return apierrors.NewForbidden(nodesResource, o.Name, fmt.Errorf("node %q is not allowed to modify taints", node))
		}
		switch keys := forbiddenLabels(o, before); {
		case len(keys) > 0 && before == nil:
			return apierrors.NewForbidden(nodesResource, o.Name, fmt.Errorf("node %q is not allowed to set the following labels: %s", node, strings.Join(keys, ", ")))
		case len(keys) > 0:
			return apierrors.NewForbidden(nodesResource, o.Name, fmt.Errorf("is not allowed to modify labels: %s", strings.Join(keys, ", ")))
		}
	case *corev1.Pod:
		if old == nil {
			if _, mirror := o.Annotations[mirrorPodAnnotation]; !mirror {
				return apierrors.NewForbidden(podsResource, o.Name, fmt.Errorf("pod does not have %q annotation, node %q can only create mirror pods", mirrorPodAnnotation, node))
			}
			if o.Spec.NodeName != node {
				return apierrors.NewForbidden(podsResource, o.Name, fmt.Errorf("node %q can only create pods with spec.nodeName set to itself", node))
			}
			return nil
		}
		before := old.(*corev1.Pod)
		if before.Spec.NodeName != node {
			return apierrors.NewForbidden(podsResource, o.Name, fmt.Errorf("node %q can only update pod status for pods with spec.nodeName set to itself", node))
		}
		if !maps.Equal(o.Labels, before.Labels) {
			return apierrors.NewForbidden(podsResource, o.Name, fmt.Errorf("node %q cannot update labels through pod status", node))
		}
	case *coordinationv1.Lease:
		if o.Name != node {
			return apierrors.NewForbidden(leasesResource, o.Name, errors.New("can only access node lease with the same name as the requesting node"))
		}
	}
	return nil
}

// forbiddenLabels returns the labels n sets, changes or removes from old
// (nil on a create) that a node may not set on itself
// (bootstrap.NodeMaySetLabel), sorted.
func forbiddenLabels(n, old *corev1.Node) []string {
	var keys []string
	var before map[string]string
	if old != nil {
		before = old.Labels
	}
	for k, v := range n.Labels {
		if was, ok := before[k]; (!ok || was != v) && !bootstrap.NodeMaySetLabel(k) {
			keys = append(keys, k)
		}
	}
	for k := range before {
		if _, ok := n.Labels[k]; !ok && !bootstrap.NodeMaySetLabel(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// nodeToken refuses a node's TokenRequest for service account ns/saName
// unless it is bound to a pod (with its uid) bound to the node.
func (s *Server) nodeToken(ctx context.Context, ns, saName string, tr *authenticationv1.TokenRequest) error {
	node, ok := s.requestingNode(ctx)
	if !ok {
		return nil
	}
	sa := corev1.Resource("serviceaccounts")
	ref := tr.Spec.BoundObjectRef
	if ref == nil || ref.APIVersion != "v1" || ref.Kind != "Pod" || ref.Name == "" {
		return apierrors.NewForbidden(sa, saName, errors.New("node requested token not bound to a pod"))
	}
	if ref.UID == "" {
		return apierrors.NewForbidden(sa, saName, errors.New("node requested token with a pod binding without a uid"))
	}
	pods := s.byGV["v1"]["pods"]
	obj, err := s.cfg.Store.Get(ctx, pods.reg, ns, ref.Name, registry.GetOptions{})
	if err != nil {
		return err
	}
	pod := obj.(*corev1.Pod)
	if pod.UID != ref.UID {
		return apierrors.NewForbidden(sa, saName, boundUIDMismatch(ref))
	}
	if pod.Spec.NodeName != node {
		return apierrors.NewForbidden(sa, saName, errors.New("node requested token bound to a pod scheduled on a different node"))
	}
	return nil
}
