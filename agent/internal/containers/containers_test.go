package containers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestProcessArgs(t *testing.T) {
	img := Image{Entrypoint: []string{"/ep"}, Cmd: []string{"c1", "c2"}}
	tests := []struct {
		name          string
		command, args []string
		want          []string
	}{
		{"image defaults", nil, nil, []string{"/ep", "c1", "c2"}},
		{"args replace cmd", nil, []string{"a"}, []string{"/ep", "a"}},
		{"command drops cmd", []string{"/bin/x"}, nil, []string{"/bin/x"}},
		{"command and args", []string{"/bin/x"}, []string{"a", "b"}, []string{"/bin/x", "a", "b"}},
	}
	for _, tt := range tests {
		got := processArgs(ContainerSpec{Image: img, Command: tt.command, Args: tt.args})
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

// podFixture is a sandbox and an image for container tests.
type podFixture struct {
	r   *Runtime
	cfg Config
	sb  Sandbox
	img Image
	dir string
}

func newPod(t *testing.T) *podFixture {
	t.Helper()
	r, cfg := newTestRuntime(t)
	img := importImage(t, r, testImage{Name: "skiff.test/busybox:1", Cmd: []string{"sh", "-c", "echo default-cmd"}, Env: []string{"FROM_IMAGE=img", "OVER=img"}})
	uid := fmt.Sprintf("pod-%d", time.Now().UnixNano())
	sb, err := r.CreateSandbox(t.Context(), SandboxSpec{PodUID: uid, Namespace: "ns1", Name: "pod1", Hostname: "pod1-host"})
	if err != nil {
		t.Fatal(err)
	}
	return &podFixture{r: r, cfg: cfg, sb: sb, img: img, dir: t.TempDir()}
}

func (p *podFixture) spec(name string, cmd ...string) ContainerSpec {
	return ContainerSpec{
		PodUID: p.sb.PodUID, PodNamespace: p.sb.Namespace, PodName: p.sb.Name,
		Name: name, Image: p.img, Command: cmd,
		LogPath: filepath.Join(p.dir, "logs", name, "0.log"),
	}
}

// run creates and starts a container and waits until it exited.
func (p *podFixture) run(t *testing.T, spec ContainerSpec) ContainerStatus {
	t.Helper()
	id := p.start(t, spec)
	return p.waitExited(t, id)
}

func (p *podFixture) start(t *testing.T, spec ContainerSpec) string {
	t.Helper()
	id, err := p.r.CreateContainer(t.Context(), p.sb, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.r.StartContainer(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	return id
}

func (p *podFixture) waitExited(t *testing.T, id string) ContainerStatus {
	t.Helper()
	var st ContainerStatus
	waitFor(t, 20*time.Second, "container exit", func() (bool, error) {
		var err error
		st, err = p.r.ContainerStatus(t.Context(), id)
		return err == nil && st.State == StateExited, err
	})
	return st
}

// waitLog waits until the log at path holds want (as "stream:content" records).
func waitLog(t *testing.T, path string, want ...string) []string {
	t.Helper()
	var got []string
	waitFor(t, 10*time.Second, fmt.Sprintf("log records %q", want), func() (bool, error) {
		var err error
		got, err = logContents(path)
		for _, w := range want {
			if !slices.Contains(got, w) {
				return false, fmt.Errorf("have %q (%v)", got, err)
			}
		}
		return true, nil
	})
	return got
}

func TestContainerRunsAndExits(t *testing.T) {
	p := newPod(t)
	go p.r.Run(t.Context())
	spec := p.spec("main", "sh", "-c", `echo out-$FROM_IMAGE-$OVER-$MINE; echo err >&2; pwd; hostname; exit 3`)
	spec.Env = []string{"OVER=spec", "MINE=m"}
	spec.WorkingDir = "/tmp"
	spec.Attempt = 2
	spec.Init = true
	id, err := p.r.CreateContainer(t.Context(), p.sb, spec)
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.r.ContainerStatus(t.Context(), id)
	if err != nil || st.State != StateCreated {
		t.Fatalf("after create: got %+v, %v; want created", st, err)
	}
	if err := p.r.StartContainer(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	// Run feeds Exits.
	waitFor(t, 20*time.Second, "exit event", func() (bool, error) {
		select {
		case got := <-p.r.Exits():
			return got == id, nil
		default:
			return false, nil
		}
	})
	st = p.waitExited(t, id)
	want := ContainerStatus{ID: id, PodUID: p.sb.PodUID, PodNamespace: "ns1", PodName: "pod1", Name: "main",
		Attempt: 2, Init: true, State: StateExited, ExitCode: 3, Reason: "Error", LogPath: spec.LogPath}
	if st.ID != want.ID || st.PodUID != want.PodUID || st.PodNamespace != want.PodNamespace || st.PodName != want.PodName ||
		st.Name != want.Name || st.Attempt != want.Attempt || st.Init != want.Init || st.State != want.State ||
		st.ExitCode != want.ExitCode || st.Reason != want.Reason || st.LogPath != want.LogPath {
		t.Errorf("got status %+v, want %+v", st, want)
	}
	if st.Image.ID != p.img.ID || st.Image.RepoDigest != p.img.RepoDigest || st.Image.Ref != p.img.Ref {
		t.Errorf("got image %+v, want %+v", st.Image, p.img)
	}
	if st.CreatedAt.IsZero() || st.StartedAt.IsZero() || st.FinishedAt.Before(st.StartedAt) {
		t.Errorf("times: created %v started %v finished %v", st.CreatedAt, st.StartedAt, st.FinishedAt)
	}
	waitLog(t, spec.LogPath, "stdout:out-img-spec-m", "stderr:err", "stdout:/tmp", "stdout:pod1-host")

	all, err := p.r.Containers(t.Context())
	if err != nil || len(all) != 1 || all[0].ID != id {
		t.Errorf("Containers: got %+v, %v; want just %s", all, err, id)
	}
	for range 2 {
		if err := p.r.RemoveContainer(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	if all, _ := p.r.Containers(t.Context()); len(all) != 0 {
		t.Errorf("after remove: %+v", all)
	}
	if _, err := p.r.ContainerStatus(t.Context(), id); err == nil {
		t.Error("status of a removed container: no error")
	}
}

func TestImageDefaultsAndCompleted(t *testing.T) {
	p := newPod(t)
	spec := p.spec("defaults")
	st := p.run(t, spec)
	if st.ExitCode != 0 || st.Reason != "Completed" {
		t.Errorf("got %d %q, want 0 Completed", st.ExitCode, st.Reason)
	}
	waitLog(t, spec.LogPath, "stdout:default-cmd")
}

func TestSecurityAndResources(t *testing.T) {
	p := newPod(t)
	hostDir := t.TempDir()
	os.WriteFile(filepath.Join(hostDir, "f"), []byte("from-host"), 0o644)
	uid, gid := int64(1234), int64(4321)
	tests := []struct {
		name   string
		mutate func(*ContainerSpec)
		script string
		want   []string
	}{
		{"user and group", func(s *ContainerSpec) { s.RunAsUser, s.RunAsGroup = &uid, &gid }, "id -u; id -g", []string{"stdout:1234", "stdout:4321"}},
		{"user from passwd", func(s *ContainerSpec) { u := int64(1000); s.RunAsUser = &u }, "id -u; id -g", []string{"stdout:1000", "stdout:1001"}},
		{"supplemental groups", func(s *ContainerSpec) {
			s.RunAsUser, s.RunAsGroup, s.SupplementalGroups = &uid, &gid, []int64{2000, 3000, 2000}
		}, "id -G", []string{"stdout:4321 2000 3000"}},
		{"read-only mount", func(s *ContainerSpec) {
			s.Mounts = []Mount{{HostPath: hostDir, ContainerPath: "/data", ReadOnly: true}}
		}, "cat /data/f; echo; touch /data/g || echo ro-mount", []string{"stdout:from-host", "stdout:ro-mount"}},
		{"read-only rootfs", func(s *ContainerSpec) { s.ReadOnlyRootFS = true }, "touch /x || echo ro-root", []string{"stdout:ro-root"}},
		{"drop all caps", func(s *ContainerSpec) { s.CapDrop = []string{"ALL"} }, "grep CapEff /proc/self/status", []string{"stdout:CapEff:\t0000000000000000"}},
		{"add one cap", func(s *ContainerSpec) { s.CapDrop = []string{"ALL"}; s.CapAdd = []string{"NET_ADMIN"} }, "grep CapEff /proc/self/status", []string{"stdout:CapEff:\t0000000000001000"}},
		{"default caps", func(s *ContainerSpec) {}, "grep CapEff /proc/self/status", []string{"stdout:CapEff:\t00000000a80425fb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := p.spec(strings.ReplaceAll(tt.name, " ", "-"), "sh", "-c", tt.script)
			tt.mutate(&spec)
			st := p.run(t, spec)
			got := waitLogOrFail(t, spec.LogPath, tt.want)
			if st.ExitCode != 0 {
				t.Errorf("exit code %d, log %q", st.ExitCode, got)
			}
		})
	}
}

func TestCgroupLimits(t *testing.T) {
	p := newPod(t)
	spec := p.spec("limited", "sh", "-c", "echo up; while true; do sleep 1; done")
	spec.MemoryLimit, spec.CPUShares, spec.CPUQuota = 64<<20, 512, 50000
	id := p.start(t, spec)
	waitLog(t, spec.LogPath, "stdout:up")
	for file, want := range map[string]string{
		"memory/" + p.cfg.Namespace + "/" + id + "/memory.limit_in_bytes": "67108864",
		"cpu/" + p.cfg.Namespace + "/" + id + "/cpu.shares":               "512",
		"cpu/" + p.cfg.Namespace + "/" + id + "/cpu.cfs_quota_us":         "50000",
	} {
		b, err := os.ReadFile("/sys/fs/cgroup/" + file)
		if err != nil {
			t.Skipf("no cgroup v1 file: %v", err)
		}
		if got := strings.TrimSpace(string(b)); got != want {
			t.Errorf("%s = %s, want %s", file, got, want)
		}
	}
	if err := p.r.RemoveContainer(t.Context(), id); err != nil {
		t.Fatal(err)
	}
}

// waitLogOrFail waits for a finished container's log; it reports the
// records it has instead of timing out blindly.
func waitLogOrFail(t *testing.T, path string, want []string) []string {
	t.Helper()
	return waitLog(t, path, want...)
}

func TestStopContainer(t *testing.T) {
	p := newPod(t)
	tests := []struct {
		name     string
		script   string
		grace    time.Duration
		wantCode int32
		wantLog  string
	}{
		{"handles TERM", `trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done`, 20 * time.Second, 0, "stdout:got-term"},
		{"ignores TERM", `trap '' TERM; echo ready; while true; do sleep 0.1; done`, 300 * time.Millisecond, 137, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := p.spec(strings.ReplaceAll(tt.name, " ", "-"), "sh", "-c", tt.script)
			id := p.start(t, spec)
			waitLog(t, spec.LogPath, "stdout:ready") // the trap is set
			start := time.Now()
			if err := p.r.StopContainer(t.Context(), id, tt.grace); err != nil {
				t.Fatal(err)
			}
			st, err := p.r.ContainerStatus(t.Context(), id)
			if err != nil || st.State != StateExited || st.ExitCode != tt.wantCode {
				t.Fatalf("after stop: got %+v, %v; want exited with %d", st, err, tt.wantCode)
			}
			if tt.wantLog != "" {
				waitLog(t, spec.LogPath, tt.wantLog)
				if time.Since(start) > tt.grace/2 {
					t.Errorf("stop took %v for a container that handles TERM", time.Since(start))
				}
			}
			if err := p.r.StopContainer(t.Context(), id, tt.grace); err != nil {
				t.Errorf("stopping an exited container: %v", err)
			}
		})
	}
}

func TestStopSignalFromImage(t *testing.T) {
	p := newPod(t)
	img := importImage(t, p.r, testImage{Name: "skiff.test/usr1:1", StopSignal: "SIGUSR1",
		Cmd: []string{"sh", "-c", `trap 'echo got-usr1; exit 7' USR1; trap 'echo got-term; exit 8' TERM; echo ready; while true; do sleep 0.1; done`}})
	spec := p.spec("usr1")
	spec.Image = img
	id := p.start(t, spec)
	waitLog(t, spec.LogPath, "stdout:ready")
	if err := p.r.StopContainer(t.Context(), id, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	st, err := p.r.ContainerStatus(t.Context(), id)
	if err != nil || st.ExitCode != 7 {
		t.Errorf("got %+v, %v; want exit 7 from the USR1 trap", st, err)
	}
	waitLog(t, spec.LogPath, "stdout:got-usr1")
}

// TestLogsAndContainersOutliveRuntime: the agent goes away (its Runtime
// closes), the container keeps running and logging, and a new Runtime
// adopts it.
func TestLogsAndContainersOutliveRuntime(t *testing.T) {
	p := newPod(t)
	spec := p.spec("ticker", "sh", "-c", `i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.05; done`)
	id := p.start(t, spec)
	waitLog(t, spec.LogPath, "stdout:tick-1")
	if err := p.r.Close(); err != nil {
		t.Fatal(err)
	}
	before, _ := logContents(spec.LogPath)
	waitFor(t, 10*time.Second, "log lines written with the runtime closed", func() (bool, error) {
		now, err := logContents(spec.LogPath)
		return len(now) >= len(before)+10, err
	})

	r2, err := New(p.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	all, err := r2.Containers(t.Context())
	if err != nil || len(all) != 1 || all[0].ID != id || all[0].State != StateRunning || all[0].Name != "ticker" || all[0].LogPath != spec.LogPath {
		t.Fatalf("new runtime sees %+v, %v; want %s running", all, err, id)
	}
	// sh as PID 1 ignores SIGTERM without a trap: killed after the grace.
	if err := r2.StopContainer(t.Context(), id, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if st, _ := r2.ContainerStatus(t.Context(), id); st.State != StateExited || st.ExitCode != 137 {
		t.Errorf("after stop: %+v, want exited 137", st)
	}
	recs, _ := logContents(spec.LogPath)
	for i, rec := range recs {
		if rec != fmt.Sprintf("stdout:tick-%d", i) {
			t.Fatalf("record %d is %q: lines lost or reordered", i, rec)
		}
	}
}

func TestLogRotation(t *testing.T) {
	p := newPod(t)
	p.r.cfg.LogMaxSize = 4096
	p.r.cfg.LogMaxFiles = 2
	spec := p.spec("chatty", "sh", "-c", `seq 1 2000`)
	p.run(t, spec)
	waitFor(t, 10*time.Second, "the last line", func() (bool, error) {
		recs, err := logContents(spec.LogPath)
		return len(recs) > 0 && recs[len(recs)-1] == "stdout:2000", err
	})
	for _, f := range []string{spec.LogPath + ".1", spec.LogPath + ".2"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("rotated file: %v", err)
		}
	}
	if _, err := os.Stat(spec.LogPath + ".3"); !os.IsNotExist(err) {
		t.Errorf("%s.3 exists, want at most 2 rotated files", spec.LogPath)
	}
}

func TestCreateContainerNeedsSandbox(t *testing.T) {
	p := newPod(t)
	if err := p.r.RemoveSandbox(t.Context(), p.sb.PodUID); err != nil {
		t.Fatal(err)
	}
	if _, err := p.r.CreateContainer(t.Context(), p.sb, p.spec("x", "true")); err == nil {
		t.Error("created a container in a removed sandbox")
	}
}

func TestOOMKilled(t *testing.T) {
	t.Run("from events", func(t *testing.T) { testOOMKilled(t, true) })
	t.Run("from the cgroup", func(t *testing.T) { testOOMKilled(t, false) })
}

func testOOMKilled(t *testing.T, events bool) {
	p := newPod(t)
	if events {
		go p.r.Run(t.Context())
	}
	spec := p.spec("hog", "sh", "-c", `x=$(yes | head -c 200000000); echo survived`)
	spec.MemoryLimit = 16 << 20
	id := p.start(t, spec)
	var st ContainerStatus
	// The OOM event and the exit race: wait for both to be recorded.
	waitFor(t, 30*time.Second, "OOMKilled", func() (bool, error) {
		var err error
		st, err = p.r.ContainerStatus(t.Context(), id)
		return st.State == StateExited && st.Reason == "OOMKilled", err
	})
	if st.ExitCode != 137 {
		t.Errorf("exit code %d, want 137", st.ExitCode)
	}
}

// TestHostNetworkSandbox: a hostNetwork pod's containers share the node's
// (here this process's) network and UTS namespaces and get an IPC
// namespace of their own; removing the sandbox leaves the node's alone.
func TestHostNetworkSandbox(t *testing.T) {
	r, _ := newTestRuntime(t)
	img := importImage(t, r, testImage{Name: "skiff.test/busybox:1"})
	uid := fmt.Sprintf("pod-%d", time.Now().UnixNano())
	sb, err := r.CreateSandbox(t.Context(), SandboxSpec{PodUID: uid, Namespace: "ns1", Name: "hostnet", Hostname: "ignored", HostNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.RemoveSandbox(context.Background(), uid) })
	if sbs, err := r.Sandboxes(t.Context()); err != nil || !slices.ContainsFunc(sbs, func(s Sandbox) bool { return s.PodUID == uid && s.HostNetwork }) {
		t.Fatalf("Sandboxes() = %+v, %v: want %s with HostNetwork", sbs, err, uid)
	}
	p := &podFixture{r: r, sb: sb, img: img, dir: t.TempDir()}
	spec := p.spec("c", "sh", "-c", "for n in net uts ipc; do readlink /proc/self/ns/$n; done; hostname")
	if st := p.run(t, spec); st.ExitCode != 0 {
		t.Fatalf("exit %d", st.ExitCode)
	}
	got, _ := logContents(spec.LogPath)
	ns := func(kind string) string {
		l, err := os.Readlink("/proc/self/ns/" + kind)
		if err != nil {
			t.Fatal(err)
		}
		return "stdout:" + l
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0] != ns("net") || got[1] != ns("uts") || got[2] == ns("ipc") || got[3] != "stdout:"+host {
		t.Fatalf("container saw %q; want net %s, uts %s, an ipc other than %s, hostname %s", got, ns("net"), ns("uts"), ns("ipc"), host)
	}
	if err := r.RemoveSandbox(t.Context(), uid); err != nil {
		t.Fatal(err)
	}
	if sbs, _ := r.Sandboxes(t.Context()); slices.ContainsFunc(sbs, func(s Sandbox) bool { return s.PodUID == uid }) {
		t.Fatal("sandbox still listed after RemoveSandbox")
	}
}
