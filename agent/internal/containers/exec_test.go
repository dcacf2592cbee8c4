package containers

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestExec(t *testing.T) {
	p := newPod(t)
	spec := p.spec("main", "sh", "-c", "echo up; while true; do sleep 1; done")
	spec.Env = []string{"IN_SPEC=yes"}
	spec.WorkingDir = "/tmp"
	id := p.start(t, spec)
	waitLog(t, spec.LogPath, "stdout:up")

	tests := []struct {
		name             string
		cmd              []string
		stdin            string
		tty              bool
		wantCode         int
		wantOut, wantErr string
	}{
		{"exit code", []string{"sh", "-c", "exit 3"}, "", false, 3, "", ""},
		{"stdout and stderr", []string{"sh", "-c", "echo o; echo e >&2"}, "", false, 0, "o\n", "e\n"},
		{"container env and cwd", []string{"sh", "-c", "echo $IN_SPEC $(pwd) $(hostname)"}, "", false, 0, "yes /tmp pod1-host\n", ""},
		{"stdin to cat", []string{"cat"}, "line1\nline2\n", false, 0, "line1\nline2\n", ""},
		{"tty", []string{"sh", "-c", "tty >/dev/null && echo is-a-tty"}, "", true, 0, "is-a-tty\r\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb syncBuffer
			s := Streams{Stdout: &out, Stderr: &errb, TTY: tt.tty}
			if tt.stdin != "" {
				s.Stdin = strings.NewReader(tt.stdin)
			}
			code, err := p.r.Exec(t.Context(), id, tt.cmd, s)
			if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode || out.String() != tt.wantOut || errb.String() != tt.wantErr {
				t.Errorf("got code %d out %q err %q, want %d %q %q", code, out.String(), errb.String(), tt.wantCode, tt.wantOut, tt.wantErr)
			}
		})
	}

	t.Run("tty starts at the client's size", func(t *testing.T) {
		resize := make(chan TermSize, 1)
		resize <- TermSize{Width: 77, Height: 33}
		var out syncBuffer
		code, err := p.r.Exec(t.Context(), id, []string{"stty", "size"}, Streams{Stdout: &out, TTY: true, Resize: resize})
		if err != nil || code != 0 || strings.TrimSpace(out.String()) != "33 77" {
			t.Fatalf("stty size at once: code %d, output %q, %v; want 33 77", code, out.String(), err)
		}
	})

	t.Run("tty resize", func(t *testing.T) {
		resize := make(chan TermSize, 1)
		resize <- TermSize{Width: 123, Height: 45}
		stdinR, stdinW := io.Pipe()
		var out syncBuffer
		done := make(chan error, 1)
		go func() {
			_, err := p.r.Exec(t.Context(), id, []string{"sh", "-c", "while read x; do stty size; done"}, Streams{Stdin: stdinR, Stdout: &out, TTY: true, Resize: resize})
			done <- err
		}()
		// The size is applied asynchronously: ask until it shows.
		waitFor(t, 10*time.Second, "the new terminal size", func() (bool, error) {
			stdinW.Write([]byte("size?\n"))
			return strings.Contains(out.String(), "45 123"), nil
		})
		stdinW.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})

	if _, err := p.r.Exec(t.Context(), "nonexistent", []string{"true"}, Streams{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("exec in an unknown container: got %v, want ErrNotFound", err)
	}
	if err := p.r.Attach(t.Context(), id, Streams{}); !errors.Is(err, ErrNotAttachable) {
		t.Errorf("attach to a container without stdin/tty: got %v, want ErrNotAttachable", err)
	}
	if err := p.r.StopContainer(t.Context(), id, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := p.r.Exec(t.Context(), id, []string{"true"}, Streams{}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("exec in an exited container: got %v, want ErrNotRunning", err)
	}
}

func TestAttachStdinOnce(t *testing.T) {
	p := newPod(t)
	spec := p.spec("cat", "sh", "-c", "echo started; cat; echo cat-done")
	spec.Stdin, spec.StdinOnce = true, true
	id := p.start(t, spec)
	waitLog(t, spec.LogPath, "stdout:started")

	var out syncBuffer
	err := p.r.Attach(t.Context(), id, Streams{Stdin: strings.NewReader("hello\nworld\n"), Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	// The first client's EOF closed stdin: cat ended, the container exited and Attach returned.
	if got := out.String(); got != "hello\nworld\ncat-done\n" {
		t.Errorf("attached output %q, want hello world cat-done", got)
	}
	st := p.waitExited(t, id)
	if st.ExitCode != 0 {
		t.Errorf("exit code %d, want 0", st.ExitCode)
	}
	waitLog(t, spec.LogPath, "stdout:started", "stdout:hello", "stdout:world", "stdout:cat-done")
}

func TestAttachTTYAfterRestart(t *testing.T) {
	p := newPod(t)
	spec := p.spec("shell", "sh")
	spec.Stdin, spec.TTY = true, true
	id := p.start(t, spec)
	// The Runtime that started it goes away; a new one adopts the FIFOs.
	p.r.Close()
	r2, err := New(p.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r2.Close() })
	stdinR, stdinW := io.Pipe()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- r2.Attach(t.Context(), id, Streams{Stdin: stdinR, Stdout: &out, TTY: true}) }()
	waitFor(t, 10*time.Second, "the shell to answer", func() (bool, error) {
		// Keep asking: the attach may not be registered for the first lines.
		stdinW.Write([]byte("echo mark-$((6*7))\n"))
		return strings.Contains(out.String(), "mark-42"), nil
	})
	stdinW.Write([]byte("exit 5\n"))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("attach did not return after the shell exited")
	}
	st, err := r2.ContainerStatus(t.Context(), id)
	if err != nil || st.State != StateExited || st.ExitCode != 5 {
		t.Errorf("got %+v, %v; want exited 5", st, err)
	}
	waitLog(t, spec.LogPath, "stdout:mark-42\r")
}
