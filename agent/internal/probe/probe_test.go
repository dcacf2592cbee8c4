package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func hostPort(t *testing.T, rawURL string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(rawURL, "http://"), "https://"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

func TestHTTPGet(t *testing.T) {
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "fine") })
	mux.HandleFunc("/500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	mux.HandleFunc("/404", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) })
	mux.HandleFunc("/399", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	mux.HandleFunc("/same", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/500", http.StatusFound) })
	mux.HandleFunc("/other", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://elsewhere.invalid/ok", http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		// 200 only when the kubelet's headers and the probe's own arrived.
		if r.Header.Get("User-Agent") != UserAgent || r.Header.Get("Accept") != "*/*" ||
			r.Header.Get("X-Custom") != "yes" || r.Host != "example.test" {
			w.WriteHeader(400)
			fmt.Fprintf(w, "ua=%q accept=%q custom=%q host=%q", r.Header.Get("User-Agent"), r.Header.Get("Accept"), r.Header.Get("X-Custom"), r.Host)
			return
		}
		fmt.Fprint(w, "headers ok")
	})
	mux.HandleFunc("/ua", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("User-Agent") != "mine" {
			w.WriteHeader(400)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	tlsSrv := httptest.NewTLSServer(mux)
	t.Cleanup(tlsSrv.Close)
	ip, port := hostPort(t, srv.URL)
	_, tlsPort := hostPort(t, tlsSrv.URL)

	ports := []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}
	tests := []struct {
		name    string
		get     corev1.HTTPGetAction
		status  Status
		warning bool
		msg     string
	}{
		{name: "200", get: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromInt32(int32(port))}, status: Success, msg: "fine"},
		{name: "2xx", get: corev1.HTTPGetAction{Path: "/399", Port: intstr.FromInt32(int32(port))}, status: Success},
		{name: "500", get: corev1.HTTPGetAction{Path: "/500", Port: intstr.FromInt32(int32(port))}, status: Failure, msg: "HTTP probe failed with statuscode: 500"},
		{name: "404", get: corev1.HTTPGetAction{Path: "/404", Port: intstr.FromInt32(int32(port))}, status: Failure, msg: "HTTP probe failed with statuscode: 404"},
		{name: "named port", get: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromString("http")}, status: Success, msg: "fine"},
		{name: "port number as string", get: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromString(strconv.Itoa(port))}, status: Success},
		{name: "unknown named port", get: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromString("metrics")}, status: Unknown, msg: "port metrics not found"},
		{name: "bad port", get: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromInt32(70000)}, status: Unknown, msg: "invalid port number: 70000"},
		{name: "redirect same host followed", get: corev1.HTTPGetAction{Path: "/same", Port: intstr.FromInt32(int32(port))}, status: Failure, msg: "statuscode: 500"},
		{name: "redirect other host not followed", get: corev1.HTTPGetAction{Path: "/other", Port: intstr.FromInt32(int32(port))}, status: Success, warning: true, msg: "Probe terminated redirects"},
		{name: "redirect loop", get: corev1.HTTPGetAction{Path: "/loop", Port: intstr.FromInt32(int32(port))}, status: Failure, msg: "stopped after 10 redirects"},
		{name: "headers", get: corev1.HTTPGetAction{Path: "/headers", Port: intstr.FromInt32(int32(port)), HTTPHeaders: []corev1.HTTPHeader{
			{Name: "x-custom", Value: "yes"}, {Name: "Host", Value: "example.test"}}}, status: Success, msg: "headers ok"},
		{name: "own user agent", get: corev1.HTTPGetAction{Path: "/ua", Port: intstr.FromInt32(int32(port)), HTTPHeaders: []corev1.HTTPHeader{
			{Name: "User-Agent", Value: "mine"}}}, status: Success},
		{name: "timeout", get: corev1.HTTPGetAction{Path: "/slow", Port: intstr.FromInt32(int32(port))}, status: Failure, msg: "Client.Timeout exceeded"},
		{name: "https skips verify", get: corev1.HTTPGetAction{Path: "/ok", Scheme: corev1.URISchemeHTTPS, Port: intstr.FromInt32(int32(tlsPort))}, status: Success, msg: "fine"},
		{name: "connection refused", get: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromInt32(int32(closedPort(t)))}, status: Failure, msg: "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Check(t.Context(), &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &tt.get}, TimeoutSeconds: 1},
				Target{PodIP: ip, Ports: ports})
			if got.Status != tt.status || got.Warning != tt.warning || !strings.Contains(got.Message, tt.msg) {
				t.Fatalf("got %v warning=%v %q, want %v warning=%v containing %q", got.Status, got.Warning, got.Message, tt.status, tt.warning, tt.msg)
			}
		})
	}
}

// closedPort returns a TCP port on 127.0.0.1 that nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, p := hostPort(t, l.Addr().String())
	l.Close()
	return p
}

func TestTCPSocket(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, open := hostPort(t, l.Addr().String())
	dialed := ""
	tests := []struct {
		name   string
		sock   corev1.TCPSocketAction
		dial   DialFunc
		status Status
		msg    string
	}{
		{name: "open", sock: corev1.TCPSocketAction{Port: intstr.FromInt32(int32(open))}, status: Success},
		{name: "named", sock: corev1.TCPSocketAction{Port: intstr.FromString("db")}, status: Success},
		{name: "closed", sock: corev1.TCPSocketAction{Port: intstr.FromInt32(int32(closedPort(t)))}, status: Failure, msg: "connection refused"},
		{name: "explicit host", sock: corev1.TCPSocketAction{Host: "127.0.0.1", Port: intstr.FromInt32(int32(open))}, status: Success},
		{name: "custom dialer", sock: corev1.TCPSocketAction{Port: intstr.FromInt32(int32(open))}, status: Success,
			dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				dialed = addr
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Check(t.Context(), &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &tt.sock}},
				Target{PodIP: "127.0.0.1", Ports: []corev1.ContainerPort{{Name: "db", ContainerPort: int32(open)}}, Dial: tt.dial})
			if got.Status != tt.status || !strings.Contains(got.Message, tt.msg) {
				t.Fatalf("got %v %q, want %v containing %q", got.Status, got.Message, tt.status, tt.msg)
			}
		})
	}
	if want := net.JoinHostPort("127.0.0.1", strconv.Itoa(open)); dialed != want {
		t.Errorf("custom dialer got %q, want %q", dialed, want)
	}
}

func TestExec(t *testing.T) {
	tests := []struct {
		name   string
		fn     ExecFunc
		status Status
		msg    string
	}{
		{name: "exit 0", fn: func(ctx context.Context, cmd []string) (int, []byte, error) { return 0, []byte("ok " + cmd[1]), nil }, status: Success, msg: "ok -c"},
		{name: "exit 1", fn: func(ctx context.Context, cmd []string) (int, []byte, error) { return 1, []byte("bad"), nil }, status: Failure, msg: "bad"},
		{name: "runtime error", fn: func(ctx context.Context, cmd []string) (int, []byte, error) {
			return -1, nil, errors.New("no such container")
		}, status: Unknown, msg: "no such container"},
		{name: "timeout", fn: func(ctx context.Context, cmd []string) (int, []byte, error) { <-ctx.Done(); return -1, nil, ctx.Err() }, status: Failure, msg: `command "sh -c true" timed out`},
		{name: "no exec", status: Unknown, msg: "not available"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "true"}}}, TimeoutSeconds: 1}
			got := Check(t.Context(), p, Target{Exec: tt.fn})
			if got.Status != tt.status || !strings.Contains(got.Message, tt.msg) {
				t.Fatalf("got %v %q, want %v containing %q", got.Status, got.Message, tt.status, tt.msg)
			}
		})
	}
}

func TestGRPC(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	_, port := hostPort(t, l.Addr().String())
	down := "down"
	tests := []struct {
		name   string
		g      corev1.GRPCAction
		status Status
		msg    string
	}{
		{name: "serving", g: corev1.GRPCAction{Port: int32(port)}, status: Success, msg: "service healthy"},
		{name: "not serving", g: corev1.GRPCAction{Port: int32(port), Service: &down}, status: Failure, msg: `service unhealthy (responded with "NOT_SERVING")`},
		{name: "nothing listening", g: corev1.GRPCAction{Port: int32(closedPort(t))}, status: Failure, msg: "failed to connect service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Check(t.Context(), &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &tt.g}, TimeoutSeconds: 1}, Target{PodIP: "127.0.0.1"})
			if got.Status != tt.status || !strings.Contains(got.Message, tt.msg) {
				t.Fatalf("got %v %q, want %v containing %q", got.Status, got.Message, tt.status, tt.msg)
			}
		})
	}
}
