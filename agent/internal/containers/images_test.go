package containers

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestCredentialsLookup(t *testing.T) {
	creds := Credentials{
		"https://index.docker.io/v1/": {Username: "hub", Password: "hubpw"},
		"localhost:5000":              {Auth: base64.StdEncoding.EncodeToString([]byte("alice:s3cret:x"))},
		"http://reg.example:8443/v2/": {IdentityToken: "tok"},
	}
	tests := []struct {
		host       string
		found      bool
		user, pass string
	}{
		{"registry-1.docker.io", true, "hub", "hubpw"},
		{"docker.io", true, "hub", "hubpw"},
		{"localhost:5000", true, "alice", "s3cret:x"},
		{"localhost:5001", false, "", ""},
		{"reg.example:8443", true, "", "tok"},
		{"reg.example", false, "", ""},
	}
	for _, tt := range tests {
		a, ok := creds.lookup(tt.host)
		if ok != tt.found {
			t.Errorf("lookup(%q): found %v, want %v", tt.host, ok, tt.found)
			continue
		}
		if !ok {
			continue
		}
		u, p, err := a.userPass()
		if err != nil || u != tt.user || p != tt.pass {
			t.Errorf("lookup(%q): got %q %q %v, want %q %q", tt.host, u, p, err, tt.user, tt.pass)
		}
	}
}

func TestNormalizeRef(t *testing.T) {
	tests := []struct {
		in, want string
		latest   bool
		bad      bool
	}{
		{"busybox", "docker.io/library/busybox:latest", true, false},
		{"busybox:1.36", "docker.io/library/busybox:1.36", false, false},
		{"localhost:5000/x/y:latest", "localhost:5000/x/y:latest", true, false},
		{"quay.io/a/b@sha256:" + strings.Repeat("a", 64), "quay.io/a/b@sha256:" + strings.Repeat("a", 64), false, false},
		{"Upper/Case", "", false, true},
		{"a b", "", false, true},
	}
	for _, tt := range tests {
		got, latest, err := normalizeRef(tt.in)
		if (err != nil) != tt.bad || got != tt.want || latest != tt.latest {
			t.Errorf("normalizeRef(%q) = %q, %v, %v; want %q, %v, bad=%v", tt.in, got, latest, err, tt.want, tt.latest, tt.bad)
		}
	}
}

func imageErrorReason(err error) string {
	var ie *ImageError
	if errors.As(err, &ie) {
		return ie.Reason
	}
	return ""
}

func TestImportAndEnsureImage(t *testing.T) {
	r, _ := newTestRuntime(t)
	img := importImage(t, r, testImage{Name: "skiff.test/busybox:1", Cmd: []string{"sh"}, Env: []string{"A=1"}, WorkingDir: "/work", StopSignal: "SIGUSR1"})
	if img.Ref != "skiff.test/busybox:1" || !strings.HasPrefix(img.ID, "sha256:") ||
		!strings.HasPrefix(img.RepoDigest, "skiff.test/busybox@sha256:") {
		t.Errorf("got image %+v, want ref, ID and repo digest", img)
	}
	if strings.Join(img.Cmd, " ") != "sh" || img.WorkingDir != "/work" || img.StopSignal != "SIGUSR1" || len(img.Env) != 2 {
		t.Errorf("got image config %+v", img)
	}

	tests := []struct {
		name, ref   string
		policy      corev1.PullPolicy
		wantReason  string
		wantMessage string
	}{
		{"present IfNotPresent", "skiff.test/busybox:1", corev1.PullIfNotPresent, "", ""},
		{"present Never", "skiff.test/busybox:1", corev1.PullNever, "", ""},
		{"missing Never", "skiff.test/nothere:1", corev1.PullNever, ReasonErrImageNeverPull,
			`Container image "skiff.test/nothere:1" is not present with pull policy of Never`},
		{"bad name", "Bad/Name", corev1.PullIfNotPresent, ReasonInvalidImageName, ""},
		// Nothing listens on port 1: the pull itself fails.
		{"missing latest pulls", "localhost:1/nothere", "", ReasonErrImagePull, ""},
		{"Always pulls", "localhost:1/x:1", corev1.PullAlways, ReasonErrImagePull, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.EnsureImage(t.Context(), tt.ref, tt.policy, nil)
			if reason := imageErrorReason(err); reason != tt.wantReason || (tt.wantReason == "" && err != nil) {
				t.Fatalf("got reason %q (err %v), want %q", reason, err, tt.wantReason)
			}
			if tt.wantMessage != "" && err.Error() != tt.wantMessage {
				t.Errorf("got message %q, want %q", err.Error(), tt.wantMessage)
			}
			if tt.wantReason == "" && got.ID != img.ID {
				t.Errorf("got ID %s, want %s", got.ID, img.ID)
			}
		})
	}
}

func TestPullFromRegistry(t *testing.T) {
	r, _ := newTestRuntime(t)
	regAddr := startRegistry(t)
	pushImage(t, "http://"+regAddr, "team/bb", "v1", testImage{Name: "x", Cmd: []string{"echo", "pulled"}})

	// A proxy in front of the registry demands basic auth, as a private registry does.
	target, _ := url.Parse("http://" + regAddr)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var authorized atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		u, p, ok := req.BasicAuth()
		if !ok || u != "alice" || p != "pw" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		authorized.Add(1)
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	privHost := strings.TrimPrefix(srv.URL, "http://")

	img, err := r.EnsureImage(t.Context(), regAddr+"/team/bb:v1", corev1.PullIfNotPresent, nil)
	if err != nil {
		t.Fatalf("pull from open registry: %v", err)
	}
	if img.Ref != regAddr+"/team/bb:v1" || !strings.HasPrefix(img.RepoDigest, regAddr+"/team/bb@sha256:") || strings.Join(img.Cmd, " ") != "echo pulled" {
		t.Errorf("got %+v", img)
	}

	ref := privHost + "/team/bb:v1"
	_, err = r.EnsureImage(t.Context(), ref, corev1.PullAlways, nil)
	if imageErrorReason(err) != ReasonErrImagePull {
		t.Fatalf("pull without credentials: got %v, want ErrImagePull", err)
	}
	creds := Credentials{"http://" + privHost: {Username: "alice", Password: "pw"}}
	got, err := r.EnsureImage(t.Context(), ref, corev1.PullAlways, creds)
	if err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	if authorized.Load() == 0 {
		t.Error("the registry saw no authorized request")
	}
	if got.ID != img.ID {
		t.Errorf("got ID %s, want %s (same image)", got.ID, img.ID)
	}
}

func TestImportDockerArchive(t *testing.T) {
	r, _ := newTestRuntime(t)
	layer, config, _ := imageBlobs(t, testImage{Cmd: []string{"echo", "docker"}})
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	add := func(name string, data []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))})
		tw.Write(data)
	}
	cfgName := strings.TrimPrefix(digestOf(config), "sha256:") + ".json"
	add(cfgName, config)
	add("l1/layer.tar", layer)
	manifest, _ := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{"skiff.test/docker:2"}, "Layers": []string{"l1/layer.tar"}}})
	add("manifest.json", manifest)
	tw.Close()
	names, err := r.ImportImages(t.Context(), &b)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "skiff.test/docker:2" {
		t.Fatalf("imported %v, want skiff.test/docker:2", names)
	}
	img, err := r.EnsureImage(t.Context(), "skiff.test/docker:2", corev1.PullNever, nil)
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != digestOf(config) || strings.Join(img.Cmd, " ") != "echo docker" {
		t.Errorf("got %+v, want config %s", img, digestOf(config))
	}
}
