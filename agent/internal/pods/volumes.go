package pods

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-sh/skiff/agent/internal/containers"
	"github.com/skiff-sh/skiff/agent/internal/volumes"
)

// VolumesAdapter makes a *volumes.Manager the Volumes of a Manager.
type VolumesAdapter struct{ *volumes.Manager }

// Mounts returns the bind mounts of container c.
func (a VolumesAdapter) Mounts(pod *corev1.Pod, c *corev1.Container, paths map[string]string, env map[string]string) ([]containers.Mount, error) {
	ms, err := volumes.ContainerMounts(pod, c, paths, env)
	if err != nil {
		return nil, err
	}
	out := make([]containers.Mount, len(ms))
	for i, m := range ms {
		out[i] = containers.Mount{HostPath: m.HostPath, ContainerPath: m.ContainerPath, ReadOnly: m.ReadOnly}
	}
	return out, nil
}
