package volumes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
)

// Plugin directory names under <pod dir>/volumes, as the kubelet names them.
const (
	PluginEmptyDir    = "kubernetes.io~empty-dir"
	PluginConfigMap   = "kubernetes.io~configmap"
	PluginSecret      = "kubernetes.io~secret"
	PluginDownwardAPI = "kubernetes.io~downward-api"
	PluginProjected   = "kubernetes.io~projected"
)

// ErrUnsupported is returned (wrapped in a *SetupError) by Setup for a volume
// source Skiff does not implement (persistentVolumeClaim, nfs, csi, ...).
var ErrUnsupported = errors.New("volumes: unsupported volume source")

// ErrBadPath is returned for a projected item path or a subPath that is
// absolute or leaves its volume.
var ErrBadPath = errors.New("volumes: path must be relative and stay inside the volume")

// SetupError is the failure of one volume; its text is the kubelet's
// FailedMount event message, e.g.
// `MountVolume.SetUp failed for volume "cfg" : configmap "x" not found`.
type SetupError struct {
	Volume string
	Err    error
}

func (e *SetupError) Error() string {
	return fmt.Sprintf("MountVolume.SetUp failed for volume %q : %v", e.Volume, e.Err)
}

func (e *SetupError) Unwrap() error { return e.Err }

// Config configures a Manager.
type Config struct {
	// Client reads ConfigMaps and Secrets (get only). Required when a pod
	// uses configMap, secret or projected volumes.
	Client kubernetes.Interface
	// PodsDir is <agent data dir>/pods.
	PodsDir string
	// SecretsInMemory puts secret and projected volumes on a tmpfs, as the
	// kubelet does, so secrets never reach the disk. Needs root.
	SecretsInMemory bool
	// Allocatable returns the node's allocatable resources; a downwardAPI
	// resourceFieldRef to a limit the container does not set reports it, as
	// the kubelet does. Nil: such a limit reads as 0.
	Allocatable func() corev1.ResourceList
	Logger      *slog.Logger
}

// DefaultConfig returns a Config for the data dir /var/lib/skiff/agent.
func DefaultConfig() Config {
	return Config{
		PodsDir:         "/var/lib/skiff/agent/pods",
		SecretsInMemory: true,
		Logger:          slog.Default(),
	}
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	if c.PodsDir == "" {
		return errors.New("volumes: PodsDir is required")
	}
	if !filepath.IsAbs(c.PodsDir) {
		return fmt.Errorf("volumes: PodsDir %q must be absolute", c.PodsDir)
	}
	return nil
}

// Manager sets up and tears down pods' volumes. It keeps no state about
// pods beyond per-pod locks: everything is on disk.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	locks map[string]*podLock
	// tokens are the service account tokens of projected volumes.
	tokens tokenCache
}

type podLock struct {
	sync.Mutex
	users int
}

// New returns a Manager; it creates PodsDir.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.PodsDir, 0o750); err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	return &Manager{cfg: cfg, log: cfg.Logger, locks: map[string]*podLock{}}, nil
}

// lock serializes the calls for one pod; the returned func unlocks.
func (m *Manager) lock(uid string) func() {
	m.mu.Lock()
	l := m.locks[uid]
	if l == nil {
		l = &podLock{}
		m.locks[uid] = l
	}
	l.users++
	m.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		m.mu.Lock()
		l.users--
		if l.users == 0 {
			delete(m.locks, uid)
		}
		m.mu.Unlock()
	}
}

// PodVolumesDir returns <PodsDir>/<uid>/volumes.
func (m *Manager) PodVolumesDir(uid string) string {
	return filepath.Join(m.cfg.PodsDir, uid, "volumes")
}

// VolumePath returns where a volume of the given plugin lives for the pod.
func (m *Manager) VolumePath(uid, plugin, name string) string {
	return filepath.Join(m.PodVolumesDir(uid), plugin, name)
}

// Setup prepares every volume of the pod and returns volume name → host
// path (for hostPath volumes the path itself). It is idempotent: calling it
// again re-checks hostPaths and re-projects configMap/secret/downwardAPI
// contents (switching ..data only when they changed). Volumes that fail
// are missing from the map and reported as *SetupError values joined into
// the returned error; the others are ready.
func (m *Manager) Setup(ctx context.Context, pod *corev1.Pod) (map[string]string, error) {
	uid := string(pod.UID)
	if uid == "" {
		return nil, errors.New("volumes: pod has no UID")
	}
	defer m.lock(uid)()
	paths := make(map[string]string, len(pod.Spec.Volumes))
	var errs []error
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if err := ctx.Err(); err != nil {
			return paths, err
		}
		p, err := m.setupOne(ctx, pod, v)
		if err != nil {
			errs = append(errs, &SetupError{Volume: v.Name, Err: err})
			continue
		}
		paths[v.Name] = p
	}
	return paths, errors.Join(errs...)
}

func (m *Manager) setupOne(ctx context.Context, pod *corev1.Pod, v *corev1.Volume) (string, error) {
	uid := string(pod.UID)
	switch {
	case v.EmptyDir != nil:
		dir := m.VolumePath(uid, PluginEmptyDir, v.Name)
		return dir, m.setupEmptyDir(pod, dir, v.EmptyDir)
	case v.HostPath != nil:
		return v.HostPath.Path, checkHostPath(v.HostPath)
	case v.ConfigMap != nil, v.Secret != nil, v.DownwardAPI != nil, v.Projected != nil:
		return m.project(ctx, pod, v)
	default:
		return "", fmt.Errorf("%w: %s", ErrUnsupported, sourceKind(v))
	}
}

// Refresh re-projects the pod's configMap, secret, downwardAPI and
// projected volumes from the current objects (and the given pod, for
// downwardAPI), switching ..data only for volumes whose content changed.
// Volumes of a pod that was never set up, or already torn down, are left
// alone. Errors are *SetupError values joined.
func (m *Manager) Refresh(ctx context.Context, pod *corev1.Pod) error {
	uid := string(pod.UID)
	if uid == "" {
		return errors.New("volumes: pod has no UID")
	}
	defer m.lock(uid)()
	if _, err := os.Stat(m.PodVolumesDir(uid)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("volumes: %w", err)
	}
	var errs []error
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if v.ConfigMap == nil && v.Secret == nil && v.DownwardAPI == nil && v.Projected == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := m.project(ctx, pod, v); err != nil {
			errs = append(errs, &SetupError{Volume: v.Name, Err: err})
		}
	}
	return errors.Join(errs...)
}

// Teardown unmounts every mount under the pod's volumes directory (tmpfs
// emptyDirs and secret volumes) and removes the directory; it removes the
// pod directory too when nothing else is left in it. It needs only the UID,
// so it works after an agent restart, and is idempotent. It refuses to
// remove anything while a mount remains below the directory.
func (m *Manager) Teardown(ctx context.Context, podUID string) error {
	if podUID == "" || filepath.Base(podUID) != podUID || podUID == "." || podUID == ".." {
		return fmt.Errorf("volumes: bad pod UID %q", podUID)
	}
	defer m.lock(podUID)()
	dir := m.PodVolumesDir(podUID)
	if err := unmountAllUnder(dir); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("volumes: remove %s: %w", dir, err)
	}
	// The pod dir may hold the lead's files too; remove it only when empty.
	if err := os.Remove(filepath.Join(m.cfg.PodsDir, podUID)); err != nil && !errors.Is(err, os.ErrNotExist) && !isNotEmpty(err) {
		return fmt.Errorf("volumes: %w", err)
	}
	m.tokens.forget(podUID)
	m.log.Debug("volumes torn down", "podUID", podUID)
	return nil
}

func sourceKind(v *corev1.Volume) string {
	s := v.VolumeSource
	switch {
	case s.PersistentVolumeClaim != nil:
		return "persistentVolumeClaim"
	case s.Ephemeral != nil:
		return "ephemeral"
	case s.NFS != nil:
		return "nfs"
	case s.CSI != nil:
		return "csi"
	case s.Image != nil:
		return "image"
	case s.ISCSI != nil:
		return "iscsi"
	case s.GitRepo != nil:
		return "gitRepo"
	default:
		return "unknown"
	}
}
