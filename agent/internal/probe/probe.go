package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// UserAgent is sent by HTTP and gRPC probes, "kube-probe/<major>.<minor>"
// of the Kubernetes version Skiff's API server reports.
const UserAgent = "kube-probe/1.32"

// maxOutput bounds the probe output kept (HTTP body, exec output), as the
// kubelet's 10 KiB.
const maxOutput = 10 << 10

// maxRedirects is the number of same-host redirects an HTTP probe follows.
const maxRedirects = 10

// Status is the outcome of a probe.
type Status int

// The outcomes. Unknown is a probe that could not run (a named port that
// does not exist, an exec that failed to start): the kubelet discards such
// results, and so does the Worker.
const (
	Unknown Status = iota
	Success
	Failure
)

func (s Status) String() string {
	switch s {
	case Success:
		return "Success"
	case Failure:
		return "Failure"
	default:
		return "Unknown"
	}
}

// Result is a probe outcome with its message: the HTTP body or exec output
// on success, the reason on failure (the text of the kubelet's Unhealthy
// event, e.g. "HTTP probe failed with statuscode: 500").
type Result struct {
	Status  Status
	Message string
	// Warning is set on a Success the kubelet reports as a warning: an
	// HTTP redirect to another host that was not followed.
	Warning bool
}

// ExecFunc runs cmd in the container and returns its exit code and
// combined output; err is for failures to run it at all. It must return
// when ctx ends (the probe's timeout).
type ExecFunc func(ctx context.Context, cmd []string) (exitCode int, output []byte, err error)

// DialFunc opens a connection (the net.Dialer signature).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Target is what a probe checks: the pod's address and the container.
type Target struct {
	// PodIP is the default host of httpGet, tcpSocket and grpc probes.
	PodIP string
	// Ports are the container's ports, for ports given by name.
	Ports []corev1.ContainerPort
	// Exec runs exec probes; nil makes them Unknown.
	Exec ExecFunc
	// Dial opens TCP connections; nil: a net.Dialer in the agent's network
	// namespace (pod IPs are reachable from the host, as for the kubelet).
	Dial DialFunc
}

// Check runs one probe against the target, within the probe's
// timeoutSeconds (default 1 s).
func Check(ctx context.Context, p *corev1.Probe, t Target) Result {
	timeout := time.Duration(p.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = time.Second
	}
	if p.HTTPGet != nil {
		// The client's own timeout, for the kubelet's message
		// "(Client.Timeout exceeded while awaiting headers)".
		return checkHTTP(ctx, p.HTTPGet, timeout, t)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.Exec != nil:
		return checkExec(ctx, p.Exec.Command, t)
	case p.TCPSocket != nil:
		return checkTCP(ctx, p.TCPSocket, t)
	case p.GRPC != nil:
		return checkGRPC(ctx, p.GRPC, timeout, t)
	}
	return Result{Status: Unknown, Message: "missing probe handler"}
}

func checkExec(ctx context.Context, cmd []string, t Target) Result {
	if t.Exec == nil {
		return Result{Status: Unknown, Message: "exec probes are not available for this container"}
	}
	type outcome struct {
		code int
		out  []byte
		err  error
	}
	done := make(chan outcome, 1) // the goroutine never blocks, even after a timeout
	go func() {
		code, out, err := t.Exec(ctx, cmd)
		done <- outcome{code, out, err}
	}()
	timedOut := func() Result {
		return Result{Status: Failure, Message: fmt.Sprintf("command %q timed out", strings.Join(cmd, " "))}
	}
	select {
	case <-ctx.Done():
		return timedOut()
	case o := <-done:
		if ctx.Err() != nil {
			return timedOut()
		}
		out := truncate(o.out)
		if o.err != nil {
			return Result{Status: Unknown, Message: o.err.Error()}
		}
		if o.code != 0 {
			return Result{Status: Failure, Message: out}
		}
		return Result{Status: Success, Message: out}
	}
}

func truncate(b []byte) string {
	if len(b) > maxOutput {
		b = b[:maxOutput]
	}
	return string(b)
}

// ResolvePort returns the port number of a probe's port: a number, or the
// name of one of the container's ports (or a number written as a string).
func ResolvePort(p intstr.IntOrString, ports []corev1.ContainerPort) (int, error) {
	var port int
	switch p.Type {
	case intstr.Int:
		port = p.IntValue()
	case intstr.String:
		found := false
		for _, cp := range ports {
			if cp.Name == p.StrVal {
				port, found = int(cp.ContainerPort), true
				break
			}
		}
		if !found {
			n, err := strconv.Atoi(p.StrVal)
			if err != nil {
				return 0, fmt.Errorf("port %s not found", p.StrVal)
			}
			port = n
		}
	default:
		return 0, fmt.Errorf("intOrString had no kind: %+v", p)
	}
	if port <= 0 || port >= 65536 {
		return port, fmt.Errorf("invalid port number: %v", port)
	}
	return port, nil
}

func (t Target) dialer() DialFunc {
	if t.Dial != nil {
		return t.Dial
	}
	return (&net.Dialer{}).DialContext
}

func hostOr(host, podIP string) string {
	if host != "" {
		return host
	}
	return podIP
}

func checkHTTP(ctx context.Context, g *corev1.HTTPGetAction, timeout time.Duration, t Target) Result {
	port, err := ResolvePort(g.Port, t.Ports)
	if err != nil {
		return Result{Status: Unknown, Message: err.Error()}
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	u, err := url.Parse(g.Path)
	if err != nil {
		u = &url.URL{Path: g.Path}
	}
	u.Scheme = scheme
	u.Host = net.JoinHostPort(hostOr(g.Host, t.PodIP), strconv.Itoa(port))

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Result{Status: Unknown, Message: err.Error()}
	}
	h := http.Header{}
	for _, kv := range g.HTTPHeaders {
		h.Add(kv.Name, kv.Value)
	}
	if _, ok := h["User-Agent"]; !ok {
		h.Set("User-Agent", UserAgent)
	}
	if _, ok := h["Accept"]; !ok {
		h.Set("Accept", "*/*")
	} else if h.Get("Accept") == "" {
		h.Del("Accept") // an explicitly empty Accept means none
	}
	req.Header = h
	req.Host = h.Get("Host")

	transport := &http.Transport{
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true}, // probes check liveness, not identity
		DisableKeepAlives:  true,
		DisableCompression: true,
		Proxy:              nil,
		DialContext:        t.dialer(),
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{
		Timeout:   timeout,
		Transport: transport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			// Like the kubelet: follow redirects on the same host only; a
			// redirect elsewhere ends the probe with that response.
			if req.URL.Hostname() != via[0].URL.Hostname() {
				return http.ErrUseLastResponse
			}
			if len(via) >= maxRedirects {
				return fmt.Errorf("stopped after %d redirects", maxRedirects)
			}
			return nil
		},
	}
	res, err := client.Do(req)
	if err != nil {
		return Result{Status: Failure, Message: err.Error()}
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxOutput))
	if err != nil {
		return Result{Status: Failure, Message: err.Error()}
	}
	switch {
	case res.StatusCode >= http.StatusOK && res.StatusCode < http.StatusMultipleChoices:
		return Result{Status: Success, Message: string(body)}
	case res.StatusCode >= http.StatusMultipleChoices && res.StatusCode < http.StatusBadRequest:
		return Result{Status: Success, Warning: true, Message: fmt.Sprintf("Probe terminated redirects, Response body: %v", string(body))}
	}
	return Result{Status: Failure, Message: fmt.Sprintf("HTTP probe failed with statuscode: %d", res.StatusCode)}
}

func checkTCP(ctx context.Context, s *corev1.TCPSocketAction, t Target) Result {
	port, err := ResolvePort(s.Port, t.Ports)
	if err != nil {
		return Result{Status: Unknown, Message: err.Error()}
	}
	conn, err := t.dialer()(ctx, "tcp", net.JoinHostPort(hostOr(s.Host, t.PodIP), strconv.Itoa(port)))
	if err != nil {
		return Result{Status: Failure, Message: err.Error()}
	}
	if err := conn.Close(); err != nil {
		return Result{Status: Success, Message: err.Error()}
	}
	return Result{Status: Success}
}

func checkGRPC(ctx context.Context, g *corev1.GRPCAction, timeout time.Duration, t Target) Result {
	if g.Port <= 0 || g.Port >= 65536 {
		return Result{Status: Unknown, Message: fmt.Sprintf("invalid port number: %v", g.Port)}
	}
	addr := net.JoinHostPort(t.PodIP, strconv.Itoa(int(g.Port)))
	dial := t.dialer()
	conn, err := grpc.DialContext(ctx, addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent(UserAgent),
		grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return dial(ctx, "tcp", a) }),
	)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return Result{Status: Failure, Message: fmt.Sprintf("timeout: failed to connect service %q within %v: %+v", addr, timeout, err)}
		}
		return Result{Status: Failure, Message: fmt.Sprintf("error: failed to connect service at %q: %+v", addr, err)}
	}
	defer conn.Close()
	service := ""
	if g.Service != nil {
		service = *g.Service
	}
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		st, ok := status.FromError(err)
		switch {
		case ok && st.Code() == codes.Unimplemented:
			return Result{Status: Failure, Message: fmt.Sprintf("this server doesn't implement the grpc health protocol (grpc.health.v1.Health): %s", st.Message())}
		case ok && st.Code() == codes.DeadlineExceeded:
			return Result{Status: Failure, Message: fmt.Sprintf("timeout: health rpc did not complete within %v", timeout)}
		}
		return Result{Status: Failure, Message: fmt.Sprintf("error: health rpc probe failed: %+v", err)}
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return Result{Status: Failure, Message: fmt.Sprintf("service unhealthy (responded with %q)", resp.GetStatus().String())}
	}
	return Result{Status: Success, Message: "service healthy"}
}
