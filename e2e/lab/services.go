package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiff-sh/skiff/agent/imagebuild"
)

// startRegistry runs docker-registry on the bridge IP (root namespace) with
// its storage in Dir/registry, then builds and pushes the test images.
func (l *Lab) startRegistry(ctx context.Context) error {
	dir := filepath.Join(l.dir, "registry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "data"), l.Registry())
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	p, err := l.start("registry", nil, []string{"docker-registry", "serve", cfgPath})
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	err = waitReady(ctx, p, 20*time.Second, "registry serving /v2/", func(ctx context.Context) error {
		return httpGet(ctx, client, "http://"+l.Registry()+"/v2/")
	})
	if err != nil {
		return err
	}
	if l.cfg.NoImages {
		return nil
	}
	start := time.Now()
	imgs, err := l.buildImages(ctx)
	if err != nil {
		return err
	}
	l.imgs = imgs
	l.log.Info("lab images pushed", "registry", l.Registry(), "busybox", imgs.Busybox, "echo", imgs.Echo, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// buildImages builds the busybox and echoserver images, pushes them to the
// lab registry and writes both to Dir/images.tar.
func (l *Lab) buildImages(ctx context.Context) (Images, error) {
	imgs := Images{
		Busybox: l.Registry() + "/" + BusyboxImage,
		Echo:    l.Registry() + "/" + EchoImage,
		Archive: filepath.Join(l.dir, "images.tar"),
	}
	mod := l.cfg.ModuleDir
	if mod == "" {
		out, err := run(ctx, "go", "env", "GOMOD")
		gomod := strings.TrimSpace(out)
		if err != nil || gomod == "" || gomod == os.DevNull {
			return imgs, fmt.Errorf("lab: finding the module root for the test images (set Config.ModuleDir): go env GOMOD: %q, %v", gomod, err)
		}
		mod = filepath.Dir(gomod)
	}
	bb, err := imagebuild.Busybox(imgs.Busybox)
	if err != nil {
		return imgs, fmt.Errorf("lab: %w", err)
	}
	echo, err := imagebuild.GoBinary(imgs.Echo, "./e2e/lab/testimages/echoserver",
		imagebuild.BuildDir(mod), imagebuild.OnBase(bb), imagebuild.Ports("8080/tcp"))
	if err != nil {
		return imgs, fmt.Errorf("lab: %w", err)
	}
	for _, s := range []imagebuild.Spec{bb, echo} {
		if err := imagebuild.Push(ctx, "http://"+l.Registry(), s); err != nil {
			return imgs, fmt.Errorf("lab: %w", err)
		}
	}
	f, err := os.Create(imgs.Archive)
	if err != nil {
		return imgs, err
	}
	if err := imagebuild.WriteOCIArchive(f, bb, echo); err != nil {
		f.Close()
		return imgs, fmt.Errorf("lab: %w", err)
	}
	return imgs, f.Close()
}

func httpGet(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: got %s %q, want 200", url, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// startContainerd runs worker h's containerd inside its namespace with its
// own root, state and socket under h.Dir/containerd, and waits until it
// answers.
func (l *Lab) startContainerd(ctx context.Context, h *Host) error {
	dir := filepath.Dir(h.ContainerdSocket)
	if len(h.ContainerdSocket)+len(".ttrpc") > 100 {
		return fmt.Errorf("lab: containerd socket path %s is too long for a unix socket: use a shorter Dir", h.ContainerdSocket)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), h.ContainerdSocket, h.ContainerdSocket+".ttrpc")
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	if err := l.record(func(s *state) { s.Sockets = append(s.Sockets, h.ContainerdSocket) }); err != nil {
		return err
	}
	p, err := l.start(h.Name+"-containerd", h, []string{"containerd", "--config", cfgPath})
	if err != nil {
		return err
	}
	return waitReady(ctx, p, 30*time.Second, "containerd answering", func(ctx context.Context) error {
		_, err := run(ctx, "ctr", "-a", h.ContainerdSocket, "version")
		return err
	})
}

// masterArgs is master h's `skiff server` command line.
func (l *Lab) masterArgs(h *Host) []string {
	args := []string{l.cfg.SkiffBin, "server", "--name", h.Name, "--data-dir", h.DataDir,
		"--peer-addr", h.PeerAddr, "--api-addr", h.APIAddr, "--http-addr", h.StatusAddr, "--gossip-addr", h.GossipAddr}
	return append(args, l.cfg.ServerArgs...)
}

// startMasters starts the masters one after the other (the first
// bootstraps, the others join it) and writes Dir/kubeconfig.
func (l *Lab) startMasters(ctx context.Context) error {
	for i := range l.masters {
		if err := l.StartMaster(ctx, i); err != nil {
			return err
		}
	}
	if len(l.masters) == 0 {
		return nil
	}
	return l.copyKubeconfig()
}

// StartMaster starts master i (again, after KillMaster: same data dir, no
// --join) and waits until its /readyz answers.
func (l *Lab) StartMaster(ctx context.Context, i int) error {
	h := l.masters[i]
	l.mu.Lock()
	old := l.procs[h.Name]
	l.mu.Unlock()
	if old != nil && old.running() {
		return fmt.Errorf("lab: master %s is running", h.Name)
	}
	args := l.masterArgs(h)
	if _, err := os.Stat(filepath.Join(h.DataDir, "raft.db")); err != nil && i > 0 {
		args = append(args, "--join", l.masters[0].PeerAddr)
	}
	if err := os.MkdirAll(h.DataDir, 0o700); err != nil {
		return err
	}
	p, err := l.start(h.Name, h, args)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	return waitReady(ctx, p, 40*time.Second, "/readyz answering 200", func(ctx context.Context) error {
		return httpGet(ctx, client, "http://"+h.StatusAddr+"/readyz")
	})
}

// KillMaster kills master i's process group with SIGKILL and waits for it.
func (l *Lab) KillMaster(i int) error {
	l.mu.Lock()
	p := l.procs[l.masters[i].Name]
	l.mu.Unlock()
	if p == nil {
		return fmt.Errorf("lab: master %s was never started", l.masters[i].Name)
	}
	return p.kill()
}

// copyKubeconfig copies the first master's admin kubeconfig to Dir/kubeconfig.
func (l *Lab) copyKubeconfig() error {
	src := filepath.Join(l.masters[0].DataDir, "admin.kubeconfig")
	var b []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if b, err = os.ReadFile(src); err == nil && len(b) > 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: the admin kubeconfig: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling for the master's file
	}
	return os.WriteFile(l.Kubeconfig(), b, 0o600)
}

// JoinToken returns a join token for workers, created once with
// `skiff token create --join --peer <m0 peer address>`.
func (l *Lab) JoinToken(ctx context.Context) (string, error) {
	if l.token != "" {
		return l.token, nil
	}
	if len(l.masters) == 0 {
		return "", fmt.Errorf("%w: no master to create a join token", ErrNoAgent)
	}
	// A master that serves Raft may not have created the cluster CA and
	// gossip key yet: ask again until it has, within a deadline.
	deadline := time.Now().Add(time.Minute)
	var out string
	var err error
	for {
		out, err = run(ctx, l.cfg.SkiffBin, "token", "create", "--join", "--peer", l.masters[0].PeerAddr)
		if err == nil || !strings.Contains(err.Error(), "no CA or gossip key yet") || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err != nil {
		return "", fmt.Errorf("lab: join token: %w", err)
	}
	fields := strings.Fields(out)
	if len(fields) == 0 {
		return "", errors.New("lab: join token: skiff token create --join printed nothing")
	}
	l.token = fields[len(fields)-1]
	return l.token, nil
}

// AgentCommand returns worker i's agent command line (binary first), with
// a join token.
func (l *Lab) AgentCommand(ctx context.Context, i int) ([]string, error) {
	h := l.workers[i]
	tok, err := l.JoinToken(ctx)
	if err != nil {
		return nil, err
	}
	p := AgentParams{
		Join: l.masters[0].GossipAddr, Token: tok, NodeName: h.Name, NodeIP: h.IP,
		DataDir: h.AgentDataDir, RunDir: h.AgentRunDir, ContainerdSocket: h.ContainerdSocket,
		GossipAddr: h.GossipAddr, Listen: h.AgentListen, Registry: l.Registry(),
	}
	build := l.cfg.AgentArgs
	if build == nil {
		build = DefaultAgentArgs
	}
	return append(append([]string{l.cfg.SkiffBin}, build(p)...), l.cfg.ExtraAgentArgs...), nil
}

// StartAgent starts worker i's agent inside its namespace (again after
// KillAgent, with the same command line). It returns once the process
// runs; waiting for the Node to be Ready is the caller's business (see
// AgentRunning and the agent's log at LogPath("w<i>-agent")).
func (l *Lab) StartAgent(ctx context.Context, i int) error {
	h := l.workers[i]
	l.mu.Lock()
	old := l.procs[h.Name+"-agent"]
	l.mu.Unlock()
	if old != nil && old.running() {
		return fmt.Errorf("lab: agent of %s is running", h.Name)
	}
	args, err := l.AgentCommand(ctx, i)
	if err != nil {
		return err
	}
	for _, d := range []string{h.AgentDataDir, h.AgentRunDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	p, err := l.start(h.Name+"-agent", h, args)
	if err != nil {
		return err
	}
	// An agent that dies at once (bad flags) is reported here.
	select {
	case <-p.exited:
		return fmt.Errorf("lab: agent of %s exited at once (%v); its output:\n%s", h.Name, p.cmd.ProcessState, p.output())
	case <-time.After(300 * time.Millisecond): // a grace period for early exits, not an assertion
	}
	return nil
}

// AgentRunning reports whether worker i's agent process is running.
func (l *Lab) AgentRunning(i int) bool {
	l.mu.Lock()
	p := l.procs[l.workers[i].Name+"-agent"]
	l.mu.Unlock()
	return p != nil && p.running()
}

// KillAgent kills worker i's agent with SIGKILL (its process group; the
// containers, children of containerd's shims, keep running) and waits for it.
func (l *Lab) KillAgent(i int) error {
	l.mu.Lock()
	p := l.procs[l.workers[i].Name+"-agent"]
	l.mu.Unlock()
	if p == nil || !p.running() {
		return fmt.Errorf("%w: worker %s", ErrNoAgent, l.workers[i].Name)
	}
	return p.kill()
}

// DumpLogs writes the last lines of every lab process's log to w.
func (l *Lab) DumpLogs(w io.Writer, lines int) {
	ents, err := os.ReadDir(filepath.Join(l.dir, "logs"))
	if err != nil {
		fmt.Fprintf(w, "lab logs: %v\n", err)
		return
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(l.dir, "logs", e.Name()))
		if err != nil {
			continue
		}
		all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		from := max(0, len(all)-lines)
		fmt.Fprintf(w, "--- %s: last %d of %d lines ---\n%s\n", e.Name(), len(all)-from, len(all), strings.Join(all[from:], "\n"))
	}
}
