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
		{[]string{"members", "remove"}, 2},
		{[]string{"kubeconfig", "--data-dir", t.TempDir()}, 1}, // no CA there
		{[]string{"kubeconfig", "extra"}, 2},
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

// TestUpServesStatus starts `skiff up` in-process and reads its status endpoint.
func TestUpServesStatus(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errOut syncBuffer
	dataDir := t.TempDir()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"up", "--data-dir", dataDir, "--name", "solo", "--peer-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0"}, &out, &errOut)
	}()
	addrRe := regexp.MustCompile(`curl http://([0-9.:]+)/status`)
	var addr string
	deadline := time.Now().Add(20 * time.Second)
	for addr == "" {
		if m := addrRe.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no status address printed; stdout %q stderr %q", out.String(), errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var st struct {
		ID, State, LeaderID string
	}
	for {
		resp, err := http.Get("http://" + addr + "/status")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err := json.Unmarshal(body, &st); err == nil && st.State == "Leader" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed a leader: %+v, %v; stderr %q", st, err, errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.ID != "solo" || st.LeaderID != "solo" {
		t.Fatalf("status = %+v, want node solo leading itself", st)
	}
	// `up` prints how to use kubectl once the API serves; follow it.
	kcRe := regexp.MustCompile(`export KUBECONFIG=(\S+)`)
	var kubeconfig string
	for kubeconfig == "" {
		if m := kcRe.FindStringSubmatch(out.String()); m != nil {
			kubeconfig = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no KUBECONFIG line printed; stdout %q stderr %q", out.String(), errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := exec.LookPath("kubectl"); err == nil {
		home := t.TempDir()
		cmd := exec.Command("kubectl", "--kubeconfig", kubeconfig, "--cache-dir", filepath.Join(home, "cache"), "get", "namespace", "default", "-o", "name")
		cmd.Env = append(os.Environ(), "HOME="+home, "KUBECONFIG=")
		if got, err := cmd.CombinedOutput(); err != nil || string(got) != "namespace/default\n" {
			t.Fatalf("kubectl get namespace default = %q, %v; want namespace/default", got, err)
		}
	}
	// `skiff kubeconfig` issues another user's kubeconfig from the same CA.
	var kc, kcErr bytes.Buffer
	if code := run(t.Context(), []string{"kubeconfig", "--data-dir", dataDir, "--user", "jane", "--groups", "dev"}, &kc, &kcErr); code != 0 {
		t.Fatalf("skiff kubeconfig exited %d: %s", code, kcErr.String())
	}
	if !strings.Contains(kc.String(), "client-certificate-data:") || !strings.Contains(kc.String(), "name: jane") {
		t.Fatalf("skiff kubeconfig printed %q, want a kubeconfig for jane", kc.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("run exited %d after cancel, want 0; stderr %q", code, errOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after its context was cancelled")
	}
}
