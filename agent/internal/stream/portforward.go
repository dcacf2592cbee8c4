package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	pfconst "k8s.io/apimachinery/pkg/util/portforward"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
	"k8s.io/streaming/pkg/httpstream/wsstream"
)

// servePortForward serves `kubectl port-forward`: SPDY portforward.k8s.io,
// directly or tunneled in a WebSocket (SPDY/3.1+portforward.k8s.io, what
// kubectl 1.31+ tries first). Each forwarded connection is a pair of
// streams (data, error) sharing a requestID header, with the pod's port in
// the port header; the data stream is joined to 127.0.0.1:port dialed in
// the pod's network namespace.
func (s *Server) servePortForward(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		writeError(w, apierrors.NewMethodNotSupported(corev1.Resource("pods"), r.Method))
		return
	}
	ns, pod := r.PathValue("ns"), r.PathValue("pod")
	netns, err := s.cfg.Backend.PodNetNS(ns, pod)
	if err != nil {
		writeError(w, err)
		return
	}
	log := s.log.With("pod", ns+"/"+pod, "path", r.URL.Path)
	pf := &portForwarder{s: s, log: log, pod: ns + "/" + pod, netns: netns, streams: make(chan httpstream.Stream), stop: make(chan struct{})}
	defer close(pf.stop)

	var conn httpstream.Connection
	if wsstream.IsWebSocketRequest(r) {
		if !wsstream.IsWebSocketRequestWithTunnelingProtocol(r) {
			// The older websocket port-forward protocol (ports in the
			// query) is not served; kubectl never uses it.
			writeError(w, apierrors.NewBadRequest("websocket port-forward needs the "+pfconst.WebsocketsSPDYTunnelingPortForwardV1+" subprotocol"))
			return
		}
		up := gwebsocket.Upgrader{
			Subprotocols: []string{pfconst.WebsocketsSPDYTunnelingPortForwardV1},
			// Only the API server gets here (client certificate), and it
			// already checked the user's origin.
			CheckOrigin: func(*http.Request) bool { return true },
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			log.Debug("websocket upgrade failed", "err", err)
			return // the upgrader answered
		}
		if ws.Subprotocol() != pfconst.WebsocketsSPDYTunnelingPortForwardV1 {
			ws.Close()
			return
		}
		conn, err = spdy.NewServerConnection(portforward.NewTunnelingConnection("server", ws), pf.newStream)
		if err != nil {
			log.Debug("tunneled SPDY connection", "err", err)
			ws.Close()
			return
		}
	} else {
		if _, err := httpstream.Handshake(r, w, []string{pfconst.PortForwardV1Name}); err != nil {
			return // Handshake answered
		}
		conn = spdy.NewResponseUpgrader().UpgradeResponse(w, r, pf.newStream)
		if conn == nil {
			return // the upgrader answered
		}
	}
	defer conn.Close()
	conn.SetIdleTimeout(s.cfg.StreamIdleTimeout)
	log.Debug("port-forward open", "websocket", wsstream.IsWebSocketRequest(r))
	pf.serve(r.Context(), conn)
}

type portForwarder struct {
	s       *Server
	log     *slog.Logger
	pod     string
	netns   string
	streams chan httpstream.Stream
	stop    chan struct{} // closed when serve is done: streams are refused
}

// newStream is the connection's NewStreamHandler: it hands the stream to
// serve (called from the connection's frame loop, which waits for it).
func (pf *portForwarder) newStream(st httpstream.Stream, _ <-chan struct{}) error {
	switch t := st.Headers().Get(corev1.StreamType); t {
	case corev1.StreamTypeData, corev1.StreamTypeError:
	default:
		return fmt.Errorf("stream: invalid stream type %q", t)
	}
	select {
	case pf.streams <- st:
		return nil
	case <-pf.stop:
		return errors.New("stream: port-forward connection closing")
	}
}

// pfPair is one forwarded connection's streams.
type pfPair struct {
	data, err httpstream.Stream
	created   time.Time
}

// requestID is a stream's pair key: its requestID header or, from clients
// that do not send one, derived from the stream ID (the client creates
// the error stream, then the data stream: consecutive odd IDs).
func requestID(st httpstream.Stream) string {
	if id := st.Headers().Get(corev1.PortForwardRequestIDHeader); id != "" {
		return id
	}
	id := st.Identifier()
	if st.Headers().Get(corev1.StreamType) == corev1.StreamTypeData {
		id -= 2
	}
	return strconv.FormatUint(uint64(id), 10)
}

// serve pairs the client's streams and forwards each pair until the
// connection closes or ctx ends, then waits for the forwards.
func (pf *portForwarder) serve(ctx context.Context, conn httpstream.Connection) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	pairs := map[string]*pfPair{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-conn.CloseChan():
			return
		case <-tick.C:
			for id, p := range pairs {
				if time.Since(p.created) > pf.s.cfg.StreamCreationTimeout {
					pf.log.Debug("port-forward stream pair incomplete", "requestID", id)
					if p.err != nil {
						io.WriteString(p.err, "timed out waiting for the data stream")
						p.err.Close()
					}
					for _, st := range []httpstream.Stream{p.data, p.err} {
						if st != nil {
							st.Reset()
						}
					}
					delete(pairs, id)
				}
			}
		case st := <-pf.streams:
			id := requestID(st)
			p := pairs[id]
			if p == nil {
				p = &pfPair{created: time.Now()}
				pairs[id] = p
			}
			if st.Headers().Get(corev1.StreamType) == corev1.StreamTypeData {
				if p.data != nil {
					st.Reset()
					continue
				}
				p.data = st
			} else {
				if p.err != nil {
					st.Reset()
					continue
				}
				p.err = st
			}
			if p.data != nil && p.err != nil {
				delete(pairs, id)
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer conn.RemoveStreams(p.data, p.err)
					pf.forward(ctx, p)
				}()
			}
		}
	}
}

// forward joins a pair's data stream to the pod's port; a failure is
// written on the error stream (kubectl prints it).
func (pf *portForwarder) forward(ctx context.Context, p *pfPair) {
	portText := p.data.Headers().Get(corev1.PortHeader)
	port, perr := strconv.ParseUint(portText, 10, 16)
	var err error
	if perr != nil || port == 0 {
		err = fmt.Errorf("invalid port %q", portText)
	} else {
		err = pf.copy(ctx, uint16(port), p.data)
	}
	if err != nil {
		pf.log.Debug("port-forward", "port", port, "err", err)
		fmt.Fprintf(p.err, "error forwarding port %d to pod %s: %v", port, pf.pod, err)
	}
	p.err.Close()
	p.data.Close()
}

// copy connects to the port and copies both ways until the pod's side
// ends (its output is then complete), the client's data stream is reset,
// or ctx ends.
func (pf *portForwarder) copy(ctx context.Context, port uint16, data httpstream.Stream) error {
	c, err := dialPod(ctx, pf.netns, port)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	go func() {
		// Client → pod; the client's EOF is passed on as a half-close.
		io.Copy(c, data)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	if _, err := io.Copy(data, c); err != nil && ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// dialPod connects to the port on the loopback of the network namespace
// at netns ("" = this process's), IPv4 first, then IPv6.
func dialPod(ctx context.Context, netns string, port uint16) (net.Conn, error) {
	dial := func() (net.Conn, error) {
		d := net.Dialer{Timeout: 10 * time.Second}
		p := strconv.Itoa(int(port))
		c, err := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
		if err != nil && errors.Is(err, syscall.ECONNREFUSED) {
			if c6, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p)); err6 == nil {
				return c6, nil
			}
		}
		return c, err
	}
	if netns == "" {
		return dial()
	}
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		// This goroutine's thread enters the pod's network namespace and
		// is never unlocked: a goroutine that exits while locked takes
		// its thread with it, so no other goroutine ever runs there. The
		// socket belongs to the namespace it was created in, so the
		// connection is used from any goroutine afterwards.
		runtime.LockOSThread()
		f, err := os.Open(netns)
		if err != nil {
			res <- result{nil, fmt.Errorf("pod network namespace: %w", err)}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			res <- result{nil, fmt.Errorf("entering the pod network namespace %s: %w", netns, err)}
			return
		}
		c, err := dial()
		res <- result{c, err}
	}()
	r := <-res
	return r.c, r.err
}
