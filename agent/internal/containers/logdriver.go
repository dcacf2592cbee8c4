package containers

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/agent/internal/podlogs"
	"golang.org/x/sys/unix"
)

// logDriverCommand is the first argument containerd's shim passes to
// Config.LogDriver; cmd/skiff dispatches it to LogDriverMain.
const logDriverCommand = "log-driver"

// driverArg encodes the log driver's settings into its one argument (the
// shim passes URI query pairs as arguments in random order, so a single
// pair keeps them in order).
func driverArg(path string, maxSize int64, maxFiles int) string {
	v := url.Values{}
	v.Set("path", path)
	v.Set("max-size", strconv.FormatInt(maxSize, 10))
	v.Set("max-files", strconv.Itoa(maxFiles))
	return v.Encode()
}

// LogDriverMain is the log driver process containerd's shim starts for a
// container: `skiff log-driver ARG`, where args are the arguments after
// "log-driver" (ARG names the log file and rotation limits). The shim
// passes the container's stdout and stderr as fds 3 and 4 and a
// readiness pipe as fd 5. The driver writes both streams into the
// podlogs file until they end; on SIGTERM (the shim's "container gone")
// it drains for up to 2 s more. It returns the process exit code.
//
// The driver is a child of the shim, not of the agent: logs keep being
// written while the agent is down or restarting.
func LogDriverMain(args []string) int {
	if err := logDriver(args); err != nil {
		fmt.Fprintln(os.Stderr, "skiff log-driver:", err)
		return 1
	}
	return 0
}

func logDriver(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: log-driver ARG (run by containerd's shim)")
	}
	v, err := url.ParseQuery(args[0])
	if err != nil {
		return err
	}
	path := v.Get("path")
	if path == "" {
		return errors.New("no log path")
	}
	maxSize, _ := strconv.ParseInt(v.Get("max-size"), 10, 64)
	maxFiles, _ := strconv.Atoi(v.Get("max-files"))
	signal.Ignore(unix.SIGHUP, unix.SIGINT, unix.SIGPIPE)
	term := make(chan os.Signal, 1)
	signal.Notify(term, unix.SIGTERM)

	stdout := os.NewFile(3, "container-stdout")
	stderr := os.NewFile(4, "container-stderr")
	ready := os.NewFile(5, "ready")
	w, err := podlogs.NewWriter(path, maxSize, maxFiles)
	if err != nil {
		// Keep reading regardless: a container whose output pipe has no
		// reader would block or die of SIGPIPE.
		fmt.Fprintln(os.Stderr, "skiff log-driver:", err)
		w = nil
	}
	var wg sync.WaitGroup
	for _, s := range []struct {
		f      *os.File
		stream podlogs.Stream
	}{{stdout, podlogs.Stdout}, {stderr, podlogs.Stderr}} {
		if s.f == nil {
			continue
		}
		var dst io.Writer = io.Discard
		if w != nil {
			dst = &forgivingWriter{w: w.Stream(s.stream)}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(dst, s.f)
		}()
	}
	if ready != nil {
		ready.Close()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-term:
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
	if w == nil {
		return nil
	}
	return w.Close()
}

// forgivingWriter reports success even when the log cannot be written
// (disk full): the container's output is then dropped instead of
// blocking the container.
type forgivingWriter struct {
	w      io.Writer
	failed bool
}

func (f *forgivingWriter) Write(p []byte) (int, error) {
	if _, err := f.w.Write(p); err != nil && !f.failed {
		f.failed = true
		fmt.Fprintln(os.Stderr, "skiff log-driver:", err)
	}
	return len(p), nil
}
