// Package stream owns the agent's TLS endpoint that the API server calls
// for pods/log, pods/exec, pods/attach and pods/portforward (as the
// kubelet's port 10250): it speaks the Kubernetes streaming protocols
// (SPDY/3.1 remotecommand v1–v4 and port-forward, WebSocket remotecommand
// v1, v4 and v5.channel.k8s.io, SPDY port-forward tunneled over
// WebSocket) and leaves the containers to a Backend.
//
// Only clients whose certificate, verified against Config.TLS.ClientCAs,
// has a common name in Config.AllowedUsers get in: the API server
// ("system:skiff-apiserver"); a client without a certificate fails the
// TLS handshake, others get 403.
//
// Call sequence:
//
//	cfg := stream.DefaultConfig()
//	cfg.TLS, cfg.Backend = serving, pods // plus Addr, Logger
//	srv, err := stream.New(cfg)
//	err = srv.Listen()   // optional: binds now, so srv.Addr() is known
//	err = srv.Run(ctx)   // serves until ctx ends; returns after every stream ended
//
// Paths (the kubelet's, with the API server's query):
//
//	GET      /containerLogs/{ns}/{pod}/{container}  follow previous tailLines sinceSeconds sinceTime timestamps limitBytes
//	GET|POST /exec/{ns}/{pod}/{container}           command (repeated) stdin stdout stderr tty
//	GET|POST /attach/{ns}/{pod}/{container}         stdin stdout stderr tty
//	GET|POST /portForward/{ns}/{pod}
package stream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-sh/skiff/agent/internal/containers"
)

// Backend runs what the endpoint is asked for; the pod manager implements
// it. Its errors that are API statuses (apierrors.NewNotFound,
// NewBadRequest ...) reach the client as such, as the kubelet's do; other
// errors become internal errors.
type Backend interface {
	// LogPath returns the log file (podlogs format) of the container's
	// current attempt or, with previous, of the attempt before it.
	LogPath(namespace, pod, container string, previous bool) (string, error)
	// Exec runs cmd in the container and returns its exit code. ctx ends
	// when the client goes away or the server stops.
	Exec(ctx context.Context, namespace, pod, container string, cmd []string, s containers.Streams) (exitCode int, err error)
	// Attach connects s to the container's main process until it exits or
	// ctx ends (the client detached).
	Attach(ctx context.Context, namespace, pod, container string, s containers.Streams) error
	// PodNetNS returns the path of the pod's network namespace, where
	// port-forward connects to 127.0.0.1:port; "" is the host's (a
	// hostNetwork pod).
	PodNetNS(namespace, pod string) (string, error)
}

// ContainerChecker is an optional ability of a Backend: CheckContainer is
// called before an exec or attach is upgraded, so that a request for a
// container that does not exist or does not run fails with a plain HTTP
// error (kubectl prints it) rather than on the error stream.
type ContainerChecker interface {
	CheckContainer(namespace, pod, container string) error
}

// LogFollower is an optional ability of a Backend: while `logs -f` follows
// path, LogActive is asked each time the end of the log is reached; false
// (the container exited) ends the response once the log is drained, as
// the kubelet does.
type LogFollower interface {
	LogActive(namespace, pod, container, path string) bool
}

// DefaultAllowedUser is the common name of the API server's client
// certificate (controlplane/master.APIServerUser).
const DefaultAllowedUser = "system:skiff-apiserver"

// Config configures a Server.
type Config struct {
	// Addr is where Listen binds (TCP); ignored when Listener is set.
	Addr string
	// Listener, when set, is served instead of binding Addr (a plain TCP
	// listener: TLS is added on top). Tests use it or call Listen.
	Listener net.Listener
	// TLS has the serving certificate and ClientCAs (the cluster CA).
	// ClientAuth is forced to RequireAndVerifyClientCert and HTTP/2 is
	// not offered (streams need connection hijacking).
	TLS *tls.Config
	// AllowedUsers are the client certificate common names let in.
	AllowedUsers []string
	Backend      Backend
	// StreamIdleTimeout closes an exec, attach or port-forward connection
	// without traffic for that long (the kubelet's
	// streamingConnectionIdleTimeout).
	StreamIdleTimeout time.Duration
	// StreamCreationTimeout bounds how long a client may take to open the
	// streams of a request after the upgrade.
	StreamCreationTimeout time.Duration
	Logger                *slog.Logger
}

// DefaultConfig returns the defaults: Addr ":10250", the API server as the
// only allowed user, the kubelet's 4 h idle and 30 s creation timeouts.
func DefaultConfig() Config {
	return Config{
		Addr:                  ":10250",
		AllowedUsers:          []string{DefaultAllowedUser},
		StreamIdleTimeout:     4 * time.Hour,
		StreamCreationTimeout: 30 * time.Second,
		Logger:                slog.Default(),
	}
}

// ErrInvalidConfig wraps every error of Config.Validate.
var ErrInvalidConfig = errors.New("stream: invalid config")

// Validate reports the first problem of c.
func (c Config) Validate() error {
	switch {
	case c.Addr == "" && c.Listener == nil:
		return fmt.Errorf("%w: no Addr", ErrInvalidConfig)
	case c.TLS == nil:
		return fmt.Errorf("%w: no TLS config", ErrInvalidConfig)
	case len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil:
		return fmt.Errorf("%w: TLS config has no serving certificate", ErrInvalidConfig)
	case c.TLS.ClientCAs == nil:
		return fmt.Errorf("%w: TLS config has no ClientCAs to verify the API server with", ErrInvalidConfig)
	case len(c.AllowedUsers) == 0:
		return fmt.Errorf("%w: no AllowedUsers", ErrInvalidConfig)
	case c.Backend == nil:
		return fmt.Errorf("%w: no Backend", ErrInvalidConfig)
	case c.StreamIdleTimeout <= 0 || c.StreamCreationTimeout <= 0:
		return fmt.Errorf("%w: stream timeouts must be positive", ErrInvalidConfig)
	}
	return nil
}

// Server is the agent's streaming endpoint.
type Server struct {
	cfg     Config
	log     *slog.Logger
	tls     *tls.Config
	handler http.Handler

	mu      sync.Mutex
	ln      net.Listener // set by Listen
	ran     bool
	closing bool           // Run is stopping: no new request starts
	active  sync.WaitGroup // requests being served, hijacked ones included
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := cfg.TLS.Clone()
	t.ClientAuth = tls.RequireAndVerifyClientCert
	t.NextProtos = []string{"http/1.1"}
	if t.MinVersion == 0 {
		t.MinVersion = tls.VersionTLS12
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "stream"), tls: t}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", s.serveLogs)
	mux.HandleFunc("/exec/{ns}/{pod}/{container}", s.serveExec)
	mux.HandleFunc("/attach/{ns}/{pod}/{container}", s.serveAttach)
	mux.HandleFunc("/portForward/{ns}/{pod}", s.servePortForward)
	mux.HandleFunc("/portForward/{ns}/{pod}/{uid}", s.servePortForward)
	s.handler = s.authorize(mux)
	return s, nil
}

// Listen binds the listener (Config.Listener or Config.Addr) if that is
// not done yet; Addr is then known. Run calls it.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("stream: %w", err)
		}
	}
	s.ln = ln
	return nil
}

// Addr returns the bound address (host:port), or "" before Listen.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Handler returns the endpoint's handler, authorization included, for
// serving it elsewhere (it needs requests with verified client
// certificates and connections that can be hijacked).
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves until ctx ends, then closes the listener, ends every
// request's context (following logs, execs, attaches, port-forwards) and
// returns once all of them returned. It may be called once.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.ran {
		s.mu.Unlock()
		return errors.New("stream: Run called twice")
	}
	s.ran = true
	ln := s.ln
	s.mu.Unlock()

	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.log.Info("serving", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(ln, s.tls)) }()
	var err error
	select {
	case err = <-errc:
		err = fmt.Errorf("stream: %w", err)
	case <-ctx.Done():
		// Requests see ctx end (BaseContext) and return; Shutdown waits
		// for the plain ones, active for the hijacked ones.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if serr := srv.Shutdown(sctx); serr != nil {
			srv.Close()
		}
		cancel()
		<-errc
	}
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.active.Wait()
	return err
}

// authorize lets in the allowed users and counts the requests in flight.
func (s *Server) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			writeError(w, apierrors.NewUnauthorized("Unauthorized"))
			return
		}
		user := r.TLS.VerifiedChains[0][0].Subject.CommonName
		if !slices.Contains(s.cfg.AllowedUsers, user) {
			s.log.Warn("request refused", "user", user, "path", r.URL.Path)
			writeError(w, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "",
				fmt.Errorf("user %q may not use the node agent's endpoint (%s %s)", user, r.Method, r.URL.Path)))
			return
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			writeError(w, apierrors.NewServiceUnavailable("the node agent is shutting down"))
			return
		}
		s.active.Add(1)
		s.mu.Unlock()
		defer s.active.Done()
		next.ServeHTTP(w, r)
	})
}

// writeError writes err as a metav1.Status, as the API server would: the
// API server passes the agent's response through, so kubectl prints it.
func writeError(w http.ResponseWriter, err error) {
	st := toStatus(err)
	body, merr := statusJSON(st)
	if merr != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(int(st.Code))
	w.Write(body)
}
