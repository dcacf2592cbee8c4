package pods

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/agent/internal/probe"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-sh/skiff/agent/internal/containers"
)

// runHook runs a postStart or preStop handler of container c (runtime ID
// id): exec in the container, an HTTP GET to the pod, or a sleep. It
// returns the handler's output for the event on failure.
func (m *Manager) runHook(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id string, podIP netip.Addr, h *corev1.LifecycleHandler) (string, error) {
	switch {
	case h.Exec != nil:
		var out outputBuffer
		code, err := m.cfg.Runtime.Exec(ctx, id, h.Exec.Command, containers.Streams{Stdout: &out, Stderr: &out})
		if err != nil {
			return out.String(), err
		}
		if code != 0 {
			return out.String(), fmt.Errorf("command %q exited with %d", h.Exec.Command, code)
		}
		return "", nil
	case h.HTTPGet != nil:
		return httpHook(ctx, c, podIP, h.HTTPGet)
	case h.Sleep != nil:
		select {
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
		case <-ctx.Done():
		}
		return "", nil
	}
	return "", fmt.Errorf("a lifecycle handler with no action")
}

// httpHook does a hook's GET; any status below 400 succeeds.
func httpHook(ctx context.Context, c *corev1.Container, podIP netip.Addr, g *corev1.HTTPGetAction) (string, error) {
	port, err := probe.ResolvePort(g.Port, c.Ports)
	if err != nil {
		return "", err
	}
	host := g.Host
	if host == "" {
		host = podIP.String()
	}
	scheme := "http"
	if g.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	url := scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + g.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	for _, h := range g.HTTPHeaders {
		req.Header.Add(h.Name, h.Value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 10<<10))
	if resp.StatusCode >= 400 {
		return string(body), fmt.Errorf("HTTP lifecycle hook (%s) for Container %q in Pod returned status %d", g.Path, c.Name, resp.StatusCode)
	}
	return "", nil
}

// outputBuffer collects a command's stdout and stderr, which the runtime
// copies from two goroutines.
type outputBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *outputBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func (b *outputBuffer) String() string { return string(b.Bytes()) }
