package stream

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/skiff-sh/skiff/agent/internal/podlogs"
)

func writeRecords(t *testing.T, path string, lines ...podlogs.Line) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, l := range lines {
		b = podlogs.AppendLine(b, l)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func line(ts time.Time, content string) podlogs.Line {
	return podlogs.Line{Time: ts, Stream: podlogs.Stdout, Content: []byte(content)}
}

func TestLogs(t *testing.T) {
	b := &fakeBackend{logDir: t.TempDir()}
	e := startServer(t, b)
	now := time.Now().UTC()
	old := now.Add(-time.Hour)
	writeRecords(t, filepath.Join(b.logDir, "default_p1", "main", "1.log"),
		line(old, "old"), line(now.Add(-time.Second), "new 1"), line(now, "new 2"))
	writeRecords(t, filepath.Join(b.logDir, "default_p1", "main", "0.log"), line(old, "previous"))
	c := e.httpClient(t, DefaultAllowedUser)
	for _, tc := range []struct {
		name, query string
		code        int
		want        string // body, or a part of the error message
	}{
		{"all", "", 200, "old\nnew 1\nnew 2\n"},
		{"tail", "tailLines=2", 200, "new 1\nnew 2\n"},
		{"timestamps", "tailLines=1&timestamps=true", 200, now.Format(time.RFC3339Nano) + " new 2\n"},
		{"since seconds", "sinceSeconds=60", 200, "new 1\nnew 2\n"},
		{"since time", "sinceTime=" + now.Add(-time.Minute).Format(time.RFC3339), 200, "new 1\nnew 2\n"},
		{"limit", "limitBytes=5", 200, "old\nn"},
		{"previous", "previous=true", 200, "previous\n"},
		{"follow of previous ends", "previous=true&follow=true", 200, "previous\n"},
		{"negative tail", "tailLines=-1", 400, "tailLines"},
		{"both sinces", "sinceSeconds=5&sinceTime=" + now.Format(time.RFC3339), 400, "at most one of sinceTime or sinceSeconds"},
		{"bad number", "limitBytes=x", 400, "limitBytes"},
		{"no pod", "", 404, `pods "missing" not found`},
		{"no log file", "", 400, "has no log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/containerLogs/default/p1/main"
			switch tc.name {
			case "no pod":
				path = "/containerLogs/default/missing/main"
			case "no log file":
				path = "/containerLogs/default/p1/other"
			}
			resp, err := c.Get("https://" + e.addr + path + "?" + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, body, tc.code)
			}
			if tc.code == 200 {
				if string(body) != tc.want {
					t.Fatalf("got %q, want %q", body, tc.want)
				}
				return
			}
			var st metav1.Status
			if err := json.Unmarshal(body, &st); err != nil || int(st.Code) != tc.code || !strings.Contains(st.Message, tc.want) {
				t.Fatalf("got %s (%v), want a Status %d with %q", body, err, tc.code, tc.want)
			}
		})
	}
}

func TestLogsFollow(t *testing.T) {
	b := &fakeBackend{logDir: t.TempDir(), active: true}
	e := startServer(t, b)
	path := filepath.Join(b.logDir, "default_p1", "main", "1.log")
	now := time.Now()
	writeRecords(t, path, line(now, "first"))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+e.addr+"/containerLogs/default/p1/main?follow=true&tailLines=1", nil)
	resp, err := e.httpClient(t, DefaultAllowedUser).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain" {
		t.Errorf("got Content-Type %q, want text/plain", ct)
	}
	r := bufio.NewReader(resp.Body)
	expect := func(want string) {
		t.Helper()
		got, err := r.ReadString('\n')
		if err != nil || got != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
	expect("first\n")
	writeRecords(t, path, line(now, "second"))
	expect("second\n") // flushed at once, while the request goes on
	// Rotation, as the log writer does it.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	writeRecords(t, path, line(now, "third"))
	expect("third\n")
	// The container exits: the response ends once the log is drained.
	writeRecords(t, path, line(now, "last"))
	b.mu.Lock()
	b.active = false
	b.mu.Unlock()
	expect("last\n")
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Fatalf("after the container exited: got %q, %v; want the end of the response", rest, err)
	}
}

func TestAuthorization(t *testing.T) {
	b := &fakeBackend{logDir: t.TempDir()}
	e := startServer(t, b)
	writeRecords(t, filepath.Join(b.logDir, "default_p1", "main", "1.log"), line(time.Now(), "secret"))
	url := "https://" + e.addr + "/containerLogs/default/p1/main"

	resp, err := e.httpClient(t, "system:node:intruder").Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || strings.Contains(string(body), "secret") {
		t.Fatalf("another user of the CA: got %d %s, want 403", resp.StatusCode, body)
	}

	// No client certificate: the handshake fails.
	if resp, err := e.httpClient(t, "").Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("no client certificate: got %d, want a TLS failure", resp.StatusCode)
	}

	// A certificate of another CA with the right name: the handshake fails.
	other := newPKI(t)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.pki.pool, Certificates: []tls.Certificate{other.tlsCert(t, DefaultAllowedUser, false)}}}
	defer tr.CloseIdleConnections()
	if resp, err := (&http.Client{Transport: tr}).Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("a foreign CA: got %d, want a TLS failure", resp.StatusCode)
	}

	resp, err = e.httpClient(t, DefaultAllowedUser).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "secret\n" {
		t.Fatalf("the API server: got %d %q, want 200 %q", resp.StatusCode, body, "secret\n")
	}
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.TLS = &tls.Config{Certificates: []tls.Certificate{{}}, ClientCAs: newPKI(t).pool}
	good.Backend = &fakeBackend{}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"no addr":       func(c *Config) { c.Addr = "" },
		"no tls":        func(c *Config) { c.TLS = nil },
		"no client CAs": func(c *Config) { c.TLS = &tls.Config{Certificates: []tls.Certificate{{}}} },
		"no cert":       func(c *Config) { c.TLS = &tls.Config{ClientCAs: good.TLS.ClientCAs} },
		"no users":      func(c *Config) { c.AllowedUsers = nil },
		"no backend":    func(c *Config) { c.Backend = nil },
		"no timeout":    func(c *Config) { c.StreamIdleTimeout = 0 },
	} {
		c := good
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: got nil, want an error", name)
		}
	}
}

// TestRunEndsStreams: when Run's context ends, it ends the hijacked
// streams (an attach) and the following log requests, and returns.
func TestRunEndsStreams(t *testing.T) {
	b := &fakeBackend{logDir: t.TempDir(), active: true}
	p := newPKI(t)
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{p.tlsCert(t, "agent", true)}, ClientCAs: p.pool}
	cfg.Backend = b
	cfg.Logger = slog.New(slog.DiscardHandler)
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	e := &env{pki: p, backend: b, srv: srv, addr: srv.Addr()}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- srv.Run(ctx) }()

	writeRecords(t, filepath.Join(b.logDir, "default_p1", "main", "1.log"), line(time.Now(), "x"))
	resp, err := e.httpClient(t, DefaultAllowedUser).Get("https://" + e.addr + "/containerLogs/default/p1/main?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if got, err := r.ReadString('\n'); err != nil || got != "x\n" {
		t.Fatalf("got %q, %v", got, err)
	}

	rcfg := e.restConfig(t, DefaultAllowedUser)
	x, err := executors[0].make(rcfg, execURL(rcfg, "/attach/default/p1/main", url.Values{"stdout": {"true"}}))
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	attachDone := make(chan error, 1)
	go func() { attachDone <- x.StreamWithContext(t.Context(), remotecommand.StreamOptions{Stdout: out}) }()
	deadline := time.Now().Add(10 * time.Second)
	for out.String() != "attached\n" {
		if time.Now().After(deadline) {
			t.Fatalf("attach: got %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	cancel()
	select {
	case err := <-runDone:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return with an attach and a log follow open")
	}
	select {
	case <-attachDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the attach client did not see the end")
	}
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Fatalf("log follow after Run: got %q, %v; want its end", rest, err)
	}
}
