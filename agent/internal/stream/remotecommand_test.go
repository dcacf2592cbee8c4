package stream

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	rc "k8s.io/apimachinery/pkg/util/remotecommand"
	restclient "k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/client-go/util/exec"
	"k8s.io/streaming/pkg/httpstream"
)

// executor builds a client-go executor of one kind for a URL.
type executor struct {
	name string
	// exitCodes: the protocol reports exit codes (v4, v5); older ones
	// report the failure's text only.
	exitCodes bool
	// closesStdin: the protocol tells the end of stdin (not v1).
	closesStdin bool
	// resize: the protocol carries terminal sizes (v3 on).
	resize bool
	make   func(cfg *restclient.Config, u *url.URL) (remotecommand.Executor, error)
}

func spdyExecutor(protocols ...string) func(*restclient.Config, *url.URL) (remotecommand.Executor, error) {
	return func(cfg *restclient.Config, u *url.URL) (remotecommand.Executor, error) {
		tr, up, err := spdy.RoundTripperFor(cfg)
		if err != nil {
			return nil, err
		}
		return remotecommand.NewSPDYExecutorForProtocols(tr, up, "POST", u, protocols...)
	}
}

func fallbackExecutor(wsProtocols ...string) func(*restclient.Config, *url.URL) (remotecommand.Executor, error) {
	return func(cfg *restclient.Config, u *url.URL) (remotecommand.Executor, error) {
		ws, err := remotecommand.NewWebSocketExecutorForProtocols(cfg, "GET", u.String(), wsProtocols...)
		if err != nil {
			return nil, err
		}
		sp, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
		if err != nil {
			return nil, err
		}
		// kubectl's rule for falling back.
		return remotecommand.NewFallbackExecutor(ws, sp, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		})
	}
}

var executors = []executor{
	{"spdy v4", true, true, true, spdyExecutor(rc.StreamProtocolV4Name)},
	{"spdy v3", false, true, true, spdyExecutor(rc.StreamProtocolV3Name)},
	{"spdy v2", false, true, false, spdyExecutor(rc.StreamProtocolV2Name)},
	{"spdy v1", false, false, false, spdyExecutor(rc.StreamProtocolV1Name)},
	{"websocket v5", true, true, true, func(cfg *restclient.Config, u *url.URL) (remotecommand.Executor, error) {
		return remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
	}},
	{"websocket v4", true, false, true, func(cfg *restclient.Config, u *url.URL) (remotecommand.Executor, error) {
		return remotecommand.NewWebSocketExecutorForProtocols(cfg, "GET", u.String(), rc.StreamProtocolV4Name)
	}},
	{"kubectl fallback (websocket)", true, true, true, fallbackExecutor(rc.StreamProtocolV5Name)},
	// A websocket protocol the agent does not speak is refused cleanly,
	// so the client falls back to SPDY.
	{"kubectl fallback (to spdy)", true, true, true, fallbackExecutor("v9.channel.k8s.io")},
}

func execURL(cfg *restclient.Config, path string, q url.Values) *url.URL {
	u, _ := url.Parse(cfg.Host)
	u.Path = path
	u.RawQuery = q.Encode()
	return u
}

func execQuery(stdin, tty bool, cmd ...string) url.Values {
	q := url.Values{"command": cmd, "stdout": {"true"}}
	if stdin {
		q.Set("stdin", "true")
	}
	if tty {
		q.Set("tty", "true")
	} else {
		q.Set("stderr", "true")
	}
	return q
}

// sizeQueue hands out sizes, then waits until closed.
type sizeQueue struct {
	sizes []remotecommand.TerminalSize
	done  chan struct{}
	mu    sync.Mutex
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	q.mu.Lock()
	if len(q.sizes) > 0 {
		s := q.sizes[0]
		q.sizes = q.sizes[1:]
		q.mu.Unlock()
		return &s
	}
	q.mu.Unlock()
	<-q.done
	return nil
}

func TestExec(t *testing.T) {
	e := startServer(t, &fakeBackend{})
	for _, target := range []string{"direct", "through a proxy"} {
		var cfg *restclient.Config
		if target == "direct" {
			cfg = e.restConfig(t, DefaultAllowedUser)
		} else {
			cfg = e.viaProxy(t)
		}
		for _, ex := range executors {
			t.Run(target+"/"+ex.name, func(t *testing.T) {
				racy := ex.name == "spdy v1" // see below
				run := func(q url.Values, opts remotecommand.StreamOptions) (string, string, error) {
					t.Helper()
					stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
					opts.Stdout = stdout
					if !opts.Tty {
						opts.Stderr = stderr
					}
					x, err := ex.make(cfg, execURL(cfg, "/exec/default/p1/main", q))
					if err != nil {
						t.Fatal(err)
					}
					err = x.StreamWithContext(t.Context(), opts)
					if racy {
						// client-go's v1 returns before it has copied the
						// output (issue 13394): wait until it is quiet.
						prev := ""
						for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
							if cur := stdout.String() + stderr.String(); cur != "" && cur == prev {
								break
							} else {
								prev = cur
							}
						}
					}
					return stdout.String(), stderr.String(), err
				}

				out, _, err := run(execQuery(false, false, "echo", "hello", "world"), remotecommand.StreamOptions{})
				if err != nil || out != "hello world\n" {
					t.Errorf("echo: got %q, %v; want %q, nil", out, err, "hello world\n")
				}

				out, errOut, err := run(execQuery(false, false, "exit", "3"), remotecommand.StreamOptions{})
				if !racy && (errOut != "bye\n" || out != "") { // v1 may lose the output, see above
					t.Errorf("exit 3: got stdout %q stderr %q, want stderr %q", out, errOut, "bye\n")
				}
				var code exec.CodeExitError
				switch {
				case racy:
					// client-go's v1 returns nil when the output ends
					// before it has read the error stream.
				case err == nil:
					t.Errorf("exit 3: no error")
				case ex.exitCodes && (!errors.As(err, &code) || code.Code != 3):
					t.Errorf("exit 3: got %v, want exit code 3", err)
				case !ex.exitCodes && !strings.Contains(err.Error(), "exit status 3"):
					t.Errorf("exit 3: got %v, want a message with the exit status", err)
				}

				_, _, err = run(execQuery(false, false, "fail"), remotecommand.StreamOptions{})
				if !racy && (err == nil || !strings.Contains(err.Error(), "the runtime is on fire")) {
					t.Errorf("fail: got %v, want the backend's error", err)
				}

				if ex.closesStdin {
					out, _, err = run(execQuery(true, false, "cat"), remotecommand.StreamOptions{Stdin: strings.NewReader("some input\n")})
					if err != nil || out != "some input\n" {
						t.Errorf("cat: got %q, %v; want %q, nil", out, err, "some input\n")
					}
				}

				if ex.resize {
					q := &sizeQueue{sizes: []remotecommand.TerminalSize{{Width: 80, Height: 24}, {Width: 132, Height: 43}}, done: make(chan struct{})}
					out, _, err = run(execQuery(false, true, "resize", "2"), remotecommand.StreamOptions{Tty: true, TerminalSizeQueue: q})
					close(q.done)
					if err != nil || out != "80x24\n132x43\n" {
						t.Errorf("tty resize: got %q, %v; want %q, nil", out, err, "80x24\n132x43\n")
					}
				}
			})
		}
	}
}

func TestExecRefused(t *testing.T) {
	e := startServer(t, &fakeBackend{})
	for _, tc := range []struct {
		name, path string
		q          url.Values
		want       string
	}{
		{"no command", "/exec/default/p1/main", url.Values{"stdout": {"true"}}, "you must specify at least one command"},
		{"no stream", "/exec/default/p1/main", url.Values{"command": {"echo"}}, "at least 1 of stdin, stdout, stderr"},
		{"container not running", "/exec/default/p1/gone", execQuery(false, false, "echo"), "container gone is not running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.restConfig(t, DefaultAllowedUser)
			x, err := fallbackExecutor(rc.StreamProtocolV5Name)(cfg, execURL(cfg, tc.path, tc.q))
			if err != nil {
				t.Fatal(err)
			}
			err = x.StreamWithContext(t.Context(), remotecommand.StreamOptions{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestAttach(t *testing.T) {
	e := startServer(t, &fakeBackend{})
	for _, ex := range executors {
		if !ex.closesStdin {
			continue
		}
		t.Run(ex.name, func(t *testing.T) {
			cfg := e.restConfig(t, DefaultAllowedUser)
			q := url.Values{"stdin": {"true"}, "stdout": {"true"}, "stderr": {"true"}}
			x, err := ex.make(cfg, execURL(cfg, "/attach/default/p1/main", q))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err = x.StreamWithContext(t.Context(), remotecommand.StreamOptions{Stdin: strings.NewReader("typed\n"), Stdout: &out, Stderr: &bytes.Buffer{}})
			if err != nil || out.String() != "attached\ntyped\n" {
				t.Fatalf("got %q, %v; want %q, nil", out.String(), err, "attached\ntyped\n")
			}
		})
	}
}

// TestAttachDetach: a client that goes away ends the backend's Attach
// (its context), while the server keeps running.
func TestAttachDetach(t *testing.T) {
	b := &fakeBackend{}
	e := startServer(t, b)
	cfg := e.restConfig(t, DefaultAllowedUser)
	for _, ex := range executors[:6] {
		t.Run(ex.name, func(t *testing.T) {
			q := url.Values{"stdout": {"true"}}
			x, err := ex.make(cfg, execURL(cfg, "/attach/default/p1/main", q))
			if err != nil {
				t.Fatal(err)
			}
			before := b.attachesEnded.Load()
			out := &lockedBuffer{}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- x.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: out}) }()
			deadline := time.Now().Add(10 * time.Second)
			for out.String() != "attached\n" {
				if time.Now().After(deadline) {
					t.Fatalf("got %q, want %q", out.String(), "attached\n")
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			<-done
			for b.attachesEnded.Load() == before {
				if time.Now().After(deadline) {
					t.Fatal("the backend's Attach still runs after the client went away")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
