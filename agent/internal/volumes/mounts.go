package volumes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/skiff-sh/skiff/agent/internal/expansion"

	corev1 "k8s.io/api/core/v1"
)

// Mount is one bind mount of a container: HostPath (a directory or file on
// the host) appears at ContainerPath.
type Mount struct {
	HostPath      string
	ContainerPath string
	ReadOnly      bool
}

// ContainerMounts returns the bind mounts for c's volumeMounts, from the
// paths Setup returned. configMap, secret, downwardAPI and projected volumes
// are always read-only (as in the kubelet since CVE-2017-1002102). A subPath
// (or a subPathExpr, expanded with env: $(VAR), $$ for a literal $) names a
// path inside the volume; a missing one is created as a directory with the
// volume's permissions; one that leaves the volume, also through a symlink,
// is refused. The host path of a subPath is returned with symlinks resolved,
// so the runtime mounts what was checked.
func ContainerMounts(pod *corev1.Pod, c *corev1.Container, paths map[string]string, env map[string]string) ([]Mount, error) {
	kinds := make(map[string]*corev1.Volume, len(pod.Spec.Volumes))
	for i := range pod.Spec.Volumes {
		kinds[pod.Spec.Volumes[i].Name] = &pod.Spec.Volumes[i]
	}
	out := make([]Mount, 0, len(c.VolumeMounts))
	for _, vm := range c.VolumeMounts {
		v, ok := kinds[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volumes: container %q mounts volume %q that the pod does not have", c.Name, vm.Name)
		}
		host, ok := paths[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volumes: volume %q is not set up", vm.Name)
		}
		sub := vm.SubPath
		if vm.SubPathExpr != "" {
			sub = expansion.Expand(vm.SubPathExpr, env)
		}
		if sub != "" {
			p, err := subPath(host, sub)
			if err != nil {
				return nil, err
			}
			host = p
		}
		ro := vm.ReadOnly || v.ConfigMap != nil || v.Secret != nil || v.DownwardAPI != nil || v.Projected != nil
		out = append(out, Mount{HostPath: host, ContainerPath: vm.MountPath, ReadOnly: ro})
	}
	return out, nil
}

// subPath resolves sub inside the volume at root, creating it if missing.
// The existing part of the path is resolved and checked before anything is
// created, so a symlink in the volume cannot make Skiff create directories
// elsewhere on the host.
func subPath(root, sub string) (string, error) {
	if filepath.IsAbs(sub) {
		return "", fmt.Errorf("%w: error SubPath `%s` must not be an absolute path", ErrBadPath, sub)
	}
	for _, el := range strings.Split(sub, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w: unable to provision SubPath `%s`: must not contain '..'", ErrBadPath, sub)
		}
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("volumes: subPath %q: %w", sub, err)
	}
	inside := func(p string) bool { return p == realRoot || strings.HasPrefix(p, realRoot+"/") }
	// Split sub into the longest existing prefix and the missing rest.
	existing, missing := filepath.Clean(sub), ""
	for existing != "." {
		if _, err := os.Lstat(filepath.Join(root, existing)); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("volumes: subPath %q: %w", sub, err)
		}
		missing = filepath.Join(filepath.Base(existing), missing)
		existing = filepath.Dir(existing)
	}
	base, err := filepath.EvalSymlinks(filepath.Join(root, existing))
	if err != nil {
		return "", fmt.Errorf("volumes: subPath %q: %w", sub, err)
	}
	if !inside(base) {
		return "", fmt.Errorf("%w: subPath %q resolves to %s, outside the volume", ErrBadPath, sub, base)
	}
	if missing == "" {
		return base, nil
	}
	fi, err := os.Stat(realRoot)
	if err != nil {
		return "", fmt.Errorf("volumes: subPath %q: %w", sub, err)
	}
	perm := fi.Mode().Perm()
	full := filepath.Join(base, missing)
	if err := os.MkdirAll(full, perm); err != nil {
		return "", fmt.Errorf("volumes: create subPath %q: %w", sub, err)
	}
	// MkdirAll's mode is masked by the umask.
	if err := os.Chmod(full, perm); err != nil {
		return "", fmt.Errorf("volumes: create subPath %q: %w", sub, err)
	}
	return full, nil
}
