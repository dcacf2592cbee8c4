package containers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/containerd"
)

// DaemonBinary is the containerd executable StartDaemon runs.
const DaemonBinary = "/usr/bin/containerd"

// DaemonConfig says where a containerd started by Skiff keeps its files.
type DaemonConfig struct {
	Root    string // persistent data (images, snapshots, metadata), e.g. D/containerd
	State   string // runtime state (shim sockets, bundles), e.g. R/containerd
	Socket  string // gRPC socket; the ttrpc socket is Socket+".ttrpc"
	LogFile string // containerd's stdout/stderr; "" = State/containerd.log
}

// StartDaemon makes sure a containerd serves cfg.Socket. If the socket
// already answers it returns (0, nil) at once. Otherwise it writes a
// config file into cfg.State and starts DaemonBinary in its own session
// (Setsid, no parent-death signal: the daemon and its containers outlive
// the agent), then waits until the daemon serves or ctx ends. It returns
// the daemon's process id; the caller never needs to wait for it.
//
// The CRI plugin is disabled: Skiff drives containerd through its own API.
func StartDaemon(ctx context.Context, cfg DaemonConfig) (pid int, err error) {
	if cfg.Root == "" || cfg.State == "" || cfg.Socket == "" {
		return 0, errors.New("containers: StartDaemon: Root, State and Socket are required")
	}
	if serving(ctx, cfg.Socket) {
		return 0, nil
	}
	for _, d := range []string{cfg.Root, cfg.State, filepath.Dir(cfg.Socket)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return 0, fmt.Errorf("containers: StartDaemon: %w", err)
		}
	}
	conf := filepath.Join(cfg.State, "skiff-containerd.toml")
	// The opt plugin's path is per daemon so that several daemons (the
	// lab's workers) never share a directory.
	text := "version = 2\n" +
		"root = " + strconv.Quote(cfg.Root) + "\n" +
		"state = " + strconv.Quote(cfg.State) + "\n" +
		"disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n" +
		"[grpc]\n  address = " + strconv.Quote(cfg.Socket) + "\n" +
		"[ttrpc]\n  address = " + strconv.Quote(cfg.Socket+".ttrpc") + "\n" +
		"[debug]\n  address = \"\"\n" +
		"[metrics]\n  address = \"\"\n" +
		"[plugins]\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = " + strconv.Quote(filepath.Join(cfg.Root, "opt")) + "\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return 0, fmt.Errorf("containers: StartDaemon: %w", err)
	}
	logFile := cfg.LogFile
	if logFile == "" {
		logFile = filepath.Join(cfg.State, "containerd.log")
	}
	lf, err := os.OpenFile(logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return 0, fmt.Errorf("containers: StartDaemon: %w", err)
	}
	defer lf.Close()
	os.Remove(cfg.Socket) // a stale socket of a dead daemon
	cmd := exec.Command(DaemonBinary, "--config", conf)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("containers: StartDaemon: %w", err)
	}
	pid = cmd.Process.Pid
	exited := make(chan error, 1)
	// Reap it if it dies while we are alive; otherwise it is adopted by init.
	go func() { exited <- cmd.Wait() }()

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if serving(ctx, cfg.Socket) {
			return pid, nil
		}
		select {
		case err := <-exited:
			return 0, fmt.Errorf("containers: containerd exited at start (%v); see %s", err, logFile)
		case <-ctx.Done():
			return pid, fmt.Errorf("containers: containerd did not serve %s: %w", cfg.Socket, ctx.Err())
		case <-tick.C:
		}
	}
}

// serving reports whether a containerd answers on socket.
func serving(ctx context.Context, socket string) bool {
	if _, err := os.Stat(socket); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := containerd.New(socket, containerd.WithTimeout(time.Second))
	if err != nil {
		return false
	}
	defer c.Close()
	ok, err := c.IsServing(ctx)
	return err == nil && ok
}
