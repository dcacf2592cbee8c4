// Package imagebuild builds small OCI container images from files, without a
// container engine, for Skiff's tests and the lab: an image is a Spec (a name,
// a list of files and the image config); WriteOCIArchive writes one or more
// of them as an OCI image layout tar that containerd's Import and
// `ctr images import` load under their names, and Push uploads one to a
// registry through the registry HTTP API v2. Output is deterministic (fixed
// modification times, sorted entries), so an image built twice has the same
// digests.
//
// Typical use:
//
//	bb, err := imagebuild.Busybox("registry.lab:5000/skiff/busybox:1")
//	srv, err := imagebuild.GoBinary("registry.lab:5000/skiff/echoserver:1", "./e2e/lab/testimages/echoserver", imagebuild.OnBase(bb))
//	err = imagebuild.WriteOCIArchive(f, bb, srv)             // for `skiff image import`
//	err = imagebuild.Push(ctx, "http://10.99.0.1:5000", srv) // for pulls
//
// Layers are single gzip-compressed tars; configs are for linux and the
// architecture of the running program (runtime.GOARCH).
package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// File is one entry of an image's only layer.
type File struct {
	// Path is the absolute path inside the image, e.g. "/bin/sh".
	Path string
	// Mode holds the permission bits; fs.ModeDir makes a directory
	// (Data and Link are then ignored). 0 means 0644 for a file, 0755 for a
	// directory.
	Mode fs.FileMode
	// Data is a regular file's content.
	Data []byte
	// Link, when set, makes the entry a symbolic link to Link.
	Link string
}

// Spec describes one image.
type Spec struct {
	// Name is the image reference, e.g. "10.99.0.1:5000/skiff/busybox:1"
	// or "busybox" (normalized like docker does: docker.io/library/busybox:latest).
	Name       string
	Files      []File
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	// ExposedPorts are "8080/tcp" style entries.
	ExposedPorts []string
	// User is the config's user ("" = root).
	User string
}

// Errors of this package.
var (
	// ErrInvalidSpec is returned when a Spec has a bad name or file list.
	ErrInvalidSpec = errors.New("imagebuild: invalid image spec")
	// ErrNotStatic is returned by Busybox when the host's busybox is not a
	// statically linked executable (it would not run in an image without
	// the host's libraries).
	ErrNotStatic = errors.New("imagebuild: busybox is not statically linked")
)

// epoch is the modification time of every layer entry and the image's
// creation time, so output does not depend on when it was built.
var epoch = time.Unix(0, 0).UTC()

// blob is content with its descriptor.
type blob struct {
	desc ocispec.Descriptor
	data []byte
}

// image is a Spec turned into content.
type image struct {
	name     string // normalized full reference (with tag)
	repo     string // path of the repository inside its registry, e.g. "skiff/busybox"
	domain   string
	tag      string
	layer    blob
	config   blob
	manifest blob
}

// build produces the layer, config and manifest of s.
func build(s Spec) (*image, error) {
	named, err := reference.ParseNormalizedNamed(s.Name)
	if err != nil {
		return nil, fmt.Errorf("%w: name %q: %v", ErrInvalidSpec, s.Name, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return nil, fmt.Errorf("%w: name %q: a digest cannot name a built image", ErrInvalidSpec, s.Name)
	}
	tagged := reference.TagNameOnly(named).(reference.NamedTagged)
	img := &image{name: tagged.String(), repo: reference.Path(tagged), domain: reference.Domain(tagged), tag: tagged.Tag()}

	raw, err := layerTar(s.Files)
	if err != nil {
		return nil, err
	}
	diffID := sha256.Sum256(raw)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz) // no name, no mtime: deterministic
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	img.layer = newBlob(ocispec.MediaTypeImageLayerGzip, gz.Bytes())

	cfg := ocispec.Image{
		Created:  &epoch,
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config: ocispec.ImageConfig{
			User: s.User, Env: s.Env, Entrypoint: s.Entrypoint, Cmd: s.Cmd, WorkingDir: s.WorkingDir,
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.Digest("sha256:" + hex.EncodeToString(diffID[:]))}},
	}
	if len(s.ExposedPorts) > 0 {
		cfg.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range s.ExposedPorts {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			cfg.Config.ExposedPorts[p] = struct{}{}
		}
	}
	cb, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	img.config = newBlob(ocispec.MediaTypeImageConfig, cb)

	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    img.config.desc,
		Layers:    []ocispec.Descriptor{img.layer.desc},
	}
	m.SchemaVersion = 2
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	img.manifest = newBlob(ocispec.MediaTypeImageManifest, mb)
	return img, nil
}

func newBlob(mediaType string, data []byte) blob {
	sum := sha256.Sum256(data)
	return blob{
		desc: ocispec.Descriptor{MediaType: mediaType, Digest: digest.Digest("sha256:" + hex.EncodeToString(sum[:])), Size: int64(len(data))},
		data: data,
	}
}

// layerTar writes files as an uncompressed tar, sorted by path, with an
// entry for every parent directory not listed.
func layerTar(files []File) ([]byte, error) {
	entries := map[string]File{}
	for _, f := range files {
		p := path.Clean("/" + f.Path)
		if p == "/" || f.Path == "" {
			return nil, fmt.Errorf("%w: file path %q", ErrInvalidSpec, f.Path)
		}
		if _, dup := entries[p]; dup {
			return nil, fmt.Errorf("%w: file %q listed twice", ErrInvalidSpec, p)
		}
		f.Path = p
		entries[p] = f
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				entries[d] = File{Path: d, Mode: fs.ModeDir | 0o755}
			}
		}
	}
	// A listed "directory" whose path is a parent of another entry must be
	// a directory.
	paths := make([]string, 0, len(entries))
	for p := range entries {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		f := entries[p]
		h := &tar.Header{
			Name: strings.TrimPrefix(p, "/"), ModTime: epoch, Format: tar.FormatPAX,
			Uname: "root", Gname: "root",
		}
		perm := int64(f.Mode.Perm())
		switch {
		case f.Mode.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
			if perm == 0 {
				perm = 0o755
			}
		case f.Link != "":
			h.Typeflag, h.Linkname, perm = tar.TypeSymlink, f.Link, 0o777
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
			if perm == 0 {
				perm = 0o644
			}
		}
		if f.Mode&fs.ModeSticky != 0 {
			perm |= 0o1000
		}
		h.Mode = perm
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Annotations on the index entries of an archive. containerd names an
// imported image by AnnotationImageName; other tools read the tag from
// ocispec.AnnotationRefName.
const AnnotationImageName = "io.containerd.image.name"

// WriteOCIArchive writes specs as one OCI image layout tar: oci-layout,
// index.json (one manifest entry per spec, annotated with the full image
// name and its tag) and the blobs, each blob once. The output depends only
// on the specs.
func WriteOCIArchive(w io.Writer, specs ...Spec) error {
	if len(specs) == 0 {
		return fmt.Errorf("%w: no image to write", ErrInvalidSpec)
	}
	index := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
	index.SchemaVersion = 2
	blobs := map[digest.Digest][]byte{}
	for _, s := range specs {
		img, err := build(s)
		if err != nil {
			return err
		}
		for _, b := range []blob{img.layer, img.config, img.manifest} {
			blobs[b.desc.Digest] = b.data
		}
		d := img.manifest.desc
		d.Platform = &ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"}
		d.Annotations = map[string]string{AnnotationImageName: img.name, ocispec.AnnotationRefName: img.tag}
		index.Manifests = append(index.Manifests, d)
	}
	ib, err := json.Marshal(index)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add(ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"`+ocispec.ImageLayoutVersion+`"}`)); err != nil {
		return err
	}
	if err := add("index.json", ib); err != nil {
		return err
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	ds := make([]digest.Digest, 0, len(blobs))
	for d := range blobs {
		ds = append(ds, d)
	}
	slices.Sort(ds)
	for _, d := range ds {
		if err := add("blobs/sha256/"+d.Encoded(), blobs[d]); err != nil {
			return err
		}
	}
	return tw.Close()
}

// ManifestDigest returns the digest ("sha256:...") of s's manifest: what a
// registry reports as Docker-Content-Digest and what a pulled image's
// repo digest carries.
func ManifestDigest(s Spec) (string, error) {
	img, err := build(s)
	if err != nil {
		return "", err
	}
	return img.manifest.desc.Digest.String(), nil
}

// ConfigDigest returns the digest of s's config blob: the image ID containerd reports.
func ConfigDigest(s Spec) (string, error) {
	img, err := build(s)
	if err != nil {
		return "", err
	}
	return img.config.desc.Digest.String(), nil
}

// FullName returns s.Name normalized with its tag, e.g. "busybox" →
// "docker.io/library/busybox:latest": the name an imported image gets.
func FullName(s Spec) (string, error) {
	named, err := reference.ParseNormalizedNamed(s.Name)
	if err != nil {
		return "", fmt.Errorf("%w: name %q: %v", ErrInvalidSpec, s.Name, err)
	}
	return reference.TagNameOnly(named).String(), nil
}
