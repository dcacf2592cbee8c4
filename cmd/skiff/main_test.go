package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestRunRejectsBadUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 2},
		{[]string{"frobnicate"}, 2},
		{[]string{"server", "--no-such-flag"}, 2},
		{[]string{"server", "extra-arg"}, 2},
		{[]string{"up", "--log-level", "loud"}, 2},
		{[]string{"server", "--data-dir", t.TempDir(), "--compact-interval", "-1s"}, 1},
		{[]string{"server", "--data-dir", t.TempDir(), "--compact-interval", "soon"}, 2},
		{[]string{"server", "--data-dir", t.TempDir(), "--watch-history", "-5"}, 1},
		{[]string{"members", "remove"}, 2},
		{[]string{"kubeconfig", "--data-dir", t.TempDir()}, 1}, // no CA there
		{[]string{"kubeconfig", "extra"}, 2},
		{[]string{"kubeconfig", "--token", "t", "--groups", "g"}, 2},
		{[]string{"kubeconfig", "--token", "t", "--token-file", "f"}, 2},
		{[]string{"kubeconfig", "--data-dir", t.TempDir(), "--token-file", "/nonexistent/token"}, 1},
		{[]string{"token"}, 2},
		{[]string{"token", "--peer", "127.0.0.1:1"}, 2},
		{[]string{"token", "frobnicate"}, 2},
		{[]string{"token", "delete"}, 2},
		{[]string{"token", "list", "extra"}, 2},
		{[]string{"token", "create", "--ttl", "soon"}, 2},
		{[]string{"token", "create", "--peer-cert-file", "x"}, 1},
		// Refused before anything is sent (nothing listens on port 1).
		{[]string{"token", "create", "--peer", "127.0.0.1:1", "--user", " "}, 1},
		{[]string{"token", "create", "--peer", "127.0.0.1:1", "--ttl", "-1h"}, 1},
		{[]string{"token", "-h"}, 0},
		{[]string{"help"}, 0},
	} {
		var out, errOut bytes.Buffer
		if got := run(t.Context(), tc.args, &out, &errOut); got != tc.want {
			t.Errorf("run(%q) = %d, want %d (stderr %q)", tc.args, got, tc.want, errOut.String())
		}
	}
}

func TestRunKeepsNodeID(t *testing.T) {
	dir := t.TempDir()
	id, err := nodeID(dir, "m1")
	if err != nil || id != "m1" {
		t.Fatalf("nodeID = %q, %v; want m1", id, err)
	}
	if id, err := nodeID(dir, ""); err != nil || id != "m1" {
		t.Fatalf("nodeID on restart = %q, %v; want the kept m1", id, err)
	}
	if _, err := nodeID(dir, "m2"); err == nil {
		t.Fatal("nodeID with a different --name succeeded, want an error")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "node-id")); strings.TrimSpace(string(b)) != "m1" {
		t.Fatalf("node-id file holds %q, want m1", b)
	}
}

// upCluster is a `skiff up` that startUp runs in-process.
type upCluster struct {
	dataDir    string
	statusAddr string // host:port of the plain status endpoint
	peerAddr   string // the store's peer address, for the admin verbs
	kubeconfig string // the admin kubeconfig `up` tells the user about
	stdout     *syncBuffer
	stderr     *syncBuffer
}

// startUp runs `skiff up` on ephemeral ports until the test ends (and then
// checks that it exits 0), and returns once it leads itself and has printed
// its kubeconfig.
func startUp(t *testing.T) *upCluster {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	up := &upCluster{dataDir: t.TempDir(), stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"up", "--data-dir", up.dataDir, "--name", "solo", "--peer-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0",
			// No agent: it would set up a bridge, routes and iptables
			// rules in the test machine's network namespace (e2e's
			// TestUpDemo runs one in a namespace of its own).
			"--agent=false"}, up.stdout, up.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("run exited %d after cancel, want 0; stderr %q", code, up.stderr.String())
			}
		case <-time.After(20 * time.Second):
			t.Error("run did not return after its context was cancelled")
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	addrRe := regexp.MustCompile(`curl http://([0-9.:]+)/status`)
	for up.statusAddr == "" {
		if m := addrRe.FindStringSubmatch(up.stdout.String()); m != nil {
			up.statusAddr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no status address printed; stdout %q stderr %q", up.stdout.String(), up.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var st struct {
		ID, State, LeaderID string
		Servers             []struct{ ID, Address string }
	}
	for {
		resp, err := http.Get("http://" + up.statusAddr + "/status")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err := json.Unmarshal(body, &st); err == nil && st.State == "Leader" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed a leader: %+v, %v; stderr %q", st, err, up.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.ID != "solo" || st.LeaderID != "solo" || len(st.Servers) != 1 {
		t.Fatalf("status = %+v, want node solo leading itself alone", st)
	}
	up.peerAddr = st.Servers[0].Address
	// `up` prints how to use kubectl once the API serves.
	kcRe := regexp.MustCompile(`export KUBECONFIG=(\S+)`)
	for up.kubeconfig == "" {
		if m := kcRe.FindStringSubmatch(up.stdout.String()); m != nil {
			up.kubeconfig = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no KUBECONFIG line printed; stdout %q stderr %q", up.stdout.String(), up.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return up
}

// kubectl runs the real kubectl with kubeconfig, HOME and its cache in temp dirs.
func kubectl(t *testing.T, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig, "--cache-dir", filepath.Join(home, "cache")}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+home, "KUBECONFIG=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestUpServesStatus starts `skiff up` in-process, reads its status endpoint
// and follows the instructions it prints.
func TestUpServesStatus(t *testing.T) {
	up := startUp(t)
	if _, err := exec.LookPath("kubectl"); err == nil {
		if got, err := kubectl(t, up.kubeconfig, "get", "namespace", "default", "-o", "name"); err != nil || got != "namespace/default\n" {
			t.Fatalf("kubectl get namespace default = %q, %v; want namespace/default", got, err)
		}
	}
	// `skiff kubeconfig` issues another user's kubeconfig from the same CA.
	var kc, kcErr bytes.Buffer
	if code := run(t.Context(), []string{"kubeconfig", "--data-dir", up.dataDir, "--user", "jane", "--groups", "dev"}, &kc, &kcErr); code != 0 {
		t.Fatalf("skiff kubeconfig exited %d: %s", code, kcErr.String())
	}
	if !strings.Contains(kc.String(), "client-certificate-data:") || !strings.Contains(kc.String(), "name: jane") {
		t.Fatalf("skiff kubeconfig printed %q, want a kubeconfig for jane", kc.String())
	}
}
