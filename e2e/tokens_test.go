package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// skiffCLI runs one admin verb of the skiff binary and returns its stdout,
// with its stderr in the error when it fails.
func (ms *masters) skiffCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ms.bin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("skiff %s: %w; stderr %q", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), errOut.String(), err
}

// kubectlToken runs the real kubectl with no kubeconfig, only --server,
// --certificate-authority and --token, with HOME in a temp dir and the
// discovery cache in cacheDir.
func kubectlToken(t *testing.T, cacheDir, server, caFile, token string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	flags := []string{"--server", server, "--certificate-authority", caFile, "--token", token, "--cache-dir", cacheDir}
	cmd := exec.CommandContext(ctx, "kubectl", append(flags, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "KUBECONFIG=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestBearerTokensAgainstEveryMaster creates a token with `skiff token
// create` through a follower's peer address and uses it with the real
// kubectl against every master: 403 until the admin binds ClusterRole edit
// to the token's group, then reads and writes; a bogus token gets kubectl's "You must be
// logged in" and exit 1; after `skiff token delete` through another master,
// every master refuses the token within a few seconds.
func TestBearerTokensAgainstEveryMaster(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not on PATH")
	}
	ms := startMasters(t, 3)
	leader := ms.waitLeader(t)
	follower := (leader + 1) % len(ms.nodes)
	other := (leader + 2) % len(ms.nodes)
	role := func(i int) string {
		if i == leader {
			return ms.nodes[i].name + " (leader)"
		}
		return ms.nodes[i].name + " (follower)"
	}
	var servers []string
	for i := range ms.nodes {
		servers = append(servers, readKubeconfigServer(t, ms.adminKubeconfig(t, i)))
	}
	// Every master serves with a certificate of the one cluster CA.
	caFile := filepath.Join(ms.nodes[other].dataDir, "pki", "ca.crt")

	out, errOut, err := ms.skiffCLI(t, "token", "create", "--peer", ms.nodes[follower].peerAddr, "--user", "e2e-jane", "--groups", "dev", "--ttl", "1h", "--description", "e2e")
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSuffix(out, "\n")
	m := regexp.MustCompile(`Created token ([0-9a-f]+) `).FindStringSubmatch(errOut)
	if !strings.HasPrefix(token, "skf_") || strings.Contains(token, "\n") || m == nil {
		t.Fatalf("skiff token create printed %q (stderr %q), want the token and its ID", out, errOut)
	}
	id := m[1]
	if out, _, err := ms.skiffCLI(t, "token", "list", "--peer", ms.nodes[leader].peerAddr); err != nil || !strings.Contains(out, id) || strings.Contains(out, token) {
		t.Fatalf("skiff token list = %q, %v; want a row for %s and no token", out, err, id)
	}

	caches := make([]string, len(ms.nodes))
	// Authenticated, but group dev has no role yet: 403 in kube-apiserver's words.
	forbidden := `Error from server (Forbidden): namespaces "default" is forbidden: User "e2e-jane" cannot get resource "namespaces" in API group "" in the namespace "default"`
	for i := range ms.nodes {
		caches[i] = t.TempDir()
		// A follower may apply the new token a moment after the write returned.
		waitUntil(t, 10*time.Second, "the token to authenticate on "+role(i), func(context.Context) error {
			out, err := kubectlToken(t, caches[i], servers[i], caFile, token, "get", "namespace", "default", "-o", "name")
			if err == nil || !strings.Contains(out, forbidden) {
				return fmt.Errorf("kubectl --token get namespace default through %s = %q, %v; want %q", role(i), out, err, forbidden)
			}
			return nil
		})
	}
	// RBAC: the admin binds ClusterRole edit to group dev, through one master.
	if out, err := kubectl(t, ms.adminKubeconfig(t, other), "create", "clusterrolebinding", "e2e-dev-edit", "--clusterrole=edit", "--group=dev"); err != nil {
		t.Fatalf("kubectl create clusterrolebinding: %v\n%s", err, out)
	}
	for i := range ms.nodes {
		// Each master authorizes with its own replica's bindings.
		waitUntil(t, 10*time.Second, "the token to work on "+role(i), func(context.Context) error {
			out, err := kubectlToken(t, caches[i], servers[i], caFile, token, "get", "namespace", "default", "-o", "name")
			if err != nil || out != "namespace/default\n" {
				return fmt.Errorf("kubectl --token get namespace default through %s = %q, %v", role(i), out, err)
			}
			return nil
		})
		// Writes work too (a follower forwards them to the leader).
		name := "by-token-" + ms.nodes[i].name
		if out, err := kubectlToken(t, caches[i], servers[i], caFile, token, "-n", "default", "create", "configmap", name, "--from-literal=k=v"); err != nil {
			t.Fatalf("kubectl --token create configmap through %s: %v\n%s", role(i), err, out)
		}
	}

	// A bogus token: kubectl's usual message and exit 1, on every master.
	bogus := "skf_" + strings.Repeat("A", 43)
	for i := range ms.nodes {
		out, err := kubectlToken(t, caches[i], servers[i], caFile, bogus, "get", "namespaces")
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || out != "error: You must be logged in to the server (Unauthorized)\n" {
			t.Fatalf("kubectl with a bogus token through %s = %v:\n%s\nwant exit 1 and \"error: You must be logged in to the server (Unauthorized)\"", role(i), err, out)
		}
	}
	// Without a discovery cache, discovery is refused first and client-go words
	// the 401 itself, as it does against kube-apiserver.
	out, err = kubectlToken(t, t.TempDir(), servers[follower], caFile, bogus, "get", "namespaces")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.HasSuffix(out, "\nerror: You must be logged in to the server (the server has asked for the client to provide credentials)\n") {
		t.Fatalf("kubectl with a bogus token and a cold cache = %v:\n%s\nwant exit 1 and \"error: You must be logged in to the server\"", err, out)
	}

	// Delete through another master's peer address; every master refuses
	// the token within a couple of seconds.
	if out, _, err := ms.skiffCLI(t, "token", "delete", "--peer", ms.nodes[other].peerAddr, id); err != nil || out != "deleted token "+id+"\n" {
		t.Fatalf("skiff token delete = %q, %v; want \"deleted token %s\"", out, err, id)
	}
	deleted := time.Now()
	client := tokenHTTPClient(t, caFile)
	waitUntil(t, 3*time.Second, "every master to refuse the deleted token", func(ctx context.Context) error {
		for i := range ms.nodes {
			code, err := getWithBearer(ctx, client, servers[i]+"/api/v1/namespaces/default", token)
			if err != nil {
				return err
			}
			if code != http.StatusUnauthorized {
				return fmt.Errorf("%s answers %d to the deleted token", role(i), code)
			}
		}
		return nil
	})
	t.Logf("every master refused the deleted token %v after the delete returned", time.Since(deleted).Round(time.Millisecond))
	for i := range ms.nodes {
		out, err := kubectlToken(t, caches[i], servers[i], caFile, token, "get", "namespaces")
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || out != "error: You must be logged in to the server (Unauthorized)\n" {
			t.Fatalf("kubectl with the deleted token through %s = %v:\n%s\nwant exit 1 and \"error: You must be logged in to the server (Unauthorized)\"", role(i), err, out)
		}
	}
	// The admin certificate still works.
	if out, err := kubectl(t, ms.adminKubeconfig(t, follower), "-n", "default", "get", "configmaps", "-o", "name"); err != nil || !strings.Contains(out, "configmap/by-token-m1\n") {
		t.Fatalf("kubectl with the admin kubeconfig = %q, %v; want the configmaps written with the token", out, err)
	}
}

// tokenHTTPClient returns a client that trusts the CA in caFile and presents
// no certificate.
func tokenHTTPClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("no certificate in %s", caFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 3 * time.Second, Transport: tr}
}

// getWithBearer sends GET url with the bearer token and returns the status code.
func getWithBearer(ctx context.Context, c *http.Client, url, token string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
