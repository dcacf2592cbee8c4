package volumes

import (
	"context"
	"fmt"
	"io/fs"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
)

// defaultMode is the API's default for every projected volume's defaultMode.
const defaultMode int32 = 0o644

// project computes and writes the contents of a configMap, secret,
// downwardAPI or projected volume and returns its directory.
func (m *Manager) project(ctx context.Context, pod *corev1.Pod, v *corev1.Volume) (string, error) {
	var (
		plugin  string
		payload map[string]file
		err     error
		memory  bool
	)
	switch {
	case v.ConfigMap != nil:
		plugin = PluginConfigMap
		payload, err = m.configMapPayload(ctx, pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, modeOr(v.ConfigMap.DefaultMode), isTrue(v.ConfigMap.Optional))
	case v.Secret != nil:
		plugin, memory = PluginSecret, true
		payload, err = m.secretPayload(ctx, pod.Namespace, v.Secret.SecretName, v.Secret.Items, modeOr(v.Secret.DefaultMode), isTrue(v.Secret.Optional))
	case v.DownwardAPI != nil:
		plugin = PluginDownwardAPI
		payload, err = m.downwardPayload(pod, v.DownwardAPI.Items, modeOr(v.DownwardAPI.DefaultMode))
	case v.Projected != nil:
		plugin, memory = PluginProjected, true
		payload, err = m.projectedPayload(ctx, pod, v.Name, v.Projected)
	}
	if err != nil {
		return "", err
	}
	gid, hasGroup := fsGroup(pod)
	if hasGroup {
		// Written with the group's read bits, so that an unchanged
		// projection still compares equal to what is on disk.
		for p, f := range payload {
			f.mode |= roMask
			payload[p] = f
		}
	}
	dir := m.VolumePath(string(pod.UID), plugin, v.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if memory && m.cfg.SecretsInMemory {
		if err := mountTmpfs(dir, 0); err != nil {
			return "", err
		}
	}
	changed, err := writeAtomic(dir, payload)
	if err != nil {
		return "", fmt.Errorf("write %s: %w", dir, err)
	}
	if changed {
		m.log.Debug("volume contents written", "pod", pod.Namespace+"/"+pod.Name, "volume", v.Name, "files", len(payload))
	}
	if hasGroup {
		if err := setGroupOwnership(dir, gid, true); err != nil {
			return "", fmt.Errorf("fsGroup %d on %s: %w", gid, dir, err)
		}
	}
	return dir, nil
}

func modeOr(p *int32) int32 {
	if p == nil {
		return defaultMode
	}
	return *p
}

func isTrue(p *bool) bool { return p != nil && *p }

func fileMode(m int32) fs.FileMode { return fs.FileMode(m) & fs.ModePerm }

// getConfigMap fetches a ConfigMap; a missing one is reported as the
// kubelet reports it: `configmap "x" not found`.
func (m *Manager) getConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	if m.cfg.Client == nil {
		return nil, fmt.Errorf("volumes: no API client to read configmap %q", name)
	}
	cm, err := m.cfg.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmap"}, name)
	}
	return cm, err
}

// getSecret is getConfigMap for Secrets: `secret "x" not found`.
func (m *Manager) getSecret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	if m.cfg.Client == nil {
		return nil, fmt.Errorf("volumes: no API client to read secret %q", name)
	}
	s, err := m.cfg.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secret"}, name)
	}
	return s, err
}

func (m *Manager) configMapPayload(ctx context.Context, ns, name string, items []corev1.KeyToPath, mode int32, optional bool) (map[string]file, error) {
	cm, err := m.getConfigMap(ctx, ns, name)
	if err != nil {
		if optional && apierrors.IsNotFound(err) {
			return map[string]file{}, nil
		}
		return nil, err
	}
	data := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return keyPayload(data, items, mode, optional, func(key string) error {
		return fmt.Errorf("configmap references non-existent config key: %s", key)
	})
}

func (m *Manager) secretPayload(ctx context.Context, ns, name string, items []corev1.KeyToPath, mode int32, optional bool) (map[string]file, error) {
	s, err := m.getSecret(ctx, ns, name)
	if err != nil {
		if optional && apierrors.IsNotFound(err) {
			return map[string]file{}, nil
		}
		return nil, err
	}
	data := make(map[string][]byte, len(s.Data)+len(s.StringData))
	for k, v := range s.StringData { // set only on objects never stored; harmless
		data[k] = []byte(v)
	}
	for k, v := range s.Data {
		data[k] = v
	}
	return keyPayload(data, items, mode, optional, func(key string) error {
		return fmt.Errorf("references non-existent secret key: %s", key)
	})
}

// keyPayload maps an object's keys to files: every key under its own name
// without items, else only the listed keys under their paths (a missing key
// is an error unless optional).
func keyPayload(data map[string][]byte, items []corev1.KeyToPath, mode int32, optional bool, missing func(string) error) (map[string]file, error) {
	out := make(map[string]file, len(data))
	if len(items) == 0 {
		for k, v := range data {
			out[k] = file{data: v, mode: fileMode(mode)}
		}
		return out, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return nil, missing(it.Key)
		}
		md := mode
		if it.Mode != nil {
			md = *it.Mode
		}
		out[it.Path] = file{data: v, mode: fileMode(md)}
	}
	return out, nil
}

func (m *Manager) downwardPayload(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, mode int32) (map[string]file, error) {
	out := make(map[string]file, len(items))
	var errs []error
	for _, it := range items {
		var (
			val string
			err error
		)
		switch {
		case it.FieldRef != nil:
			val, err = PodField(pod, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			val, err = m.containerResource(pod, it.ResourceFieldRef)
		default:
			err = fmt.Errorf("downwardAPI item %q has neither fieldRef nor resourceFieldRef", it.Path)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		md := mode
		if it.Mode != nil {
			md = *it.Mode
		}
		out[it.Path] = file{data: []byte(val), mode: fileMode(md)}
	}
	if len(errs) > 0 {
		return nil, utilerrors.NewAggregate(errs)
	}
	return out, nil
}

func (m *Manager) projectedPayload(ctx context.Context, pod *corev1.Pod, volName string, src *corev1.ProjectedVolumeSource) (map[string]file, error) {
	mode := modeOr(src.DefaultMode)
	out := map[string]file{}
	var errs []error
	for _, s := range src.Sources {
		var (
			part map[string]file
			err  error
		)
		switch {
		case s.ConfigMap != nil:
			part, err = m.configMapPayload(ctx, pod.Namespace, s.ConfigMap.Name, s.ConfigMap.Items, mode, isTrue(s.ConfigMap.Optional))
		case s.Secret != nil:
			part, err = m.secretPayload(ctx, pod.Namespace, s.Secret.Name, s.Secret.Items, mode, isTrue(s.Secret.Optional))
		case s.DownwardAPI != nil:
			part, err = m.downwardPayload(pod, s.DownwardAPI.Items, mode)
		case s.ServiceAccountToken != nil:
			part, err = m.tokenPayload(ctx, pod, s.ServiceAccountToken, mode)
		case s.ClusterTrustBundle != nil:
			err = fmt.Errorf("%w: projected clusterTrustBundle", ErrUnsupported)
		case s.PodCertificate != nil:
			err = fmt.Errorf("%w: projected podCertificate", ErrUnsupported)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for p, f := range part {
			out[p] = f
		}
	}
	if len(errs) > 0 {
		return nil, utilerrors.NewAggregate(errs)
	}
	return out, nil
}

// PodField returns a downward API field of the pod in the kubelet's text
// form (labels and annotations as sorted key="value" lines). Environment
// variables (package pods) take the pod's addresses from the sandbox
// rather than from its status, and the rest from here.
func PodField(pod *corev1.Pod, path string) (string, error) {
	if k, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	}
	return "", fmt.Errorf("unsupported fieldPath: %s", path)
}

// subscript parses "prefix['key']".
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"['")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "']")
}

func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(m[k]))
	}
	return b.String()
}

// containerResource returns a container's limit or request divided by the
// divisor and rounded up, as the kubelet writes it; an unset limit is the
// node's allocatable amount.
func (m *Manager) containerResource(pod *corev1.Pod, ref *corev1.ResourceFieldSelector) (string, error) {
	var c *corev1.Container
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == ref.ContainerName {
				c = &list[i]
			}
		}
	}
	if c == nil {
		return "", fmt.Errorf("container %s not found", ref.ContainerName)
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", fmt.Errorf("unsupported container resource : %v", ref.Resource)
	}
	rn := corev1.ResourceName(name)
	var q resource.Quantity
	if kind == "limits" {
		l, ok := c.Resources.Limits[rn]
		if !ok && m.cfg.Allocatable != nil {
			l = m.cfg.Allocatable()[rn]
		}
		q = l
	} else {
		q = c.Resources.Requests[rn]
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if rn == corev1.ResourceCPU {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	}
	if divisor.Value() == 0 {
		return "", fmt.Errorf("invalid divisor %s for %s", divisor.String(), ref.Resource)
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
}
