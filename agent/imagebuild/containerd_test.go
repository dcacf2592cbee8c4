package imagebuild

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/skiff-sh/skiff/agent/runctest"
)

func uniqueName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// testNamespace returns a new containerd namespace for t. runc keeps a
// namespace's state directory and cgroups outside the private containerd,
// shared by every containerd on the host: they are removed when t ends.
func testNamespace(t *testing.T) string {
	ns := uniqueName("ib-")
	t.Cleanup(func() { runctest.RemoveNamespace(ns) })
	return ns
}

// TestImportAndRun imports a busybox image and a Go program's image from
// one archive into a private containerd with `ctr images import`, and runs
// both with `ctr run`.
func TestImportAndRun(t *testing.T) {
	c := startContainerd(t)
	bb, err := Busybox("skiff.test/imagebuild/busybox:1")
	if err != nil {
		t.Fatal(err)
	}
	hello, err := GoBinary("skiff.test/imagebuild/hello:2", "./testdata/hello", OnBase(bb), Args("default", "args"))
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "images.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteOCIArchive(f, bb, hello); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	ns := testNamespace(t)
	if _, err := c.ctr(t.Context(), ns, "images", "import", archive); err != nil {
		t.Fatal(err)
	}
	out, err := c.ctr(t.Context(), ns, "images", "ls", "-q")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"skiff.test/imagebuild/busybox:1", "skiff.test/imagebuild/hello:2"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("ctr images ls: got %q, want %s listed", out, want)
		}
	}
	tests := []struct {
		image string
		args  []string
		want  string
	}{
		{"skiff.test/imagebuild/busybox:1", []string{"sh", "-c", "echo ok; id -un; id -u nobody; ls -d /tmp; echo $PATH"},
			"ok\nroot\n65534\n/tmp\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"},
		{"skiff.test/imagebuild/hello:2", nil, "hello from go: default args\n"},
		{"skiff.test/imagebuild/hello:2", []string{"/usr/local/bin/hello", "given"}, "hello from go: given\n"},
	}
	for i, tt := range tests {
		args := append([]string{"run", "--rm", tt.image, fmt.Sprintf("%s-%d", ns, i)}, tt.args...)
		got, err := c.ctr(t.Context(), ns, args...)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("ctr run %s %q: got output %q, want %q", tt.image, tt.args, got, tt.want)
		}
	}
}

// TestPushAndPull pushes a busybox image to a real docker-registry, checks
// the manifest it serves, pushes again (every blob exists then), and pulls
// it into a private containerd over plain http and runs it.
func TestPushAndPull(t *testing.T) {
	reg := startRegistry(t, "")
	c := startContainerd(t)
	name := reg + "/skiff/busybox:" + uniqueName("t")
	bb, err := Busybox(name)
	if err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 2; round++ {
		if err := Push(t.Context(), "http://"+reg, bb); err != nil {
			t.Fatalf("push %d: %v", round, err)
		}
	}
	want, err := ManifestDigest(bb)
	if err != nil {
		t.Fatal(err)
	}
	_, tag, _ := strings.Cut(strings.TrimPrefix(name, reg+"/"), ":")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+reg+"/v2/skiff/busybox/manifests/"+tag, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != want || sha(body) != want {
		t.Fatalf("GET manifest: got %s digest %q (body %s), want 200 with digest %s", resp.Status, resp.Header.Get("Docker-Content-Digest"), sha(body), want)
	}

	ns := testNamespace(t)
	if _, err := c.ctr(t.Context(), ns, "images", "pull", "--plain-http", name); err != nil {
		t.Fatal(err)
	}
	out, err := c.ctr(t.Context(), ns, "images", "ls")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, want) {
		t.Errorf("ctr images ls after pull: got %q, want %s with digest %s", out, name, want)
	}
	got, err := c.ctr(t.Context(), ns, "run", "--rm", name, ns, "echo", "pulled")
	if err != nil {
		t.Fatal(err)
	}
	if got != "pulled\n" {
		t.Errorf("ctr run of the pulled image: got %q, want %q", got, "pulled\n")
	}
}

// TestPushProtocol checks the requests Push sends against a recording fake
// registry: basic auth on each, HEAD before each blob, uploads only for
// missing blobs, the manifest last with the OCI media type.
func TestPushProtocol(t *testing.T) {
	var (
		mu   sync.Mutex
		log  []string
		have = map[string]bool{}
	)
	spec := Spec{Name: "reg.test/team/app:v3", Files: []File{{Path: "/a", Data: []byte("a")}}}
	img, err := build(spec)
	if err != nil {
		t.Fatal(err)
	}
	have[img.config.desc.Digest.String()] = true // the config exists: only the layer is uploaded
	var manifest []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if u, p, ok := r.BasicAuth(); !ok || u != "me" || p != "secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		entry := r.Method + " " + r.URL.Path
		switch {
		case r.Method == http.MethodHead && strings.HasPrefix(r.URL.Path, "/v2/team/app/blobs/"):
			if !have[strings.TrimPrefix(r.URL.Path, "/v2/team/app/blobs/")] {
				w.WriteHeader(http.StatusNotFound)
			}
		case r.Method == http.MethodPost && r.URL.Path == "/v2/team/app/blobs/uploads/":
			w.Header().Set("Location", "/v2/team/app/blobs/uploads/u1?state=x")
			w.WriteHeader(http.StatusAccepted)
		case r.Method == http.MethodPut && r.URL.Path == "/v2/team/app/blobs/uploads/u1":
			d := r.URL.Query().Get("digest")
			entry += " state=" + r.URL.Query().Get("state")
			if sha(body) != d {
				http.Error(w, "digest mismatch", http.StatusBadRequest)
				return
			}
			have[d] = true
			w.WriteHeader(http.StatusCreated)
		case r.Method == http.MethodPut && r.URL.Path == "/v2/team/app/manifests/v3":
			entry += " " + r.Header.Get("Content-Type")
			manifest = body
			w.WriteHeader(http.StatusCreated)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
		log = append(log, entry)
	}))
	defer srv.Close()

	if err := Push(t.Context(), srv.URL, spec, Credentials{"me", "wrong"}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("push with a wrong password: got %v, want a 401 error", err)
	}
	log = nil
	if err := Push(t.Context(), srv.URL, spec, Credentials{"me", "secret"}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"HEAD /v2/team/app/blobs/" + img.layer.desc.Digest.String(),
		"POST /v2/team/app/blobs/uploads/",
		"PUT /v2/team/app/blobs/uploads/u1 state=x",
		"HEAD /v2/team/app/blobs/" + img.config.desc.Digest.String(),
		"PUT /v2/team/app/manifests/v3 application/vnd.oci.image.manifest.v1+json",
	}
	if strings.Join(log, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\ngot  %q\nwant %q", log, want)
	}
	var m struct{ Config struct{ Digest string } }
	if err := json.Unmarshal(manifest, &m); err != nil || !bytes.Equal(manifest, img.manifest.data) {
		t.Errorf("pushed manifest: got %s (%v), want the built one", manifest, err)
	}
}
