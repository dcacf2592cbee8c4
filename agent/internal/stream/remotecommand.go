package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	rc "k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
	"k8s.io/streaming/pkg/httpstream/wsstream"

	"github.com/skiff-sh/skiff/agent/internal/containers"
)

// WebSocket remotecommand subprotocols that wsstream does not name.
const (
	wsV4Binary = "v4." + wsstream.ChannelWebSocketProtocol
	wsV4Base64 = "v4." + wsstream.Base64ChannelWebSocketProtocol
)

// spdyProtocols are the SPDY remotecommand versions served, preferred first.
var spdyProtocols = []string{rc.StreamProtocolV4Name, rc.StreamProtocolV3Name, rc.StreamProtocolV2Name, rc.StreamProtocolV1Name}

// commandOptions are an exec or attach request's query (PodExecOptions,
// PodAttachOptions).
type commandOptions struct {
	stdin, stdout, stderr, tty bool
	command                    []string
}

func parseCommandOptions(r *http.Request, exec bool) (commandOptions, error) {
	q := r.URL.Query()
	o := commandOptions{
		stdin:   queryBool(q, "stdin"),
		stdout:  queryBool(q, "stdout"),
		stderr:  queryBool(q, "stderr"),
		tty:     queryBool(q, "tty"),
		command: q["command"],
	}
	if o.tty {
		o.stderr = false // a terminal has one output
	}
	if !o.stdin && !o.stdout && !o.stderr {
		return o, apierrors.NewBadRequest("you must specify at least 1 of stdin, stdout, stderr")
	}
	if exec && len(o.command) == 0 {
		return o, apierrors.NewBadRequest("you must specify at least one command for the container")
	}
	return o, nil
}

// runFunc runs an exec or attach with the client's streams.
type runFunc func(ctx context.Context, s containers.Streams) (exitCode int, err error)

func (s *Server) serveExec(w http.ResponseWriter, r *http.Request) {
	ns, pod, container := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	o, err := parseCommandOptions(r, true)
	if err != nil {
		writeError(w, err)
		return
	}
	s.serveCommand(w, r, o, func(ctx context.Context, st containers.Streams) (int, error) {
		return s.cfg.Backend.Exec(ctx, ns, pod, container, o.command, st)
	})
}

func (s *Server) serveAttach(w http.ResponseWriter, r *http.Request) {
	ns, pod, container := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	o, err := parseCommandOptions(r, false)
	if err != nil {
		writeError(w, err)
		return
	}
	s.serveCommand(w, r, o, func(ctx context.Context, st containers.Streams) (int, error) {
		err := s.cfg.Backend.Attach(ctx, ns, pod, container, st)
		if err != nil && ctx.Err() != nil {
			err = nil // the client detached
		}
		return 0, err
	})
}

func (s *Server) serveCommand(w http.ResponseWriter, r *http.Request, o commandOptions, run runFunc) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		writeError(w, apierrors.NewMethodNotSupported(corev1.Resource("pods"), r.Method))
		return
	}
	if c, ok := s.cfg.Backend.(ContainerChecker); ok {
		if err := c.CheckContainer(r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")); err != nil {
			writeError(w, err)
			return
		}
	}
	log := s.log.With("pod", r.PathValue("ns")+"/"+r.PathValue("pod"), "container", r.PathValue("container"), "path", r.URL.Path)
	if wsstream.IsWebSocketRequest(r) {
		s.commandWebSocket(w, r, o, run, log)
		return
	}
	s.commandSPDY(w, r, o, run, log)
}

// exitStatus is what the error stream reports for a finished command.
func exitStatus(exitCode int, err error) metav1.Status {
	switch {
	case err != nil:
		return toStatus(err)
	case exitCode != 0:
		return metav1.Status{
			Status:  metav1.StatusFailure,
			Reason:  rc.NonZeroExitCodeReason,
			Message: fmt.Sprintf("command terminated with non-zero exit code: exit status %d", exitCode),
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{
				Type:    rc.ExitCodeCauseType,
				Message: strconv.Itoa(exitCode),
			}}},
		}
	}
	return metav1.Status{Status: metav1.StatusSuccess}
}

// writeExitStatus reports the end of a command on the error stream: a
// JSON metav1.Status for the versions that have it (v4, v5), else the
// failure's text alone (nothing on success).
func writeExitStatus(errStream io.Writer, jsonStatus bool, exitCode int, err error) error {
	st := exitStatus(exitCode, err)
	if jsonStatus {
		b, merr := statusJSON(st)
		if merr != nil {
			return merr
		}
		_, werr := errStream.Write(b)
		return werr
	}
	if st.Status == metav1.StatusSuccess {
		return nil
	}
	_, werr := io.WriteString(errStream, st.Message)
	return werr
}

// resizeEvents decodes the terminal sizes a client sends (JSON
// {"Width":w,"Height":h} one after another) into a channel, closed when
// the stream ends. done is closed when the stream has ended.
func resizeEvents(ctx context.Context, r io.Reader) (ch <-chan containers.TermSize, done <-chan struct{}) {
	out := make(chan containers.TermSize, 4)
	d := make(chan struct{})
	go func() {
		defer close(d)
		defer close(out)
		dec := json.NewDecoder(r)
		for {
			var sz struct{ Width, Height uint16 }
			if err := dec.Decode(&sz); err != nil {
				io.Copy(io.Discard, r) // wait for the end of the stream
				return
			}
			select {
			case out <- containers.TermSize{Width: sz.Width, Height: sz.Height}:
			case <-ctx.Done():
				io.Copy(io.Discard, r)
				return
			}
		}
	}()
	return out, d
}

// commandSPDY serves an exec or attach over SPDY/3.1: the client opens one
// stream per channel, named by its streamType header.
func (s *Server) commandSPDY(w http.ResponseWriter, r *http.Request, o commandOptions, run runFunc, log *slog.Logger) {
	protocol, err := httpstream.Handshake(r, w, spdyProtocols)
	if err != nil {
		return // Handshake answered: no common version
	}
	type newStream struct {
		stream    httpstream.Stream
		replySent <-chan struct{}
	}
	streams := make(chan newStream)
	stop := make(chan struct{})
	defer close(stop)
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(st httpstream.Stream, replySent <-chan struct{}) error {
		select {
		case streams <- newStream{st, replySent}:
			return nil
		case <-stop:
			return errors.New("stream: no more streams expected")
		}
	})
	if conn == nil {
		return // the upgrader answered
	}
	defer conn.Close()
	conn.SetIdleTimeout(s.cfg.StreamIdleTimeout)

	expected := map[string]bool{corev1.StreamTypeError: true}
	if o.stdin {
		expected[corev1.StreamTypeStdin] = true
	}
	if o.stdout {
		expected[corev1.StreamTypeStdout] = true
	}
	if o.stderr {
		expected[corev1.StreamTypeStderr] = true
	}
	if o.tty && (protocol == rc.StreamProtocolV3Name || protocol == rc.StreamProtocolV4Name) {
		expected[corev1.StreamTypeResize] = true
	}
	got := map[string]httpstream.Stream{}
	var replies []<-chan struct{}
	timeout := time.NewTimer(s.cfg.StreamCreationTimeout)
	defer timeout.Stop()
	for len(got) < len(expected) {
		select {
		case ns := <-streams:
			typ := ns.stream.Headers().Get(corev1.StreamType)
			if !expected[typ] || got[typ] != nil {
				log.Debug("unexpected stream refused", "streamType", typ)
				ns.stream.Reset()
				continue
			}
			got[typ] = ns.stream
			replies = append(replies, ns.replySent)
		case <-timeout.C:
			log.Debug("timed out waiting for the client's streams", "got", len(got), "want", len(expected))
			return
		case <-conn.CloseChan():
			return
		case <-r.Context().Done():
			return
		}
	}
	// Write nothing before the client has the replies to its streams.
	for _, rs := range replies {
		select {
		case <-rs:
		case <-timeout.C:
			return
		case <-conn.CloseChan():
			return
		}
	}

	log.Debug("streams open", "protocol", "SPDY "+protocol)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-conn.CloseChan():
			cancel()
		case <-ctx.Done():
		}
	}()
	st := containers.Streams{TTY: o.tty}
	if x := got[corev1.StreamTypeStdin]; x != nil {
		st.Stdin = x
	}
	if x := got[corev1.StreamTypeStdout]; x != nil {
		st.Stdout = x
	}
	if x := got[corev1.StreamTypeStderr]; x != nil {
		st.Stderr = x
	}
	if x := got[corev1.StreamTypeResize]; x != nil {
		st.Resize, _ = resizeEvents(ctx, x)
	}
	code, err := run(ctx, st)
	if ctx.Err() != nil && r.Context().Err() == nil {
		return // the client went away: nobody to report to
	}
	errStream := got[corev1.StreamTypeError]
	if werr := writeExitStatus(errStream, protocol == rc.StreamProtocolV4Name, code, err); werr != nil {
		log.Debug("writing the exit status", "err", werr)
	}
	// The error stream ends first: a v1 client stops at whichever ends
	// first, the error stream or the output.
	for _, typ := range []string{corev1.StreamTypeError, corev1.StreamTypeStdout, corev1.StreamTypeStderr} {
		if x := got[typ]; x != nil {
			x.Close()
		}
	}
}

// commandWebSocket serves an exec or attach over a WebSocket: one binary
// message per write, its first byte the channel (0 stdin, 1 stdout, 2
// stderr, 3 error, 4 resize; v5 adds 255 = close a channel).
func (s *Server) commandWebSocket(w http.ResponseWriter, r *http.Request, o commandOptions, run runFunc, log *slog.Logger) {
	ch := func(on bool, t wsstream.ChannelType) wsstream.ChannelType {
		if on {
			return t
		}
		return wsstream.IgnoreChannel
	}
	channels := []wsstream.ChannelType{
		ch(o.stdin, wsstream.ReadChannel),
		ch(o.stdout, wsstream.WriteChannel),
		ch(o.stderr, wsstream.WriteChannel),
		wsstream.WriteChannel,
		// Always read: its end tells that the connection is gone.
		wsstream.ReadChannel,
	}
	binary := wsstream.ChannelProtocolConfig{Binary: true, Channels: channels}
	base64 := wsstream.ChannelProtocolConfig{Binary: false, Channels: channels}
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		rc.StreamProtocolV5Name:                 binary,
		wsV4Binary:                              binary,
		wsV4Base64:                              base64,
		wsstream.ChannelWebSocketProtocol:       binary,
		wsstream.Base64ChannelWebSocketProtocol: base64,
	})
	conn.SetIdleTimeout(s.cfg.StreamIdleTimeout)
	protocol, rw, err := conn.Open(w, r)
	if err != nil {
		log.Debug("websocket upgrade refused", "err", err)
		return // the websocket server answered
	}
	defer conn.Close()
	log.Debug("streams open", "protocol", "WebSocket "+protocol)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	st := containers.Streams{TTY: o.tty}
	if o.stdin {
		st.Stdin = rw[rc.StreamStdIn]
	}
	if o.stdout {
		st.Stdout = rw[rc.StreamStdOut]
	}
	if o.stderr {
		st.Stderr = rw[rc.StreamStdErr]
	}
	sizes, resizeDone := resizeEvents(ctx, rw[rc.StreamResize])
	if o.tty {
		st.Resize = sizes
	}
	go func() {
		select {
		case <-resizeDone: // the connection ended
			cancel()
		case <-ctx.Done():
		}
	}()
	code, err := run(ctx, st)
	if ctx.Err() != nil && r.Context().Err() == nil {
		return
	}
	jsonStatus := protocol == rc.StreamProtocolV5Name || protocol == wsV4Binary || protocol == wsV4Base64
	if werr := writeExitStatus(rw[rc.StreamErr], jsonStatus, code, err); werr != nil {
		log.Debug("writing the exit status", "err", werr)
	}
}
