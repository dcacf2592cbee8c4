package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// readArchive returns the regular files of an archive by name.
func readArchive(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("reading the archive: %v", err)
		}
		if h.ModTime.Unix() != 0 {
			t.Errorf("%s: got mtime %v, want the epoch", h.Name, h.ModTime)
		}
		if h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = data
		}
	}
}

// layerEntry is one entry of a layer tar.
type layerEntry struct {
	typ  byte
	mode int64
	link string
	data string
}

func readLayer(t *testing.T, gz []byte) (map[string]layerEntry, []byte) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	out := map[string]layerEntry{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, raw
		}
		if err != nil {
			t.Fatalf("layer: %v", err)
		}
		data, _ := io.ReadAll(tr)
		out[h.Name] = layerEntry{h.Typeflag, h.Mode, h.Linkname, string(data)}
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// TestWriteOCIArchive checks the layout of a two-image archive: the index
// names both images, every blob's name is its digest, the manifests point at
// blobs present, the config's diff ID is the uncompressed layer's digest,
// and the layer holds the files with their parent directories.
func TestWriteOCIArchive(t *testing.T) {
	a := Spec{
		Name:       "example.test:5000/skiff/a:1",
		Files:      []File{{Path: "/bin/hello", Mode: 0o755, Data: []byte("#!/bin/sh\necho hi\n")}, {Path: "/bin/hi", Link: "hello"}, {Path: "/data", Mode: fs.ModeDir | 0o700}},
		Entrypoint: []string{"/bin/hello"}, Env: []string{"A=1"}, ExposedPorts: []string{"8080"}, WorkingDir: "/data",
	}
	b := Spec{Name: "busybox", Files: []File{{Path: "etc/motd", Data: []byte("motd")}}, Cmd: []string{"sh"}}
	var buf bytes.Buffer
	if err := WriteOCIArchive(&buf, a, b); err != nil {
		t.Fatal(err)
	}
	files := readArchive(t, buf.Bytes())
	if got, want := string(files["oci-layout"]), `{"imageLayoutVersion":"1.0.0"}`; got != want {
		t.Errorf("oci-layout: got %q, want %q", got, want)
	}
	for name, data := range files {
		if hexd, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && sha(data) != "sha256:"+hexd {
			t.Errorf("blob %s: got digest %s", name, sha(data))
		}
	}
	var index ocispec.Index
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if index.SchemaVersion != 2 || len(index.Manifests) != 2 {
		t.Fatalf("index.json: got schema %d with %d manifests, want 2 and 2", index.SchemaVersion, len(index.Manifests))
	}
	blobOf := func(d ocispec.Descriptor) []byte {
		t.Helper()
		data, ok := files["blobs/sha256/"+d.Digest.Encoded()]
		if !ok || int64(len(data)) != d.Size {
			t.Fatalf("blob %s: present %v with %d bytes, want %d", d.Digest, ok, len(data), d.Size)
		}
		return data
	}
	tests := []struct {
		spec          Spec
		name, tag     string
		wantLayer     map[string]layerEntry
		wantPorts     []string
		wantWorkdir   string
		wantEntry     []string
		wantEnvPrefix string
	}{
		{a, "example.test:5000/skiff/a:1", "1", map[string]layerEntry{
			"bin/":      {typ: tar.TypeDir, mode: 0o755},
			"bin/hello": {typ: tar.TypeReg, mode: 0o755, data: "#!/bin/sh\necho hi\n"},
			"bin/hi":    {typ: tar.TypeSymlink, mode: 0o777, link: "hello"},
			"data/":     {typ: tar.TypeDir, mode: 0o700},
		}, []string{"8080/tcp"}, "/data", []string{"/bin/hello"}, "A=1"},
		{b, "docker.io/library/busybox:latest", "latest", map[string]layerEntry{
			"etc/":     {typ: tar.TypeDir, mode: 0o755},
			"etc/motd": {typ: tar.TypeReg, mode: 0o644, data: "motd"},
		}, nil, "", nil, ""},
	}
	for i, tt := range tests {
		d := index.Manifests[i]
		if got := d.Annotations[AnnotationImageName]; got != tt.name {
			t.Errorf("image %d: got name annotation %q, want %q", i, got, tt.name)
		}
		if got := d.Annotations[ocispec.AnnotationRefName]; got != tt.tag {
			t.Errorf("image %d: got ref name %q, want %q", i, got, tt.tag)
		}
		if d.MediaType != ocispec.MediaTypeImageManifest {
			t.Errorf("image %d: got media type %q", i, d.MediaType)
		}
		if want, _ := ManifestDigest(tt.spec); d.Digest.String() != want {
			t.Errorf("image %d: got manifest digest %s, want %s from ManifestDigest", i, d.Digest, want)
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(blobOf(d), &m); err != nil {
			t.Fatal(err)
		}
		if len(m.Layers) != 1 || m.Config.MediaType != ocispec.MediaTypeImageConfig {
			t.Fatalf("image %d: got manifest %+v, want one layer and an OCI config", i, m)
		}
		var cfg ocispec.Image
		if err := json.Unmarshal(blobOf(m.Config), &cfg); err != nil {
			t.Fatal(err)
		}
		if want, _ := ConfigDigest(tt.spec); m.Config.Digest.String() != want {
			t.Errorf("image %d: got config digest %s, want %s from ConfigDigest", i, m.Config.Digest, want)
		}
		layer, raw := readLayer(t, blobOf(m.Layers[0]))
		if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0].String() != sha(raw) {
			t.Errorf("image %d: got diff IDs %v, want [%s]", i, cfg.RootFS.DiffIDs, sha(raw))
		}
		if len(layer) != len(tt.wantLayer) {
			t.Errorf("image %d: got layer entries %v, want %v", i, layer, tt.wantLayer)
		}
		for name, want := range tt.wantLayer {
			if got := layer[name]; got != want {
				t.Errorf("image %d: layer entry %q: got %+v, want %+v", i, name, got, want)
			}
		}
		if cfg.OS != "linux" || cfg.Config.WorkingDir != tt.wantWorkdir || !slices.Equal(cfg.Config.Entrypoint, tt.wantEntry) {
			t.Errorf("image %d: got config %+v", i, cfg)
		}
		for _, p := range tt.wantPorts {
			if _, ok := cfg.Config.ExposedPorts[p]; !ok {
				t.Errorf("image %d: got exposed ports %v, want %s", i, cfg.Config.ExposedPorts, p)
			}
		}
	}

	// Deterministic: the same specs give the same bytes.
	var again bytes.Buffer
	if err := WriteOCIArchive(&again, a, b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Errorf("writing the same specs twice gave different archives (%d and %d bytes)", buf.Len(), again.Len())
	}
}

func TestInvalidSpecs(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
	}{
		{"bad name", Spec{Name: "UPPER/Case:1", Files: []File{{Path: "/a"}}}},
		{"digest name", Spec{Name: "busybox@sha256:" + strings.Repeat("a", 64)}},
		{"root path", Spec{Name: "x", Files: []File{{Path: "/"}}}},
		{"duplicate path", Spec{Name: "x", Files: []File{{Path: "/a"}, {Path: "a"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := WriteOCIArchive(io.Discard, tt.spec)
			if !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("got error %v, want ErrInvalidSpec", err)
			}
		})
	}
	if err := WriteOCIArchive(io.Discard); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("no specs: got error %v, want ErrInvalidSpec", err)
	}
}

func TestBusyboxFiles(t *testing.T) {
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skipf("no host busybox (install busybox-static): %v", err)
	}
	s, err := Busybox("skiff.test/busybox:1")
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]File{}
	for _, f := range s.Files {
		byPath[f.Path] = f
	}
	for _, a := range []string{"sh", "echo", "cat", "sleep", "wget", "nc", "hostname", "httpd", "ls", "ping"} {
		if f := byPath["/bin/"+a]; f.Link != "busybox" {
			t.Errorf("/bin/%s: got %+v, want a symlink to busybox", a, f)
		}
	}
	if f := byPath["/bin/busybox"]; len(f.Data) == 0 || f.Mode != 0o755 {
		t.Errorf("/bin/busybox: got %d bytes mode %v, want the binary with mode 0755", len(f.Data), f.Mode)
	}
	if !strings.Contains(string(byPath["/etc/passwd"].Data), "nobody:x:65534") {
		t.Errorf("/etc/passwd: got %q, want a nobody entry", byPath["/etc/passwd"].Data)
	}
	if err := checkStatic([]byte("not an elf")); err == nil {
		t.Error("checkStatic of garbage: got nil, want an error")
	}
	dyn, err := os.ReadFile("/bin/ls") // dynamically linked on Debian
	if err == nil {
		if err := checkStatic(dyn); !errors.Is(err, ErrNotStatic) {
			t.Errorf("checkStatic(/bin/ls): got %v, want ErrNotStatic", err)
		}
	}
}
