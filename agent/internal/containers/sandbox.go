package containers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// SandboxSpec describes a pod's sandbox.
type SandboxSpec struct {
	PodUID, Namespace, Name string
	Hostname                string // "" = Name; ignored with HostNetwork
	// HostNetwork: the pod uses the node's network and UTS namespaces
	// (the agent's own); only its IPC namespace is new.
	HostNetwork bool `json:",omitempty"`
}

// Sandbox is a pod's pinned namespaces, shared by its containers.
type Sandbox struct {
	PodUID, Namespace, Name string
	Hostname                string
	HostNetwork             bool
	// Paths of the bind-mounted namespace files, RunDir/sandboxes/<podUID>/{net,ipc,uts};
	// with HostNetwork, NetNS and UTSNS are the agent's own
	// (/proc/<pid>/ns/...), which nothing here ever removes.
	NetNS, IPCNS, UTSNS string
}

// ErrNoSandbox is returned by CreateContainer when the sandbox's
// namespace files are not mounted (removed, or lost with a reboot).
var ErrNoSandbox = errors.New("containers: sandbox namespaces are gone")

const sandboxMeta = "sandbox.json"

var sandboxNamespaces = []string{"net", "ipc", "uts"}

func (r *Runtime) sandboxesDir() string { return filepath.Join(r.cfg.RunDir, "sandboxes") }

func (r *Runtime) sandboxDir(uid string) string { return filepath.Join(r.sandboxesDir(), uid) }

func (r *Runtime) sandboxAt(dir string, spec SandboxSpec) Sandbox {
	sb := Sandbox{
		PodUID: spec.PodUID, Namespace: spec.Namespace, Name: spec.Name, Hostname: spec.Hostname, HostNetwork: spec.HostNetwork,
		NetNS: filepath.Join(dir, "net"), IPCNS: filepath.Join(dir, "ipc"), UTSNS: filepath.Join(dir, "uts"),
	}
	if spec.HostNetwork {
		sb.NetNS = fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
		sb.UTSNS = fmt.Sprintf("/proc/%d/ns/uts", os.Getpid())
		sb.Hostname = ""
	}
	return sb
}

// CreateSandbox creates new network, IPC and UTS namespaces for a pod,
// pins them by bind mounts under RunDir/sandboxes/<podUID>/, sets the
// hostname and brings the loopback interface up; with HostNetwork only
// the IPC namespace is new. It is idempotent per PodUID: an existing
// complete sandbox is returned as it is.
func (r *Runtime) CreateSandbox(ctx context.Context, spec SandboxSpec) (Sandbox, error) {
	if spec.PodUID == "" || strings.ContainsAny(spec.PodUID, "/.") {
		return Sandbox{}, fmt.Errorf("containers: bad pod UID %q", spec.PodUID)
	}
	if spec.Hostname == "" {
		spec.Hostname = spec.Name
	}
	r.sandboxMu.Lock()
	defer r.sandboxMu.Unlock()
	dir := r.sandboxDir(spec.PodUID)
	if sb, err := r.readSandbox(dir); err == nil && sb.pinned() {
		return sb, nil
	}
	// A partial one (crash midway) is redone from scratch.
	if err := r.removeSandbox(spec.PodUID); err != nil {
		return Sandbox{}, err
	}
	if err := r.privateSandboxesMount(); err != nil {
		return Sandbox{}, err
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return Sandbox{}, fmt.Errorf("containers: sandbox: %w", err)
	}
	if err := pinNamespaces(dir, spec.Hostname, spec.HostNetwork); err != nil {
		r.removeSandbox(spec.PodUID)
		return Sandbox{}, fmt.Errorf("containers: sandbox %s/%s: %w", spec.Namespace, spec.Name, err)
	}
	meta, _ := json.Marshal(spec)
	tmp := filepath.Join(dir, sandboxMeta+".tmp")
	if err := os.WriteFile(tmp, meta, 0o644); err != nil {
		r.removeSandbox(spec.PodUID)
		return Sandbox{}, fmt.Errorf("containers: sandbox: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, sandboxMeta)); err != nil {
		r.removeSandbox(spec.PodUID)
		return Sandbox{}, fmt.Errorf("containers: sandbox: %w", err)
	}
	r.log.Info("created sandbox", "pod", spec.Namespace+"/"+spec.Name, "uid", spec.PodUID)
	return r.sandboxAt(dir, spec), nil
}

// Sandboxes lists every sandbox with metadata on disk, complete or not
// (an incomplete one has unmounted namespace files; remove it).
func (r *Runtime) Sandboxes(ctx context.Context) ([]Sandbox, error) {
	ents, err := os.ReadDir(r.sandboxesDir())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("containers: %w", err)
	}
	var out []Sandbox
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		sb, err := r.readSandbox(filepath.Join(r.sandboxesDir(), e.Name()))
		if err != nil {
			continue
		}
		out = append(out, sb)
	}
	return out, nil
}

// RemoveSandbox unmounts and removes a pod's namespace files. It is
// idempotent. Call it after the pod's containers are removed and its
// network is torn down.
func (r *Runtime) RemoveSandbox(ctx context.Context, podUID string) error {
	if podUID == "" || strings.ContainsAny(podUID, "/.") {
		return fmt.Errorf("containers: bad pod UID %q", podUID)
	}
	r.sandboxMu.Lock()
	defer r.sandboxMu.Unlock()
	return r.removeSandbox(podUID)
}

func (r *Runtime) removeSandbox(podUID string) error {
	dir := r.sandboxDir(podUID)
	for _, ns := range sandboxNamespaces {
		p := filepath.Join(dir, ns)
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			return fmt.Errorf("containers: unmount %s: %w", p, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("containers: remove sandbox: %w", err)
	}
	return nil
}

func (r *Runtime) readSandbox(dir string) (Sandbox, error) {
	b, err := os.ReadFile(filepath.Join(dir, sandboxMeta))
	if err != nil {
		return Sandbox{}, err
	}
	var spec SandboxSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return Sandbox{}, err
	}
	return r.sandboxAt(dir, spec), nil
}

// pinned reports whether all namespace files are nsfs mounts.
func (s Sandbox) pinned() bool {
	paths := []string{s.NetNS, s.IPCNS, s.UTSNS}
	if s.HostNetwork {
		paths = []string{s.IPCNS}
	}
	for _, p := range paths {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err != nil || st.Type != unix.NSFS_MAGIC {
			return false
		}
	}
	return true
}

// privateSandboxesMount makes RunDir/sandboxes a private mount of its
// own, so the namespace mounts under it neither propagate to peer mount
// namespaces (which would keep the namespaces alive after RemoveSandbox)
// nor receive mounts from them.
func (r *Runtime) privateSandboxesMount() error {
	dir := r.sandboxesDir()
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("containers: %w", err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("containers: %w", err)
	}
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) > 6 && f[4] == dir {
			return nil // already a mount point (made private below when we mounted it)
		}
	}
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("containers: bind %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("containers: make %s private: %w", dir, err)
	}
	return nil
}

// pinNamespaces creates the namespaces on a dedicated OS thread and bind
// mounts them onto files in dir.
func pinNamespaces(dir, hostname string, hostNetwork bool) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it is in the pod's namespaces, so it
		// must not run other goroutines; it exits with this goroutine.
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread never exits (the runtime parks it instead), and
			// /proc/self/ns names its namespaces: do the work on another
			// thread, which this one, locked and waiting, cannot be.
			inner := make(chan error, 1)
			go func() {
				runtime.LockOSThread()
				inner <- unshareAndPin(dir, hostname, hostNetwork)
			}()
			err := <-inner
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		errc <- unshareAndPin(dir, hostname, hostNetwork)
	}()
	return <-errc
}

// unshareAndPin moves the calling thread, which the caller has locked
// and will discard, into new namespaces and pins them.
func unshareAndPin(dir, hostname string, hostNetwork bool) error {
	if hostNetwork {
		// The node's network and hostname stay as they are.
		if err := unix.Unshare(unix.CLONE_NEWIPC); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		return pin(dir, []string{"ipc"})
	}
	if err := unix.Unshare(unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if err := unix.Sethostname([]byte(hostname)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	if err := pin(dir, sandboxNamespaces); err != nil {
		return err
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// pin bind mounts the calling thread's namespaces named onto files in dir.
func pin(dir string, namespaces []string) error {
	tid := unix.Gettid()
	for _, ns := range namespaces {
		target := filepath.Join(dir, ns)
		f, err := os.OpenFile(target, os.O_CREATE|os.O_RDONLY, 0o444)
		if err != nil {
			return err
		}
		f.Close()
		src := fmt.Sprintf("/proc/%d/task/%d/ns/%s", os.Getpid(), tid, ns)
		if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", src, err)
		}
	}
	return nil
}
