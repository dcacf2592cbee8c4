package pods

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/skiff-sh/skiff/agent/internal/expansion"
	"github.com/skiff-sh/skiff/agent/internal/volumes"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/agent/internal/containers"
)

// containerSpec turns a pod's container into what the runtime runs:
// environment resolved and $(VAR)s expanded, mounts (volumes and the
// pod's /etc files), resources and security settings.
func (m *Manager) containerSpec(ctx context.Context, pod *corev1.Pod, c *corev1.Container, init bool, attempt int, img containers.Image, paths map[string]string, podIP netip.Addr) (containers.ContainerSpec, error) {
	env, err := m.env(ctx, pod, c, podIP)
	if err != nil {
		return containers.ContainerSpec{}, err
	}
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	mounts, err := m.cfg.Volumes.Mounts(pod, c, paths, vars)
	if err != nil {
		return containers.ContainerSpec{}, err
	}
	podDir := filepath.Join(m.cfg.PodsDir, string(pod.UID))
	taken := map[string]bool{}
	for _, mt := range mounts {
		taken[mt.ContainerPath] = true
	}
	for _, f := range []struct{ file, at string }{{"etc-hosts", "/etc/hosts"}, {"resolv.conf", "/etc/resolv.conf"}, {"hostname", "/etc/hostname"}} {
		if !taken[f.at] {
			mounts = append(mounts, containers.Mount{HostPath: filepath.Join(podDir, f.file), ContainerPath: f.at})
		}
	}
	spec := containers.ContainerSpec{
		PodUID: string(pod.UID), PodNamespace: pod.Namespace, PodName: pod.Name,
		Name: c.Name, Attempt: attempt, Init: init, Image: img,
		Command: expansion.ExpandAll(c.Command, vars), Args: expansion.ExpandAll(c.Args, vars),
		Env: env, WorkingDir: c.WorkingDir, Mounts: mounts,
		TTY: c.TTY, Stdin: c.Stdin, StdinOnce: c.StdinOnce,
		LogPath: m.logPath(pod, c.Name, attempt),
	}
	if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		spec.CPUShares = max(uint64(q.MilliValue())*1024/1000, 2)
	} else if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		spec.CPUShares = max(uint64(q.MilliValue())*1024/1000, 2)
	}
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		spec.CPUQuota = max(q.MilliValue()*100, 1000) // per 100 ms period
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		spec.MemoryLimit = q.Value()
	}
	sc := effectiveSecurity(pod, c)
	spec.RunAsUser, spec.RunAsGroup = sc.RunAsUser, sc.RunAsGroup
	if psc := pod.Spec.SecurityContext; psc != nil {
		// The fsGroup owns the pod's volumes (see volumes); its processes
		// are in it, and in the supplemental groups.
		spec.SupplementalGroups = slices.Clone(psc.SupplementalGroups)
		if psc.FSGroup != nil {
			spec.SupplementalGroups = append(spec.SupplementalGroups, *psc.FSGroup)
		}
	}
	if sc.ReadOnlyRootFilesystem != nil {
		spec.ReadOnlyRootFS = *sc.ReadOnlyRootFilesystem
	}
	if sc.Privileged != nil {
		spec.Privileged = *sc.Privileged
	}
	if sc.Capabilities != nil {
		for _, cp := range sc.Capabilities.Add {
			spec.CapAdd = append(spec.CapAdd, strings.TrimPrefix(string(cp), "CAP_"))
		}
		for _, cp := range sc.Capabilities.Drop {
			spec.CapDrop = append(spec.CapDrop, strings.TrimPrefix(string(cp), "CAP_"))
		}
	}
	return spec, nil
}

// effectiveSecurity merges the pod's security context under the
// container's, as the kubelet does for the fields Skiff supports.
func effectiveSecurity(pod *corev1.Pod, c *corev1.Container) corev1.SecurityContext {
	var out corev1.SecurityContext
	if p := pod.Spec.SecurityContext; p != nil {
		out.RunAsUser, out.RunAsGroup = p.RunAsUser, p.RunAsGroup
	}
	if s := c.SecurityContext; s != nil {
		if s.RunAsUser != nil {
			out.RunAsUser = s.RunAsUser
		}
		if s.RunAsGroup != nil {
			out.RunAsGroup = s.RunAsGroup
		}
		out.ReadOnlyRootFilesystem, out.Privileged, out.Capabilities = s.ReadOnlyRootFilesystem, s.Privileged, s.Capabilities
	}
	return out
}

// env resolves the container's environment in the kubelet's order:
// envFrom sources first, then env entries (later ones win), each value
// with $(VAR) references to earlier variables and to the service
// variables expanded, then the service variables (serviceEnv) the
// container did not set.
func (m *Manager) env(ctx context.Context, pod *corev1.Pod, c *corev1.Container, podIP netip.Addr) ([]string, error) {
	svcVars, err := m.serviceEnv(pod)
	if err != nil {
		return nil, err
	}
	vars := map[string]string{}
	// $(VAR) sees the service variables too, under the container's own.
	scope := maps.Clone(svcVars)
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k], scope[k] = v, v
	}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, err := m.cfg.Client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) && from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional {
					continue
				}
				return nil, fmt.Errorf("configmap %q not found", from.ConfigMapRef.Name)
			}
			for _, k := range sortedKeys(cm.Data) {
				set(from.Prefix+k, cm.Data[k])
			}
		case from.SecretRef != nil:
			s, err := m.cfg.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) && from.SecretRef.Optional != nil && *from.SecretRef.Optional {
					continue
				}
				return nil, fmt.Errorf("secret %q not found", from.SecretRef.Name)
			}
			for _, k := range sortedKeys(s.Data) {
				set(from.Prefix+k, string(s.Data[k]))
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expansion.Expand(e.Value, scope))
			continue
		}
		v, skip, err := m.envValue(ctx, pod, c, e.ValueFrom, podIP)
		if err != nil {
			return nil, err
		}
		if !skip {
			set(e.Name, v)
		}
	}
	// Then the service variables the container did not set itself.
	for _, k := range sortedKeys(svcVars) {
		if _, ok := vars[k]; !ok {
			set(k, svcVars[k])
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out, nil
}

// envValue resolves one valueFrom; skip is set for a missing optional key.
func (m *Manager) envValue(ctx context.Context, pod *corev1.Pod, c *corev1.Container, from *corev1.EnvVarSource, podIP netip.Addr) (v string, skip bool, err error) {
	switch {
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		optional := ref.Optional != nil && *ref.Optional
		cm, err := m.cfg.Client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) && optional {
				return "", true, nil
			}
			return "", false, fmt.Errorf("configmap %q not found", ref.Name)
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if optional {
				return "", true, nil
			}
			return "", false, fmt.Errorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return v, false, nil
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		optional := ref.Optional != nil && *ref.Optional
		s, err := m.cfg.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) && optional {
				return "", true, nil
			}
			return "", false, fmt.Errorf("secret %q not found", ref.Name)
		}
		b, ok := s.Data[ref.Key]
		if !ok {
			if optional {
				return "", true, nil
			}
			return "", false, fmt.Errorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return string(b), false, nil
	case from.FieldRef != nil:
		v, err := m.fieldValue(pod, from.FieldRef.FieldPath, podIP)
		return v, false, err
	case from.ResourceFieldRef != nil:
		v, err := resourceValue(pod, c, from.ResourceFieldRef)
		return v, false, err
	}
	return "", false, errors.New("an env valueFrom with no source")
}

// fieldValue is the downward API's value of a pod field. The pod's
// addresses are the node's and the sandbox's: its status may not have
// them yet.
func (m *Manager) fieldValue(pod *corev1.Pod, path string, podIP netip.Addr) (string, error) {
	switch path {
	case "status.hostIP", "status.hostIPs":
		return m.cfg.NodeIP.String(), nil
	case "status.podIP", "status.podIPs":
		if podIP.IsValid() {
			return podIP.String(), nil
		}
		return "", nil
	}
	return volumes.PodField(pod, path)
}

// resourceValue is the downward API's value of a container resource,
// divided by the divisor and rounded up; an unset limit is the node's
// allocatable (here: the request, or 0 for none), as close as Skiff gets.
func resourceValue(pod *corev1.Pod, c *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	if ref.ContainerName != "" {
		if cc := findContainer(pod, ref.ContainerName, false); cc != nil {
			c = cc
		}
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return "", fmt.Errorf("unsupported resourceFieldRef %q", ref.Resource)
	}
	list := c.Resources.Requests
	if kind == "limits" {
		list = c.Resources.Limits
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok {
		return "0", nil
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if name == "cpu" {
		return strconv.FormatInt((q.MilliValue()+divisor.MilliValue()-1)/divisor.MilliValue(), 10), nil
	}
	return strconv.FormatInt((q.Value()+divisor.Value()-1)/divisor.Value(), 10), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// pullCredentials reads the pod's imagePullSecrets (dockerconfigjson or
// dockercfg) into registry credentials by host.
func (m *Manager) pullCredentials(ctx context.Context, pod *corev1.Pod) (containers.Credentials, error) {
	if len(pod.Spec.ImagePullSecrets) == 0 {
		return nil, nil
	}
	creds := containers.Credentials{}
	var errs []error
	for _, ref := range pod.Spec.ImagePullSecrets {
		s, err := m.cfg.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			errs = append(errs, fmt.Errorf("secret %q: %w", ref.Name, err))
			continue
		}
		if err := parseDockerConfig(s, creds); err != nil {
			errs = append(errs, fmt.Errorf("secret %q: %w", ref.Name, err))
		}
	}
	return creds, errors.Join(errs...)
}

// parseDockerConfig adds the registries of a dockerconfigjson (or legacy
// dockercfg) secret to creds, keyed by registry host.
func parseDockerConfig(s *corev1.Secret, creds containers.Credentials) error {
	type entry struct {
		Username, Password, Auth string
		IdentityToken            string `json:"identitytoken"`
	}
	var auths map[string]entry
	switch s.Type {
	case corev1.SecretTypeDockerConfigJson:
		var cfg struct{ Auths map[string]entry }
		if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
			return err
		}
		auths = cfg.Auths
	case corev1.SecretTypeDockercfg:
		if err := json.Unmarshal(s.Data[corev1.DockerConfigKey], &auths); err != nil {
			return err
		}
	default:
		return fmt.Errorf("type %s is not an image pull secret", s.Type)
	}
	for server, e := range auths {
		if e.Username == "" && e.Auth != "" {
			if raw, err := base64.StdEncoding.DecodeString(e.Auth); err == nil {
				e.Username, e.Password, _ = strings.Cut(string(raw), ":")
			}
		}
		host := server
		if i := strings.Index(host, "://"); i >= 0 {
			host = host[i+3:]
		}
		host, _, _ = strings.Cut(host, "/")
		if host == "index.docker.io" {
			host = "docker.io"
		}
		creds[host] = containers.Auth{Username: e.Username, Password: e.Password, Auth: e.Auth, IdentityToken: e.IdentityToken}
	}
	return nil
}

// podHostname is the pod's hostname: spec.hostname or its name.
func podHostname(pod *corev1.Pod) string {
	if pod.Spec.Hostname != "" {
		return pod.Spec.Hostname
	}
	return pod.Name
}

// writeEtcFiles writes the pod's /etc/hosts, /etc/resolv.conf and
// /etc/hostname, which every container mounts.
func (w *worker) writeEtcFiles(pod *corev1.Pod) error {
	dir := filepath.Join(w.m.cfg.PodsDir, string(w.uid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	host := podHostname(pod)
	var hosts strings.Builder
	if pod.Spec.HostNetwork {
		// The node's own names and hosts file, as the kubelet does.
		var err error
		if host, err = os.Hostname(); err != nil {
			return err
		}
		nodeHosts, err := os.ReadFile(w.m.cfg.HostHostsFile)
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		hosts.WriteString("# Kubernetes-managed hosts file (host network).\n")
		hosts.Write(nodeHosts)
	} else {
		hosts.WriteString("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	}
	if w.ip.IsValid() && !pod.Spec.HostNetwork {
		names := host
		if pod.Spec.Subdomain != "" {
			names = fmt.Sprintf("%s.%s.%s.svc.%s\t%s", host, pod.Spec.Subdomain, pod.Namespace, w.m.cfg.ClusterDomain, host)
		}
		fmt.Fprintf(&hosts, "%s\t%s\n", w.ip, names)
	}
	for _, a := range pod.Spec.HostAliases {
		fmt.Fprintf(&hosts, "\n# Entries added by HostAliases.\n%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
	}
	resolv, err := w.m.resolvConf(pod)
	if err != nil {
		return err
	}
	for name, data := range map[string]string{"etc-hosts": hosts.String(), "resolv.conf": resolv, "hostname": host + "\n"} {
		if err := writeIfChanged(filepath.Join(dir, name), data); err != nil {
			return err
		}
	}
	return nil
}

// resolvConf is the pod's resolver configuration for its dnsPolicy.
func (m *Manager) resolvConf(pod *corev1.Pod) (string, error) {
	hostConf, err := os.ReadFile(m.cfg.HostResolvConf)
	if err != nil && !os.IsNotExist(err) {
		return "", err
	}
	var servers, search, options []string
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	if policy == corev1.DNSClusterFirst && (len(m.cfg.ClusterDNS) == 0 || pod.Spec.HostNetwork) {
		// No cluster DNS, or a pod on the node's network that did not ask
		// for it (ClusterFirstWithHostNet): the host's, as the kubelet.
		policy = corev1.DNSDefault
	}
	switch policy {
	case corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet:
		servers = m.cfg.ClusterDNS
		d := m.cfg.ClusterDomain
		search = []string{pod.Namespace + ".svc." + d, "svc." + d, d}
		options = []string{"ndots:5"}
	case corev1.DNSDefault:
		for _, line := range strings.Split(string(hostConf), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case "nameserver":
				servers = append(servers, f[1])
			case "search":
				search = append(search, f[1:]...)
			case "options":
				options = append(options, f[1:]...)
			}
		}
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		servers = append(servers, dc.Nameservers...)
		search = append(search, dc.Searches...)
		for _, o := range dc.Options {
			if o.Value != nil {
				options = append(options, o.Name+":"+*o.Value)
			} else {
				options = append(options, o.Name)
			}
		}
	}
	var b strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	if len(options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(options, " "))
	}
	return b.String(), nil
}

// writeIfChanged writes data to path unless it holds that already
// (containers bind-mount these files: rewriting in place keeps the inode).
func writeIfChanged(path, data string) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == data {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	return errors.Join(err, f.Close())
}
