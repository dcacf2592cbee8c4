package containers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-sh/skiff/agent/internal/podlogs"
)

// TermSize is a terminal's size in characters.
type TermSize struct{ Width, Height uint16 }

// Streams connects a client to a process.
type Streams struct {
	Stdin          io.Reader // nil: no stdin
	Stdout, Stderr io.Writer // nil: discarded; Stderr is unused with TTY
	TTY            bool
	Resize         <-chan TermSize // may be nil
}

// ErrNotAttachable is returned by Attach for a container created without
// Stdin and TTY (its output goes straight to the log driver).
var ErrNotAttachable = errors.New("containers: attach needs a container created with stdin or tty")

// ErrNotRunning is returned by Exec and Attach for a container that does not run.
var ErrNotRunning = errors.New("containers: container is not running")

func (r *Runtime) fifoDir() string { return filepath.Join(r.cfg.RunDir, "fifo") }

// Exec runs cmd in a running container, with the main process's
// environment, working directory and user, and returns its exit code.
// When ctx ends first, the process is killed.
func (r *Runtime) Exec(ctx context.Context, id string, cmd []string, s Streams) (int, error) {
	ctx = r.ctx(ctx)
	if len(cmd) == 0 {
		return 0, errors.New("containers: exec: no command")
	}
	c, err := r.load(ctx, id)
	if err != nil {
		return 0, err
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return 0, fmt.Errorf("%w: %s", ErrNotRunning, id)
	}
	if err != nil {
		return 0, fmt.Errorf("containers: exec in %s: %w", id, err)
	}
	if st, err := task.Status(ctx); err != nil || st.Status != containerd.Running {
		return 0, fmt.Errorf("%w: %s", ErrNotRunning, id)
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return 0, fmt.Errorf("containers: exec in %s: %w", id, err)
	}
	pspec := *spec.Process
	pspec.Args = cmd
	pspec.Terminal = s.TTY
	if s.TTY && s.Resize != nil {
		// The process starts at the client's size, which the client sends
		// first: a size applied once it runs may come after its first
		// look (a shell's first `stty size`).
		select {
		case sz, ok := <-s.Resize:
			if ok {
				pspec.ConsoleSize = &specs.Box{Width: uint(sz.Width), Height: uint(sz.Height)}
			}
		case <-time.After(initialSizeWait):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	stderr := s.Stderr
	if s.TTY {
		stderr = nil
	}
	var proc containerd.Process
	procReady := make(chan struct{})
	var stdin io.Reader
	if s.Stdin != nil {
		// On the client's EOF, close the shim's hold on the process's stdin
		// too; what was written before still reaches the process.
		stdin = &eofReader{r: s.Stdin, onEOF: func() {
			<-procReady
			proc.CloseIO(context.WithoutCancel(ctx), containerd.WithStdinCloser)
		}}
	}
	opts := []cio.Opt{cio.WithStreams(stdin, s.Stdout, stderr), cio.WithFIFODir(r.fifoDir())}
	if s.TTY {
		opts = append(opts, cio.WithTerminal)
	}
	execID := "exec-" + newID()[:24]
	proc, err = task.Exec(ctx, execID, &pspec, cio.NewCreator(opts...))
	close(procReady)
	if err != nil {
		return 0, fmt.Errorf("containers: exec in %s: %w", id, err)
	}
	// The process is deleted (and its FIFOs removed) whatever happens,
	// also when ctx ended.
	dctx := context.WithoutCancel(ctx)
	defer proc.Delete(dctx, containerd.WithProcessKill)
	exited, err := proc.Wait(ctx)
	if err != nil {
		return 0, fmt.Errorf("containers: exec in %s: %w", id, err)
	}
	if err := proc.Start(ctx); err != nil {
		return 0, fmt.Errorf("containers: exec in %s: %w", id, err)
	}
	stopResize := forwardResize(dctx, proc, s.Resize)
	defer stopResize()
	select {
	case st := <-exited:
		code, _, err := st.Result()
		if err != nil {
			return 0, fmt.Errorf("containers: exec in %s: %w", id, err)
		}
		// Let the output drain before the caller closes its streams.
		if pio := proc.IO(); pio != nil {
			pio.Wait()
		}
		return int(code), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// initialSizeWait is how long Exec waits for a TTY client's first
// terminal size before it starts the process without one.
const initialSizeWait = time.Second

// forwardResize applies terminal sizes from ch to p until the returned
// function is called.
func forwardResize(ctx context.Context, p containerd.Process, ch <-chan TermSize) func() {
	if ch == nil {
		return func() {}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case sz, ok := <-ch:
				if !ok {
					return
				}
				p.Resize(ctx, uint32(sz.Width), uint32(sz.Height))
			}
		}
	}()
	return func() { close(stop); <-done }
}

// eofReader calls onEOF once when r reports io.EOF.
type eofReader struct {
	r     io.Reader
	onEOF func()
	once  sync.Once
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.once.Do(e.onEOF)
	}
	return n, err
}

// Attach connects s to the main process of a running container created
// with Stdin or TTY: it receives the output from now on and, when the
// container has stdin, its Stdin is forwarded (for a StdinOnce container
// the first client's EOF closes the container's stdin for good). It
// returns when the container's output ends (it exited) or ctx ends.
func (r *Runtime) Attach(ctx context.Context, id string, s Streams) error {
	ctx = r.ctx(ctx)
	h, err := r.hubFor(ctx, id)
	if err != nil {
		return err
	}
	cl := &attachClient{stdout: s.Stdout, stderr: s.Stderr}
	if h.tty {
		cl.stderr = nil
	}
	h.add(cl)
	defer h.remove(cl)
	if s.Stdin != nil && h.stdin != nil {
		go func() {
			_, err := io.Copy(h.stdinWriter(), s.Stdin)
			if err == nil && h.stdinOnce {
				h.closeStdin(context.WithoutCancel(ctx))
			}
		}()
	}
	stopResize := forwardResize(context.WithoutCancel(ctx), h.task, s.Resize)
	defer stopResize()
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hub owns the FIFOs of a container created with Stdin or TTY: it copies
// the output to the log file and to attached clients, and holds stdin.
type hub struct {
	tty, stdinOnce bool
	dio            *cio.DirectIO
	stdin          io.WriteCloser // nil when the container has no stdin
	logs           *podlogs.Writer
	task           containerd.Task
	done           chan struct{} // closed when the output ended

	mu          sync.Mutex
	clients     map[*attachClient]struct{}
	stdinClosed bool
	stdinMu     sync.Mutex // serializes clients' stdin writes
}

type attachClient struct{ stdout, stderr io.Writer }

// newHub creates or reopens the container's FIFOs (RunDir/fifo/<id>/)
// and starts copying its output.
func (r *Runtime) newHub(id string, labels map[string]string, tty bool) (*hub, error) {
	dir := filepath.Join(r.fifoDir(), id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("containers: %w", err)
	}
	cfg := cio.Config{Stdout: filepath.Join(dir, "stdout"), Terminal: tty}
	if !tty {
		cfg.Stderr = filepath.Join(dir, "stderr")
	}
	spec := labels[labelStdin] == "true"
	if spec {
		cfg.Stdin = filepath.Join(dir, "stdin")
	}
	// No close function: closing our ends must not remove the FIFOs, which
	// the shim keeps using and a later Runtime reopens.
	dio, err := cio.NewDirectIO(context.Background(), cio.NewFIFOSet(cfg, nil))
	if err != nil {
		return nil, fmt.Errorf("containers: fifos of %s: %w", id, err)
	}
	logs, err := podlogs.NewWriter(labels[labelLogPath], r.cfg.LogMaxSize, r.cfg.LogMaxFiles)
	if err != nil {
		dio.Close()
		return nil, err
	}
	h := &hub{
		tty:       tty,
		stdinOnce: labels[labelStdinOnce] == "true",
		dio:       dio,
		logs:      logs,
		done:      make(chan struct{}),
		clients:   map[*attachClient]struct{}{},
	}
	if spec {
		h.stdin = dio.Stdin
	}
	var wg sync.WaitGroup
	copyOut := func(src io.Reader, stream podlogs.Stream) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(&fanout{h: h, log: logs.Stream(stream), stderr: stream == podlogs.Stderr}, src)
		}()
	}
	copyOut(dio.Stdout, podlogs.Stdout)
	if !tty {
		copyOut(dio.Stderr, podlogs.Stderr)
	}
	go func() {
		wg.Wait()
		logs.Close()
		close(h.done)
	}()
	return h, nil
}

// creator hands the hub's FIFOs to a new task.
func (h *hub) creator(string) cio.Creator {
	return func(string) (cio.IO, error) { return h.dio, nil }
}

func (h *hub) attached(t containerd.Task) { h.task = t }

// close stops copying (the FIFOs stay for a later Runtime).
func (h *hub) close() {
	h.dio.Cancel()
	h.dio.Close()
	<-h.done
}

func (h *hub) add(c *attachClient) {
	h.mu.Lock()
	h.clients[c] = struct{}{}
	h.mu.Unlock()
}

func (h *hub) remove(c *attachClient) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
}

type stdinWriter struct{ h *hub }

func (w stdinWriter) Write(p []byte) (int, error) {
	w.h.stdinMu.Lock()
	defer w.h.stdinMu.Unlock()
	w.h.mu.Lock()
	closed := w.h.stdinClosed
	w.h.mu.Unlock()
	if closed {
		return 0, io.ErrClosedPipe
	}
	return w.h.stdin.Write(p)
}

func (h *hub) stdinWriter() io.Writer { return stdinWriter{h} }

// closeStdin ends the container's stdin for good.
func (h *hub) closeStdin(ctx context.Context) {
	h.stdinMu.Lock()
	defer h.stdinMu.Unlock()
	h.mu.Lock()
	if h.stdinClosed {
		h.mu.Unlock()
		return
	}
	h.stdinClosed = true
	h.mu.Unlock()
	h.stdin.Close()
	if h.task != nil {
		h.task.CloseIO(ctx, containerd.WithStdinCloser)
	}
}

// fanout writes a container's output to its log and attached clients.
type fanout struct {
	h      *hub
	log    io.Writer
	stderr bool
}

func (f *fanout) Write(p []byte) (int, error) {
	f.log.Write(p)
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	for c := range f.h.clients {
		w := c.stdout
		if f.stderr {
			w = c.stderr
		}
		if w == nil {
			continue
		}
		if _, err := w.Write(p); err != nil {
			delete(f.h.clients, c) // a gone client must not stall the container
		}
	}
	return len(p), nil
}

// hubFor returns the hub of a running FIFO-based container, reopening its
// FIFOs when this Runtime did not start it (agent restart).
func (r *Runtime) hubFor(ctx context.Context, id string) (*hub, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h, ok := r.hubs[id]; ok {
		select {
		case <-h.done:
			return nil, fmt.Errorf("%w: %s", ErrNotRunning, id)
		default:
			return h, nil
		}
	}
	c, err := r.load(ctx, id)
	if err != nil {
		return nil, err
	}
	labels, err := c.Labels(ctx)
	if err != nil {
		return nil, fmt.Errorf("containers: %s: %w", id, err)
	}
	if labels[labelIO] != "fifo" {
		return nil, fmt.Errorf("%w: %s", ErrNotAttachable, id)
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, id)
	}
	if err != nil {
		return nil, fmt.Errorf("containers: %s: %w", id, err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("containers: %s: %w", id, err)
	}
	if st.Status != containerd.Running && st.Status != containerd.Created {
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, id)
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("containers: %s: %w", id, err)
	}
	h, err := r.newHub(id, labels, spec.Process != nil && spec.Process.Terminal)
	if err != nil {
		return nil, err
	}
	h.attached(task)
	r.hubs[id] = h
	return h, nil
}

// adoptHubs reopens the FIFOs of every running FIFO-based container, so
// their output is logged again after an agent restart.
func (r *Runtime) adoptHubs(ctx context.Context) error {
	ctx = r.ctx(ctx)
	cs, err := r.client.Containers(ctx, `labels."`+labelIO+`"==fifo`)
	if err != nil {
		return err
	}
	for _, c := range cs {
		_, err := r.hubFor(ctx, c.ID())
		if err != nil && !errors.Is(err, ErrNotRunning) && !errors.Is(err, ErrNotFound) {
			r.log.Warn("adopting a container's streams", "container", c.ID(), "err", err)
		}
	}
	return nil
}
