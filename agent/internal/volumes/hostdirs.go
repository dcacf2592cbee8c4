package volumes

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	corev1 "k8s.io/api/core/v1"
)

// setupEmptyDir creates the emptyDir directory (mode 0777 like the
// kubelet's, so any container user can write) and, for medium Memory,
// mounts a tmpfs on it.
func (m *Manager) setupEmptyDir(pod *corev1.Pod, dir string, src *corev1.EmptyDirVolumeSource) error {
	switch src.Medium {
	case corev1.StorageMediumDefault, corev1.StorageMediumMemory:
	default:
		return fmt.Errorf("%w: emptyDir medium %q", ErrUnsupported, src.Medium)
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	if src.Medium == corev1.StorageMediumMemory {
		if err := mountTmpfs(dir, m.tmpfsSize(pod, src)); err != nil {
			return err
		}
	}
	// MkdirAll's mode is masked by the umask; the tmpfs is mounted mode=0777.
	mode := fs.FileMode(0o777)
	gid, hasGroup := fsGroup(pod)
	if hasGroup {
		mode |= fs.ModeSetgid
	}
	if err := os.Chmod(dir, mode); err != nil {
		return err
	}
	if hasGroup {
		// Once, as with fsGroupChangePolicy OnRootMismatch: Setup runs
		// again and again over what the containers write.
		if cur, err := groupOf(dir); err != nil || cur != gid {
			if err := setGroupOwnership(dir, gid, false); err != nil {
				return fmt.Errorf("fsGroup %d on %s: %w", gid, dir, err)
			}
		}
	}
	return nil
}

// tmpfsSize is the size of a memory-backed emptyDir, as the kubelet sizes
// it: sizeLimit when set, else the pod's memory limit when every container
// has one, else the node's allocatable memory (0 = the kernel's default,
// half the RAM, when unknown).
func (m *Manager) tmpfsSize(pod *corev1.Pod, src *corev1.EmptyDirVolumeSource) int64 {
	if src.SizeLimit != nil && src.SizeLimit.Value() > 0 {
		return src.SizeLimit.Value()
	}
	var sum int64
	limited := len(pod.Spec.Containers) > 0
	for _, c := range pod.Spec.Containers {
		l, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok || l.Value() <= 0 {
			limited = false
			break
		}
		sum += l.Value()
	}
	if limited {
		for _, c := range pod.Spec.InitContainers {
			if l, ok := c.Resources.Limits[corev1.ResourceMemory]; ok && l.Value() > sum {
				sum = l.Value()
			}
		}
		return sum
	}
	if m.cfg.Allocatable != nil {
		if q, ok := m.cfg.Allocatable()[corev1.ResourceMemory]; ok {
			return q.Value()
		}
	}
	return 0
}

// checkHostPath checks (and for the *OrCreate types creates) a hostPath
// volume's path, with the kubelet's error texts.
func checkHostPath(src *corev1.HostPathVolumeSource) error {
	path := src.Path
	var t corev1.HostPathType
	if src.Type != nil {
		t = *src.Type
	}
	switch t {
	case corev1.HostPathUnset:
		return nil
	case corev1.HostPathDirectoryOrCreate:
		if !exists(path) {
			// Like the kubelet: an existing file here is caught by the check below.
			if err := os.MkdirAll(path, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
		}
		return hostPathIs(path, corev1.HostPathDirectory, "directory")
	case corev1.HostPathDirectory:
		return hostPathIs(path, corev1.HostPathDirectory, "directory")
	case corev1.HostPathFileOrCreate:
		if !exists(path) {
			f, err := os.OpenFile(path, os.O_CREATE, 0o644)
			if err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			if f != nil {
				f.Close()
			}
		}
		return hostPathIs(path, corev1.HostPathFile, "file")
	case corev1.HostPathFile:
		return hostPathIs(path, corev1.HostPathFile, "file")
	case corev1.HostPathSocket:
		return hostPathIs(path, corev1.HostPathSocket, "socket file")
	case corev1.HostPathCharDev:
		return hostPathIs(path, corev1.HostPathCharDev, "character device")
	case corev1.HostPathBlockDev:
		return hostPathIs(path, corev1.HostPathBlockDev, "block device")
	default:
		return fmt.Errorf("%s is an invalid volume type", t)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func hostPathIs(path string, want corev1.HostPathType, desc string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("hostPath %s doesn't exist", path)
	}
	if err != nil {
		return fmt.Errorf("hostPath type check failed, %s is not a %s, unable to determine its type: %w", path, desc, err)
	}
	got, err := fileType(fi)
	if err != nil {
		return fmt.Errorf("hostPath type check failed, %s is not a %s, unable to determine its type: %w", path, desc, err)
	}
	if got != want {
		return fmt.Errorf("hostPath type check failed: %s is not a %s, it's a %s", path, desc, got)
	}
	return nil
}

// fileType names a file's type with the HostPathType values.
func fileType(fi os.FileInfo) (corev1.HostPathType, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", errors.New("no stat data")
	}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFSOCK:
		return corev1.HostPathSocket, nil
	case syscall.S_IFBLK:
		return corev1.HostPathBlockDev, nil
	case syscall.S_IFCHR:
		return corev1.HostPathCharDev, nil
	case syscall.S_IFDIR:
		return corev1.HostPathDirectory, nil
	case syscall.S_IFREG:
		return corev1.HostPathFile, nil
	}
	return "", errors.New("only recognise file, directory, socket, block device and character device")
}
