package client

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func TestHandlerTransportUnary(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.URL.Path = "/changed" // the caller's request stays as it was
		w.Header().Set("X-Seen", r.Method+" "+r.RequestURI+" "+r.Host+" "+string(body))
		w.WriteHeader(http.StatusCreated)
		w.WriteHeader(http.StatusTeapot) // ignored, as by net/http
		io.WriteString(w, "created")
	})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://10.0.0.1:6443/api/v1/namespaces/a/pods?dryRun=All", strings.NewReader("pod"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: HandlerTransport(h)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusCreated || resp.Status != "201 Created" || string(body) != "created" || resp.ContentLength != 7 {
		t.Errorf("got %q %q (length %d), want 201 Created \"created\" (7)", resp.Status, body, resp.ContentLength)
	}
	if got, want := resp.Header.Get("X-Seen"), "POST /api/v1/namespaces/a/pods?dryRun=All 10.0.0.1:6443 pod"; got != want {
		t.Errorf("handler saw %q, want %q", got, want)
	}
	if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, "text/plain") {
		t.Errorf("got Content-Type %q, want it sniffed as text/plain", got)
	}
	if req.URL.Path != "/api/v1/namespaces/a/pods" {
		t.Errorf("the handler changed the caller's request: path %q", req.URL.Path)
	}
}

func TestHandlerTransportHandlerContextEnds(t *testing.T) {
	ended := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		go func() { <-r.Context().Done(); ended <- r.Context().Err() }()
	})
	resp, err := (&http.Client{Transport: HandlerTransport(h)}).Get("https://master/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("got %d from a handler that wrote nothing, want 200", resp.StatusCode)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context did not end when it returned")
	}
}

func TestHandlerTransportStreams(t *testing.T) {
	next := make(chan string)
	writeErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		for {
			select {
			case line := <-next:
				if _, err := io.WriteString(w, line+"\n"); err != nil {
					writeErr <- err
					return
				}
			case <-r.Context().Done():
				writeErr <- r.Context().Err()
				return
			}
		}
	})
	resp, err := (&http.Client{Transport: HandlerTransport(h)}).Get("https://master/api/v1/pods?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.ContentLength != -1 || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("got %d, length %d, Content-Type %q; want 200, -1 (streamed), application/json", resp.StatusCode, resp.ContentLength, resp.Header.Get("Content-Type"))
	}
	lines := bufio.NewReader(resp.Body)
	for _, want := range []string{"first", "second", "third"} {
		if want != "first" {
			next <- want
		}
		got, err := lines.ReadString('\n')
		if err != nil || got != want+"\n" {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	resp.Body.Close()
	select {
	case err := <-writeErr:
		if err == nil {
			t.Error("the handler went on after the caller closed the stream")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not stop after the caller closed the stream")
	}
}

func TestHandlerTransportCallerGoesAway(t *testing.T) {
	// Before the response: the caller gets its context's error, the
	// handler's context ends.
	ended := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		close(ended)
	})
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://master/api", nil)
	go cancel()
	if _, err := HandlerTransport(h).RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context did not end with the caller's")
	}

	// During a stream the caller stops reading without closing: the
	// handler's write fails instead of blocking.
	writeErr := make(chan error, 1)
	stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush()
		_, err := io.WriteString(w, "never read")
		writeErr <- err
	})
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, "https://master/api?watch=1", nil)
	resp, err := HandlerTransport(stream).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cancel()
	select {
	case err := <-writeErr:
		if err == nil {
			t.Error("a write nobody read succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's write blocked after the caller went away")
	}
}

func TestHandlerTransportPanics(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("broken invariant") })
	_, err := (&http.Client{Transport: HandlerTransport(h)}).Get("https://master/api")
	if err == nil || !strings.Contains(err.Error(), "broken invariant") {
		t.Errorf("got %v, want the panic as an error", err)
	}
	streamed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	resp, err := (&http.Client{Transport: HandlerTransport(streamed)}).Get("https://master/api?watch=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if string(body) != "part" || err == nil {
		t.Errorf("read %q, %v; want \"part\" then an error", body, err)
	}
}

// TestInProcessClientGo is client-go over the transport: a typed get, its
// error decoded from the handler's Status.
func TestInProcessClientGo(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/api/v1/namespaces/default" {
			io.WriteString(w, `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"default"}}`)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"apiVersion":"v1","kind":"Status","status":"Failure","reason":"NotFound","code":404,"message":"namespaces \"x\" not found"}`)
	})
	cfg := &rest.Config{Host: "https://127.0.0.1:6443", TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	InProcess(cfg, h)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := cs.CoreV1().Namespaces().Get(t.Context(), "default", metav1.GetOptions{})
	if err != nil || ns.Name != "default" {
		t.Errorf("got %v, %v; want namespace default", ns, err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(t.Context(), "x", metav1.GetOptions{}); err == nil || !strings.Contains(err.Error(), `namespaces "x" not found`) {
		t.Errorf("got %v, want the handler's NotFound", err)
	}
}
