// Package containers is Skiff's container runtime: it drives containerd
// (images, containers, tasks, exec) and pins each pod's network, IPC and
// UTS namespaces without a pause container.
//
// Call sequence: StartDaemon (only when Skiff runs its own containerd),
// New, then go Run(ctx) (feeds Exits from containerd's events). Per pod:
// EnsureImage for each image, CreateSandbox, network setup on
// Sandbox.NetNS (another package), CreateContainer + StartContainer per
// container; StopContainer, RemoveContainer, network teardown,
// RemoveSandbox when the pod goes. After an agent restart, Sandboxes and
// Containers list what exists (everything is reconstructed from
// containerd's labels and the sandbox files under RunDir).
//
// Logs: a container's stdout/stderr is written to ContainerSpec.LogPath
// by a log driver process that containerd's shim runs (Config.LogDriver,
// the skiff binary's hidden "log-driver" command, see LogDriverMain), so
// logging and the container carry on while the agent is down. Containers
// created with Stdin or TTY are the exception: their streams go through
// FIFOs the Runtime copies (to the log file and to Attach clients); while
// no Runtime runs, their output is not logged and a chatty one blocks
// once the FIFO buffers are full, until a Runtime adopts it again.
package containers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/containerd"
	eventtypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/typeurl/v2"
)

// Config configures a Runtime.
type Config struct {
	// Address is containerd's gRPC socket.
	Address string
	// Namespace is the containerd namespace holding Skiff's images and containers.
	Namespace string
	// RunDir holds sandbox namespace files (RunDir/sandboxes/<podUID>/)
	// and FIFOs (RunDir/fifo); it is on a tmpfs like /run.
	RunDir string
	// LogDriver is the absolute path of the executable containerd's shim
	// runs as the binary log driver, called as `LogDriver log-driver ARG`;
	// normally the skiff binary itself (whose main calls LogDriverMain).
	LogDriver string
	// Snapshotter is the containerd snapshotter; "" = containerd's default (overlayfs).
	Snapshotter string
	// InsecureRegistries are registry hosts ("host:port") pulled from with
	// plain HTTP; localhost, 127.0.0.1 and ::1 always are.
	InsecureRegistries []string
	// LogMaxSize and LogMaxFiles are the container log rotation limits
	// (0 = podlogs defaults: 10 MiB, 5 rotated files).
	LogMaxSize  int64
	LogMaxFiles int
	Logger      *slog.Logger
}

// DefaultConfig returns the settings of a node with a system containerd.
func DefaultConfig() Config {
	exe, _ := os.Executable()
	return Config{
		Address:   "/run/containerd/containerd.sock",
		Namespace: "skiff",
		RunDir:    "/run/skiff",
		LogDriver: exe,
		Logger:    slog.Default(),
	}
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	switch {
	case c.Address == "":
		return errors.New("containers: Address is required")
	case c.Namespace == "":
		return errors.New("containers: Namespace is required")
	case c.RunDir == "" || !filepath.IsAbs(c.RunDir):
		return errors.New("containers: RunDir must be an absolute path")
	case c.LogDriver == "" || !filepath.IsAbs(c.LogDriver):
		return errors.New("containers: LogDriver must be an absolute path")
	}
	return nil
}

// Runtime runs pods' containers through containerd. Its methods are safe
// for concurrent use.
type Runtime struct {
	cfg    Config
	log    *slog.Logger
	client *containerd.Client
	exits  chan string

	mu   sync.Mutex
	hubs map[string]*hub // FIFO-based containers' stream copiers, by container ID

	sandboxMu sync.Mutex // serializes CreateSandbox and RemoveSandbox
}

// New connects to containerd (failing when it does not answer within 10 s).
func New(cfg Config) (*Runtime, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Snapshotter == "" {
		cfg.Snapshotter = containerd.DefaultSnapshotter
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, d := range []string{cfg.RunDir, filepath.Join(cfg.RunDir, "fifo"), filepath.Join(cfg.RunDir, "sandboxes")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("containers: %w", err)
		}
	}
	client, err := containerd.New(cfg.Address, containerd.WithDefaultNamespace(cfg.Namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("containers: connect to containerd at %s: %w", cfg.Address, err)
	}
	return &Runtime{
		cfg:    cfg,
		log:    cfg.Logger,
		client: client,
		exits:  make(chan string, 256),
		hubs:   map[string]*hub{},
	}, nil
}

// Close stops the Runtime's stream copiers and closes the connection.
// Containers keep running.
func (r *Runtime) Close() error {
	r.mu.Lock()
	hubs := r.hubs
	r.hubs = map[string]*hub{}
	r.mu.Unlock()
	for _, h := range hubs {
		h.close()
	}
	return r.client.Close()
}

// ctx returns ctx in the Runtime's containerd namespace.
func (r *Runtime) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.cfg.Namespace)
}

// Exits delivers IDs of containers whose main process exited, while Run
// runs. The channel is buffered and drops IDs when full: callers also poll.
func (r *Runtime) Exits() <-chan string { return r.exits }

// Run adopts running FIFO-based containers (restarting their log copiers)
// and follows containerd's task events, feeding Exits and recording OOM
// kills; it resubscribes after errors and returns when ctx ends.
func (r *Runtime) Run(ctx context.Context) error {
	if err := r.adoptHubs(ctx); err != nil {
		r.log.Warn("adopting containers' streams", "err", err)
	}
	for {
		err := r.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("containerd event stream ended; resubscribing", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (r *Runtime) follow(ctx context.Context) error {
	ch, errs := r.client.Subscribe(ctx, `topic=="/tasks/exit"`, `topic=="/tasks/oom"`)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			return err
		case env := <-ch:
			if env == nil || env.Namespace != r.cfg.Namespace || env.Event == nil {
				continue
			}
			ev, err := typeurl.UnmarshalAny(env.Event)
			if err != nil {
				continue
			}
			switch e := ev.(type) {
			case *eventtypes.TaskExit:
				if e.ID != e.ContainerID { // an exec process
					continue
				}
				select {
				case r.exits <- e.ContainerID:
				default:
				}
			case *eventtypes.TaskOOM:
				r.markOOM(ctx, e.ContainerID)
			}
		}
	}
}
