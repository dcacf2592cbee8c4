package containers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	ctrcontainers "github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/containerd/pkg/cap"
	"github.com/containerd/containerd/plugin"
	"github.com/moby/sys/signal"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Mount is a host path bind-mounted into a container.
type Mount struct {
	HostPath, ContainerPath string
	ReadOnly                bool
}

// ContainerSpec is one attempt of a pod's container.
type ContainerSpec struct {
	PodUID, PodNamespace, PodName string
	Name                          string // the container's name in the pod
	Attempt                       int    // restart count; one containerd container per attempt
	Init                          bool   // an init container
	Image                         Image  // from EnsureImage
	// Command replaces the image's Entrypoint, Args its Cmd (Kubernetes
	// rules; $(VAR) references already expanded by the caller).
	Command, Args              []string
	Env                        []string // "K=V"; overrides the image's variable of the same name
	WorkingDir                 string
	Mounts                     []Mount
	TTY, Stdin                 bool
	StdinOnce                  bool
	CPUShares                  uint64 // cgroup cpu shares; 0 = default
	CPUQuota                   int64  // µs per 100000 µs period; 0 = none
	MemoryLimit                int64  // bytes; 0 = none
	RunAsUser                  *int64
	RunAsGroup                 *int64
	SupplementalGroups         []int64 // added to the process's groups: the pod's supplementalGroups and fsGroup
	ReadOnlyRootFS, Privileged bool
	CapAdd, CapDrop            []string // "NET_ADMIN" form; "ALL" allowed
	LogPath                    string   // the podlogs file the container's output goes to
}

// State is a container's lifecycle state.
type State string

// The container states.
const (
	StateCreated State = "created"
	StateRunning State = "running"
	StateExited  State = "exited"
	StateUnknown State = "unknown"
)

// ContainerStatus is what the runtime knows of a container; it is
// reconstructed from containerd alone, so it survives agent restarts.
type ContainerStatus struct {
	ID                                  string
	PodUID, PodNamespace, PodName, Name string
	Attempt                             int
	Init                                bool
	State                               State
	CreatedAt, StartedAt, FinishedAt    time.Time
	ExitCode                            int32
	Reason                              string // for exited: "Completed", "Error" or "OOMKilled"
	Image                               Image  // Ref, ID and RepoDigest
	LogPath                             string
}

// ErrNotFound is returned for a container ID containerd does not know.
var ErrNotFound = errors.New("containers: no such container")

// Labels on Skiff's containerd containers.
const (
	labelPodUID     = "skiff.pod.uid"
	labelPodNS      = "skiff.pod.namespace"
	labelPodName    = "skiff.pod.name"
	labelName       = "skiff.container.name"
	labelAttempt    = "skiff.container.attempt"
	labelInit       = "skiff.container.init"
	labelLogPath    = "skiff.container.log-path"
	labelImageRef   = "skiff.image.ref"
	labelImageID    = "skiff.image.id"
	labelRepoDigest = "skiff.image.repo-digest"
	labelStopSignal = "skiff.container.stop-signal"
	labelIO         = "skiff.container.io" // "fifo" for Stdin/TTY containers, else "driver"
	labelStdin      = "skiff.container.stdin"
	labelStdinOnce  = "skiff.container.stdin-once"
	labelStartedAt  = "skiff.container.started-at"
	labelOOM        = "skiff.container.oom-killed"
)

func newID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// processArgs applies the Kubernetes rules: Command replaces the
// entrypoint (and drops the image's Cmd), Args replace the Cmd.
func processArgs(spec ContainerSpec) []string {
	if len(spec.Command) > 0 {
		return slices.Concat(spec.Command, spec.Args)
	}
	if len(spec.Args) > 0 {
		return slices.Concat(spec.Image.Entrypoint, spec.Args)
	}
	return slices.Concat(spec.Image.Entrypoint, spec.Image.Cmd)
}

func capName(c string) string {
	c = strings.ToUpper(c)
	if !strings.HasPrefix(c, "CAP_") {
		c = "CAP_" + c
	}
	return c
}

// capabilityOpts follows the CRI order: ALL in add grants everything, ALL
// in drop clears the default set, then additions, then drops.
func capabilityOpts(add, drop []string) []oci.SpecOpts {
	var opts []oci.SpecOpts
	var adds, drops []string
	for _, c := range add {
		if strings.EqualFold(c, "ALL") {
			opts = append(opts, oci.WithCapabilities(cap.Known()))
			continue
		}
		adds = append(adds, capName(c))
	}
	for _, c := range drop {
		if strings.EqualFold(c, "ALL") {
			opts = append(opts, oci.WithCapabilities(nil))
			continue
		}
		drops = append(drops, capName(c))
	}
	return append(opts, oci.WithAddedCapabilities(adds), oci.WithDroppedCapabilities(drops))
}

func withGroup(gid uint32) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *ctrcontainers.Container, s *oci.Spec) error {
		s.Process.User.GID = gid
		return nil
	}
}

// withAdditionalGIDs adds gids to the process's supplementary groups
// (after the user is set), once each.
func withAdditionalGIDs(gids []int64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *ctrcontainers.Container, s *oci.Spec) error {
		for _, g := range gids {
			if !slices.Contains(s.Process.User.AdditionalGids, uint32(g)) {
				s.Process.User.AdditionalGids = append(s.Process.User.AdditionalGids, uint32(g))
			}
		}
		return nil
	}
}

// specOpts builds the OCI spec of a container in sb.
func specOpts(img containerd.Image, sb Sandbox, spec ContainerSpec) ([]oci.SpecOpts, error) {
	args := processArgs(spec)
	if len(args) == 0 {
		return nil, fmt.Errorf("containers: %s: no command specified", spec.Name)
	}
	opts := []oci.SpecOpts{
		oci.WithImageConfig(img),
		oci.WithProcessArgs(args...),
		oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: sb.NetNS}),
		oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.IPCNamespace, Path: sb.IPCNS}),
		oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.UTSNamespace, Path: sb.UTSNS}),
	}
	if !sb.HostNetwork {
		// runc sets it in the UTS namespace it joins: never the node's.
		opts = append(opts, oci.WithHostname(sb.Hostname))
	}
	if len(spec.Env) > 0 {
		opts = append(opts, oci.WithEnv(spec.Env))
	}
	if spec.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(spec.WorkingDir))
	}
	switch {
	case spec.RunAsUser != nil && spec.RunAsGroup != nil:
		opts = append(opts, oci.WithUIDGID(uint32(*spec.RunAsUser), uint32(*spec.RunAsGroup)))
	case spec.RunAsUser != nil:
		opts = append(opts, oci.WithUserID(uint32(*spec.RunAsUser)))
	case spec.RunAsGroup != nil:
		opts = append(opts, withGroup(uint32(*spec.RunAsGroup)))
	}
	if len(spec.SupplementalGroups) > 0 {
		opts = append(opts, withAdditionalGIDs(spec.SupplementalGroups))
	}
	var mounts []specs.Mount
	for _, m := range spec.Mounts {
		o := []string{"rbind", "rprivate", "rw"}
		if m.ReadOnly {
			o[2] = "ro"
		}
		mounts = append(mounts, specs.Mount{Destination: m.ContainerPath, Source: m.HostPath, Type: "bind", Options: o})
	}
	if len(mounts) > 0 {
		opts = append(opts, oci.WithMounts(mounts))
	}
	if spec.CPUShares > 0 {
		opts = append(opts, oci.WithCPUShares(spec.CPUShares))
	}
	if spec.CPUQuota > 0 {
		opts = append(opts, oci.WithCPUCFS(spec.CPUQuota, 100000))
	}
	if spec.MemoryLimit > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(spec.MemoryLimit)))
	}
	if spec.ReadOnlyRootFS {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	if spec.Privileged {
		opts = append(opts,
			oci.WithCapabilities(cap.Known()),
			oci.WithMaskedPaths(nil),
			oci.WithReadonlyPaths(nil),
			oci.WithWriteableSysfs,
			oci.WithWriteableCgroupfs,
			oci.WithHostDevices,
			oci.WithAllDevicesAllowed)
	} else {
		opts = append(opts, capabilityOpts(spec.CapAdd, spec.CapDrop)...)
	}
	if spec.TTY {
		opts = append(opts, oci.WithTTY)
	}
	return opts, nil
}

// CreateContainer creates (does not start) a container of spec that joins
// sb's network, IPC and UTS namespaces, with its own PID and mount
// namespaces; it returns the container's ID.
func (r *Runtime) CreateContainer(ctx context.Context, sb Sandbox, spec ContainerSpec) (string, error) {
	ctx = r.ctx(ctx)
	if !sb.pinned() {
		return "", fmt.Errorf("%w: pod %s/%s", ErrNoSandbox, sb.Namespace, sb.Name)
	}
	img, err := r.client.GetImage(ctx, spec.Image.Ref)
	if err != nil {
		return "", fmt.Errorf("containers: image %s: %w", spec.Image.Ref, err)
	}
	opts, err := specOpts(img, sb, spec)
	if err != nil {
		return "", err
	}
	io := "driver"
	if spec.Stdin || spec.TTY {
		io = "fifo"
	}
	labels := map[string]string{
		labelPodUID:     spec.PodUID,
		labelPodNS:      spec.PodNamespace,
		labelPodName:    spec.PodName,
		labelName:       spec.Name,
		labelAttempt:    strconv.Itoa(spec.Attempt),
		labelInit:       strconv.FormatBool(spec.Init),
		labelLogPath:    spec.LogPath,
		labelImageRef:   spec.Image.Ref,
		labelImageID:    spec.Image.ID,
		labelRepoDigest: spec.Image.RepoDigest,
		labelStopSignal: spec.Image.StopSignal,
		labelIO:         io,
		labelStdin:      strconv.FormatBool(spec.Stdin),
		labelStdinOnce:  strconv.FormatBool(spec.StdinOnce),
	}
	id := newID()
	_, err = r.client.NewContainer(ctx, id,
		containerd.WithImage(img),
		containerd.WithSnapshotter(r.cfg.Snapshotter),
		containerd.WithNewSnapshot(id, img),
		containerd.WithNewSpec(opts...),
		containerd.WithContainerLabels(labels),
		containerd.WithRuntime(plugin.RuntimeRuncV2, nil))
	if err != nil {
		return "", fmt.Errorf("containers: create %s in pod %s/%s: %w", spec.Name, spec.PodNamespace, spec.PodName, err)
	}
	return id, nil
}

// StartContainer starts a created container's main process, with its
// output going to the container's log path.
func (r *Runtime) StartContainer(ctx context.Context, id string) error {
	ctx = r.ctx(ctx)
	c, err := r.load(ctx, id)
	if err != nil {
		return err
	}
	labels, err := c.Labels(ctx)
	if err != nil {
		return fmt.Errorf("containers: %s: %w", id, err)
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return fmt.Errorf("containers: %s: %w", id, err)
	}
	tty := spec.Process != nil && spec.Process.Terminal
	var (
		creator cio.Creator
		h       *hub
	)
	if labels[labelIO] == "fifo" {
		h, err = r.newHub(id, labels, tty)
		if err != nil {
			return err
		}
		creator = h.creator(r.fifoDir())
	} else {
		arg := driverArg(labels[labelLogPath], r.cfg.LogMaxSize, r.cfg.LogMaxFiles)
		// (A TTY container always has FIFOs, see CreateContainer.)
		creator = cio.BinaryIO(r.cfg.LogDriver, map[string]string{logDriverCommand: arg})
	}
	task, err := c.NewTask(ctx, creator)
	if err != nil {
		if h != nil {
			h.close()
		}
		return fmt.Errorf("containers: start %s: %w", id, err)
	}
	if h != nil {
		h.attached(task)
		r.mu.Lock()
		r.hubs[id] = h
		r.mu.Unlock()
	}
	// Taken before Start returns: a process that exits at once must not
	// look as if it finished before it started.
	startedAt := time.Now().UTC()
	if err := task.Start(ctx); err != nil {
		task.Delete(ctx, containerd.WithProcessKill)
		return fmt.Errorf("containers: start %s: %w", id, err)
	}
	if _, err := c.SetLabels(ctx, map[string]string{labelStartedAt: startedAt.Format(time.RFC3339Nano)}); err != nil {
		return fmt.Errorf("containers: start %s: %w", id, err)
	}
	return nil
}

func (r *Runtime) load(ctx context.Context, id string) (containerd.Container, error) {
	c, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("containers: %s: %w", id, err)
	}
	return c, nil
}

// StopContainer sends the image's stop signal (default SIGTERM) to the
// container's main process, then SIGKILL after grace, and returns once the
// process exited. A container that is not running is left as it is.
func (r *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	ctx = r.ctx(ctx)
	c, err := r.load(ctx, id)
	if err != nil {
		return err
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("containers: stop %s: %w", id, err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		return fmt.Errorf("containers: stop %s: %w", id, err)
	}
	if st.Status == containerd.Stopped {
		return nil
	}
	exited, err := task.Wait(ctx)
	if err != nil {
		return fmt.Errorf("containers: stop %s: %w", id, err)
	}
	sig := syscall.SIGTERM
	if labels, err := c.Labels(ctx); err == nil && labels[labelStopSignal] != "" {
		if s, err := signal.ParseSignal(labels[labelStopSignal]); err == nil {
			sig = s
		}
	}
	if grace > 0 {
		if err := task.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("containers: stop %s: %w", id, err)
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-exited:
			return nil
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("containers: kill %s: %w", id, err)
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RemoveContainer deletes a container, killing it if it still runs, with
// its task and snapshot. Removing an unknown ID is no error.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("containers: remove %s: %w", id, err)
	}
	if task, err := c.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("containers: remove %s: %w", id, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("containers: remove %s: %w", id, err)
	}
	r.mu.Lock()
	h := r.hubs[id]
	delete(r.hubs, id)
	r.mu.Unlock()
	if h != nil {
		h.close()
	}
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("containers: remove %s: %w", id, err)
	}
	if err := os.RemoveAll(filepath.Join(r.fifoDir(), id)); err != nil {
		return fmt.Errorf("containers: remove %s: %w", id, err)
	}
	return nil
}

// Containers lists every Skiff container in the namespace, in any state.
func (r *Runtime) Containers(ctx context.Context) ([]ContainerStatus, error) {
	ctx = r.ctx(ctx)
	cs, err := r.client.Containers(ctx)
	if err != nil {
		return nil, fmt.Errorf("containers: list: %w", err)
	}
	var out []ContainerStatus
	for _, c := range cs {
		st, err := r.status(ctx, c)
		if errors.Is(err, errNotSkiff) || errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// ContainerStatus returns one container's status.
func (r *Runtime) ContainerStatus(ctx context.Context, id string) (ContainerStatus, error) {
	ctx = r.ctx(ctx)
	c, err := r.load(ctx, id)
	if err != nil {
		return ContainerStatus{}, err
	}
	st, err := r.status(ctx, c)
	if errors.Is(err, errNotSkiff) {
		return ContainerStatus{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return st, err
}

var errNotSkiff = errors.New("containers: not a skiff container")

func (r *Runtime) status(ctx context.Context, c containerd.Container) (ContainerStatus, error) {
	info, err := c.Info(ctx)
	if errdefs.IsNotFound(err) {
		return ContainerStatus{}, ErrNotFound
	}
	if err != nil {
		return ContainerStatus{}, fmt.Errorf("containers: %s: %w", c.ID(), err)
	}
	l := info.Labels
	if l[labelPodUID] == "" {
		return ContainerStatus{}, errNotSkiff
	}
	attempt, _ := strconv.Atoi(l[labelAttempt])
	st := ContainerStatus{
		ID:           c.ID(),
		PodUID:       l[labelPodUID],
		PodNamespace: l[labelPodNS],
		PodName:      l[labelPodName],
		Name:         l[labelName],
		Attempt:      attempt,
		Init:         l[labelInit] == "true",
		CreatedAt:    info.CreatedAt,
		Image:        Image{Ref: l[labelImageRef], ID: l[labelImageID], RepoDigest: l[labelRepoDigest], StopSignal: l[labelStopSignal]},
		LogPath:      l[labelLogPath],
		State:        StateCreated,
	}
	if s := l[labelStartedAt]; s != "" {
		st.StartedAt, _ = time.Parse(time.RFC3339Nano, s)
	}
	task, err := c.Task(ctx, nil)
	switch {
	case errdefs.IsNotFound(err):
		if !st.StartedAt.IsZero() {
			// Started once, but the task is gone (containerd lost it, e.g.
			// after a reboot): exited with an unknown code, as the kubelet
			// reports a container it cannot find.
			st.State, st.ExitCode, st.Reason = StateExited, 255, "Error"
		}
		return st, nil
	case err != nil:
		return ContainerStatus{}, fmt.Errorf("containers: %s: %w", c.ID(), err)
	}
	ts, err := task.Status(ctx)
	if errdefs.IsNotFound(err) {
		if !st.StartedAt.IsZero() {
			st.State, st.ExitCode, st.Reason = StateExited, 255, "Error"
		}
		return st, nil
	}
	if err != nil {
		return ContainerStatus{}, fmt.Errorf("containers: %s: %w", c.ID(), err)
	}
	switch ts.Status {
	case containerd.Created:
		st.State = StateCreated
	case containerd.Running, containerd.Paused, containerd.Pausing:
		st.State = StateRunning
	case containerd.Stopped:
		st.State = StateExited
		st.ExitCode = int32(ts.ExitStatus)
		st.FinishedAt = ts.ExitTime
		switch {
		case ts.ExitStatus != 0 && (l[labelOOM] == "true" || r.cgroupOOMKilled(ctx, c)):
			st.Reason = "OOMKilled"
		case ts.ExitStatus == 0:
			st.Reason = "Completed"
		default:
			st.Reason = "Error"
		}
		if st.StartedAt.IsZero() || st.FinishedAt.Before(st.StartedAt) {
			st.StartedAt = st.FinishedAt
		}
	default:
		st.State = StateUnknown
	}
	return st, nil
}

// cgroupOOMKilled reads the OOM kill count of a container's cgroup (v1
// memory controller, or v2), which lasts until its task is deleted; it
// covers an OOM event that was missed or not yet processed.
func (r *Runtime) cgroupOOMKilled(ctx context.Context, c containerd.Container) bool {
	spec, err := c.Spec(ctx)
	if err != nil || spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return false
	}
	for _, f := range []string{
		filepath.Join("/sys/fs/cgroup/memory", spec.Linux.CgroupsPath, "memory.oom_control"),
		filepath.Join("/sys/fs/cgroup", spec.Linux.CgroupsPath, "memory.events"),
	} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, " "); ok && k == "oom_kill" && v != "0" {
				return true
			}
		}
	}
	return false
}

// markOOM records that the kernel's OOM killer hit a container.
func (r *Runtime) markOOM(ctx context.Context, id string) {
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return
	}
	if _, err := c.SetLabels(ctx, map[string]string{labelOOM: "true"}); err != nil {
		r.log.Warn("recording an OOM kill", "container", id, "err", err)
	}
}
