package volumes

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	corev1 "k8s.io/api/core/v1"
)

// The permissions the pod's fsGroup gets on a volume, as the kubelet
// gives them (SetVolumeOwnership): read, and write unless the volume is
// read-only, on every file; directories are also searchable and setgid,
// so that files created in them belong to the group too.
const (
	roMask   = fs.FileMode(0o440)
	rwMask   = fs.FileMode(0o660)
	execMask = fs.FileMode(0o110)
)

// fsGroup returns the pod's fsGroup, if it has one.
func fsGroup(pod *corev1.Pod) (int64, bool) {
	if sc := pod.Spec.SecurityContext; sc != nil && sc.FSGroup != nil {
		return *sc.FSGroup, true
	}
	return 0, false
}

// setGroupOwnership gives gid every file, directory and link below root
// (root included) with the permissions above. Links are not followed.
func setGroupOwnership(root string, gid int64, readOnly bool) error {
	mask := rwMask
	if readOnly {
		mask = roMask
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info() // of the link itself, for a link
		if err != nil {
			return err
		}
		if int64(info.Sys().(*syscall.Stat_t).Gid) != gid {
			if err := os.Lchown(p, -1, int(gid)); err != nil {
				return err
			}
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		m := mask
		if d.IsDir() {
			m |= fs.ModeSetgid | execMask
		}
		if want := info.Mode() | m; want != info.Mode() {
			return os.Chmod(p, want)
		}
		return nil
	})
}

// groupOf returns the group owning path.
func groupOf(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return int64(fi.Sys().(*syscall.Stat_t).Gid), nil
}
