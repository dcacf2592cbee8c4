// Package volumes prepares a pod's volumes on the host, for the container
// runtime to bind-mount into the pod's containers, and removes them again.
//
// Supported sources: emptyDir (on disk, or a tmpfs with medium Memory),
// hostPath (every type, checked or created as the kubelet does), configMap,
// secret, downwardAPI and projected (configMap, secret, downwardAPI and
// serviceAccountToken sources: a token of the pod's service account bound
// to the pod, from the TokenRequest API, renewed at 80% of its lifetime or
// after a day, as the kubelet does). Any other source fails Setup with
// ErrUnsupported.
//
// Layout: every volume but hostPath lives in
// <PodsDir>/<podUID>/volumes/<plugin>/<name>, plugin being the kubelet's
// directory name (kubernetes.io~empty-dir, kubernetes.io~configmap, ...), so
// nothing needs to be remembered in memory: Teardown after an agent restart
// finds everything from the pod UID alone.
//
// A pod's fsGroup owns its emptyDir, configMap, secret, downwardAPI and
// projected volumes as with the kubelet: group read (and write, for
// emptyDir) on every file, setgid directories.
//
// Projected files (configMap, secret, downwardAPI, projected) are written the
// kubelet's way: the files live in a timestamped directory ..<timestamp>, the
// symlink ..data points at it, and each top-level name in the volume is a
// symlink through ..data. An update writes a new timestamped directory and
// renames a new ..data over the old one, so a running container sees either
// the old or the new set of files, never a mix.
//
// Call sequence, per pod:
//
//	m, _ := volumes.New(cfg)
//	paths, err := m.Setup(ctx, pod)          // before the containers; repeatable
//	mounts, err := volumes.ContainerMounts(pod, &c, paths, env) // per container
//	m.Refresh(ctx, pod)                      // periodically and on ConfigMap/Secret changes
//	m.Teardown(ctx, string(pod.UID))         // after the containers are removed; repeatable
//
// Setup, Refresh and Teardown may be called from any goroutine; calls for the
// same pod are serialized.
package volumes
