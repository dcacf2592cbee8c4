package apiserver

// The ServiceAccount admission plugin's token volume: a new pod that
// automounts its service account's token gets the projected volume
// kube-api-access-xxxxx (the token, the cluster CA from kube-root-ca.crt,
// its namespace) mounted read-only at
// /var/run/secrets/kubernetes.io/serviceaccount in every container, where
// client-go's in-cluster configuration reads them.

import (
	"context"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilrand "k8s.io/apimachinery/pkg/util/rand"

	"github.com/skiff-sh/skiff/controlplane/internal/registry"
)

// Where and under which name the token volume goes, and what it holds, as
// upstream.
const (
	TokenMountPath       = "/var/run/secrets/kubernetes.io/serviceaccount"
	tokenVolumePrefix    = "kube-api-access-"
	rootCAConfigMap      = "kube-root-ca.crt"
	mountedTokenSeconds  = 3607 // upstream's "warn only" lifetime of mounted tokens
	projectedDefaultMode = 0o644
)

// admitServiceAccountToken mounts the token volume into a new pod in
// namespace ns, unless the pod (or else its service account) turns
// automountServiceAccountToken off, or every container already mounts
// something at TokenMountPath. The service account is read from the local
// replica; one that does not exist (yet) automounts, and its pod waits on
// its node for the token, where kube-apiserver would refuse the pod.
func (s *Server) admitServiceAccountToken(ctx context.Context, ns string, pod *corev1.Pod) error {
	automount := pod.Spec.AutomountServiceAccountToken
	if automount == nil {
		name := pod.Spec.ServiceAccountName
		if name == "" {
			name = pod.Spec.DeprecatedServiceAccount
		}
		if name == "" {
			name = "default"
		}
		obj, err := s.cfg.Store.Get(ctx, s.byGV["v1"]["serviceaccounts"].reg, ns, name, registry.GetOptions{ResourceVersion: "0"})
		switch {
		case err == nil:
			automount = obj.(*corev1.ServiceAccount).AutomountServiceAccountToken
		case !apierrors.IsNotFound(err):
			return err
		}
	}
	if automount != nil && !*automount {
		return nil
	}
	mountTokenVolume(pod)
	return nil
}

// mountTokenVolume adds the volume (or reuses a kube-api-access-* one the
// pod has) and its mount to every init and app container that has none at
// TokenMountPath.
func mountTokenVolume(pod *corev1.Pod) {
	name := ""
	for _, v := range pod.Spec.Volumes {
		if strings.HasPrefix(v.Name, tokenVolumePrefix) {
			name = v.Name
			break
		}
	}
	hasVolume := name != ""
	if !hasVolume {
		name = tokenVolumePrefix + utilrand.String(5)
	}
	needed := false
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			c := &cs[i]
			mounted := false
			for _, m := range c.VolumeMounts {
				if m.MountPath == TokenMountPath {
					mounted = true
					break
				}
			}
			if !mounted {
				c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: name, ReadOnly: true, MountPath: TokenMountPath})
				needed = true
			}
		}
	}
	if hasVolume || !needed {
		return
	}
	mode, secs := int32(projectedDefaultMode), int64(mountedTokenSeconds)
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: &mode,
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &secs}},
			{ConfigMap: &corev1.ConfigMapProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: rootCAConfigMap},
				Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
			}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}},
			}}},
		},
	}}})
}
