package apiserver

// The pod subresources beyond status and binding: eviction (policy/v1),
// and log, exec, attach and portforward, which the API server proxies to
// the agent of the pod's node.

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/controlplane/internal/registry"
)

const (
	subEviction    = "eviction"
	subLog         = "log"
	subExec        = "exec"
	subAttach      = "attach"
	subPortForward = "portforward"
)

var evictionKind = policyv1.SchemeGroupVersion.WithKind("Eviction")

// DefaultAgentPort is the port of a node's agent endpoint when its Node
// does not say (status.daemonEndpoints.kubeletEndpoint.port), as for the kubelet.
const DefaultAgentPort = 10250

// podSubresources are the pod subresources of discovery, as kube-apiserver
// lists them (alphabetical).
func podSubresources() []subresource {
	createGet := []string{"create", "get"}
	return []subresource{
		{name: subAttach, kind: corev1.SchemeGroupVersion.WithKind("PodAttachOptions"), verbs: createGet},
		{name: subBinding, kind: bindingKind, verbs: []string{"create"}},
		{name: subEviction, kind: evictionKind, verbs: []string{"create"}},
		{name: subExec, kind: corev1.SchemeGroupVersion.WithKind("PodExecOptions"), verbs: createGet},
		{name: subLog, verbs: []string{"get"}},
		{name: subPortForward, kind: corev1.SchemeGroupVersion.WithKind("PodPortForwardOptions"), verbs: createGet},
		{name: subStatus, verbs: getPatchUpdate},
	}
}

// evict serves POST pods/{name}/eviction: once the pod's
// PodDisruptionBudget allows it (spendDisruption, eviction.go), it deletes
// the pod with the eviction's delete options and answers 201 with a
// Success Status.
func (s *Server) evict(w http.ResponseWriter, r *http.Request, res *resource, ns, name string) error {
	dryRun, validation, err := writeParams(r.URL.Query(), createOptionsKind)
	if err != nil {
		return err
	}
	obj, warnings, err := s.decodeBody(w, r, evictionKind, &policyv1.Eviction{}, validation)
	if err != nil {
		return err
	}
	ev := obj.(*policyv1.Eviction)
	if ev.Name != "" && ev.Name != name {
		return apierrors.NewBadRequest("name in URL does not match name in Eviction object")
	}
	opts := registry.DeleteOptions{DryRun: dryRun}
	if o := ev.DeleteOptions; o != nil {
		if opts, err = registryDeleteOptions(o); err != nil {
			return err
		}
		opts.DryRun = opts.DryRun || dryRun
	}
	uid, err := s.spendDisruption(r.Context(), res, ns, name, opts.DryRun)
	if err != nil {
		return err
	}
	if opts.Preconditions == nil {
		opts.Preconditions = &metav1.Preconditions{}
	}
	if opts.Preconditions.UID == nil {
		opts.Preconditions.UID = &uid
	}
	if _, err := s.cfg.Store.Delete(r.Context(), res.reg, ns, name, opts); err != nil {
		return err
	}
	setWarnings(w, warnings)
	writeJSON(w, http.StatusCreated, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: http.StatusCreated})
	return nil
}

// registryDeleteOptions checks the options of a delete as kube-apiserver
// does (422 Invalid DeleteOptions, with its wording) and converts them.
func registryDeleteOptions(o *metav1.DeleteOptions) (registry.DeleteOptions, error) {
	errs := metav1validation.ValidateDeleteOptions(o)
	if g := o.GracePeriodSeconds; g != nil && *g < 0 {
		errs = append(errs, field.Invalid(field.NewPath("gracePeriodSeconds"), *g, "must be greater than or equal to 0"))
	}
	if len(errs) > 0 {
		return registry.DeleteOptions{}, apierrors.NewInvalid(deleteOptionsKind.GroupKind(), "", errs)
	}
	opts := registry.DeleteOptions{Preconditions: o.Preconditions, DryRun: len(o.DryRun) > 0, GracePeriodSeconds: o.GracePeriodSeconds, PropagationPolicy: o.PropagationPolicy}
	//lint:ignore SA1019 the deprecated field still works, as on kube-apiserver
	opts.OrphanDependents = o.OrphanDependents
	return opts, nil
}

// proxyToAgent serves pods/{name}/{log,exec,attach,portforward}: it finds
// the pod's node and forwards the request, upgrades (WebSocket, SPDY) and
// streams included, to that node's agent at the kubelet's paths:
//
//	log          GET /containerLogs/{ns}/{pod}/{container}
//	exec, attach     /{exec,attach}/{ns}/{pod}/{container}
//	portforward      /portForward/{ns}/{pod}
//
// with the request's query. The agent is reached over TLS with the
// transport of Config.AgentTransport.
func (s *Server) proxyToAgent(w http.ResponseWriter, r *http.Request, res *resource, ns, name, sub string) error {
	switch {
	case sub == subLog && r.Method != http.MethodGet,
		sub != subLog && r.Method != http.MethodGet && r.Method != http.MethodPost:
		return methodNotAllowed(r.Method)
	}
	obj, err := s.cfg.Store.Get(r.Context(), res.reg, ns, name, registry.GetOptions{})
	if err != nil {
		return err
	}
	pod := obj.(*corev1.Pod)
	q := r.URL.Query()
	var path string
	if sub == subPortForward {
		path = "/portForward/" + url.PathEscape(ns) + "/" + url.PathEscape(name)
	} else {
		container, err := podContainer(pod, q.Get("container"))
		if err != nil {
			return err
		}
		q.Del("container")
		prefix := map[string]string{subLog: "/containerLogs/", subExec: "/exec/", subAttach: "/attach/"}[sub]
		path = prefix + url.PathEscape(ns) + "/" + url.PathEscape(name) + "/" + url.PathEscape(container)
	}
	if pod.Spec.NodeName == "" {
		if sub == subLog {
			// kube-apiserver: the logs of a pod without a node are empty.
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusOK)
			return nil
		}
		return apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", name))
	}
	nodeObj, err := s.cfg.Store.Get(r.Context(), s.nodes.reg, "", pod.Spec.NodeName, registry.GetOptions{})
	if err != nil {
		return err
	}
	host, err := agentAddress(nodeObj.(*corev1.Node))
	if err != nil {
		return err
	}
	if s.cfg.AgentTransport == nil {
		return apierrors.NewServiceUnavailable("this API server has no credentials for node agents")
	}
	target := &url.URL{Scheme: "https", Host: host, Path: path, RawQuery: q.Encode()}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = target
			pr.Out.Host = host
			// The client's credentials are for us, not for the agent.
			pr.Out.Header.Del("Authorization")
		},
		Transport:     s.cfg.AgentTransport,
		FlushInterval: -1, // logs -f: every write goes out at once
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeError(w, apierrors.NewInternalError(fmt.Errorf("error dialing backend: %w", err)))
		},
	}
	proxy.ServeHTTP(w, r)
	return nil
}

// podContainer returns the container a log, exec or attach request is for:
// the named one, or the only one; errors are kube-apiserver's.
func podContainer(pod *corev1.Pod, name string) (string, error) {
	var names, initNames []string
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	for _, c := range pod.Spec.InitContainers {
		initNames = append(initNames, c.Name)
	}
	if name == "" {
		if len(names) == 1 {
			return names[0], nil
		}
		msg := fmt.Sprintf("a container name must be specified for pod %s, choose one of: %v", pod.Name, names)
		if len(initNames) > 0 {
			msg += fmt.Sprintf(" or one of the init containers: %v", initNames)
		}
		return "", apierrors.NewBadRequest(msg)
	}
	if !slices.Contains(names, name) && !slices.Contains(initNames, name) {
		return "", apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", name, pod.Name))
	}
	return name, nil
}

// agentAddress returns host:port of a node's agent: its InternalIP (else
// its first address) and the port the Node reports.
func agentAddress(n *corev1.Node) (string, error) {
	var ip string
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			ip = a.Address
			break
		}
	}
	if ip == "" && len(n.Status.Addresses) > 0 {
		ip = n.Status.Addresses[0].Address
	}
	if ip == "" {
		return "", apierrors.NewServiceUnavailable(fmt.Sprintf("node %s has no address: its agent cannot be reached", n.Name))
	}
	port := int(n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port == 0 {
		port = DefaultAgentPort
	}
	return net.JoinHostPort(ip, strconv.Itoa(port)), nil
}
