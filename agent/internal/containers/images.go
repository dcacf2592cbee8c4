package containers

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/remotes"
	"github.com/containerd/containerd/remotes/docker"
	refdocker "github.com/distribution/reference"
	corev1 "k8s.io/api/core/v1"
)

// Auth is one registry's credentials (an entry of a dockerconfigjson).
type Auth struct {
	Username, Password string
	// Auth is base64("username:password"), used when Username is empty.
	Auth          string
	IdentityToken string
}

// Credentials maps a registry host ("docker.io", "localhost:5000"; keys
// may also be URLs such as "https://index.docker.io/v1/") to credentials.
type Credentials map[string]Auth

// Image is an image present in containerd.
type Image struct {
	Ref        string // normalized reference, e.g. docker.io/library/busybox:latest
	ID         string // the image config's digest, "sha256:..."
	RepoDigest string // "name@sha256:<manifest digest>"
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	StopSignal string
}

// ImageError is an image failure as the kubelet reports it: Reason is
// "ErrImagePull", "ErrImageNeverPull" or "InvalidImageName".
type ImageError struct{ Reason, Message string }

func (e *ImageError) Error() string { return e.Message }

// The ImageError reasons.
const (
	ReasonErrImagePull      = "ErrImagePull"
	ReasonErrImageNeverPull = "ErrImageNeverPull"
	ReasonInvalidImageName  = "InvalidImageName"
)

// normalizeRef returns the fully qualified form of ref
// ("busybox" → "docker.io/library/busybox:latest") and whether ref names a
// tag latest or no tag at all (no digest).
func normalizeRef(ref string) (string, bool, error) {
	named, err := refdocker.ParseDockerRef(ref)
	if err != nil {
		return "", false, err
	}
	latest := false
	if _, isDigest := named.(refdocker.Digested); !isDigest {
		if t, ok := named.(refdocker.Tagged); ok && t.Tag() == "latest" {
			latest = true
		}
	}
	return named.String(), latest, nil
}

// EnsureImage makes ref present and unpacked, pulling it as policy says:
// Always pulls, IfNotPresent pulls when missing, Never fails when missing;
// "" means Always for a latest or untagged reference, else IfNotPresent.
// creds are offered to the registry of ref. Errors are *ImageError.
func (r *Runtime) EnsureImage(ctx context.Context, ref string, policy corev1.PullPolicy, creds Credentials) (Image, error) {
	ctx = r.ctx(ctx)
	norm, latest, err := normalizeRef(ref)
	if err != nil {
		return Image{}, &ImageError{Reason: ReasonInvalidImageName,
			Message: fmt.Sprintf("Failed to apply default image tag %q: couldn't parse image name %q: %v", ref, ref, err)}
	}
	if policy == "" {
		policy = corev1.PullIfNotPresent
		if latest {
			policy = corev1.PullAlways
		}
	}
	if policy != corev1.PullAlways {
		img, err := r.client.GetImage(ctx, norm)
		switch {
		case err == nil:
			if err := r.unpack(ctx, img); err != nil {
				return Image{}, &ImageError{Reason: ReasonErrImagePull, Message: fmt.Sprintf("Failed to unpack image %q: %v", ref, err)}
			}
			return r.describe(ctx, img)
		case !errdefs.IsNotFound(err):
			return Image{}, fmt.Errorf("containers: image %s: %w", norm, err)
		case policy == corev1.PullNever:
			return Image{}, &ImageError{Reason: ReasonErrImageNeverPull,
				Message: fmt.Sprintf("Container image %q is not present with pull policy of Never", ref)}
		}
	}
	img, err := r.client.Pull(ctx, norm,
		containerd.WithResolver(r.resolver(creds)),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(r.cfg.Snapshotter))
	if err != nil {
		return Image{}, &ImageError{Reason: ReasonErrImagePull, Message: fmt.Sprintf("Failed to pull image %q: %v", ref, err)}
	}
	r.log.Info("pulled image", "image", norm)
	return r.describe(ctx, img)
}

// ImportImages loads an OCI image layout or docker-save archive and
// unpacks its images; it returns their names.
func (r *Runtime) ImportImages(ctx context.Context, archive io.Reader) ([]string, error) {
	ctx = r.ctx(ctx)
	imgs, err := r.client.Import(ctx, archive)
	if err != nil {
		return nil, fmt.Errorf("containers: import: %w", err)
	}
	var names []string
	for _, i := range imgs {
		img := containerd.NewImage(r.client, i)
		if err := r.unpack(ctx, img); err != nil {
			return names, fmt.Errorf("containers: import: unpack %s: %w", i.Name, err)
		}
		names = append(names, i.Name)
	}
	return names, nil
}

func (r *Runtime) unpack(ctx context.Context, img containerd.Image) error {
	ok, err := img.IsUnpacked(ctx, r.cfg.Snapshotter)
	if err != nil || ok {
		return err
	}
	return img.Unpack(ctx, r.cfg.Snapshotter)
}

// describe reads img's config into an Image.
func (r *Runtime) describe(ctx context.Context, img containerd.Image) (Image, error) {
	cfgDesc, err := img.Config(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("containers: image %s: %w", img.Name(), err)
	}
	spec, err := img.Spec(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("containers: image %s: %w", img.Name(), err)
	}
	out := Image{
		Ref:        img.Name(),
		ID:         cfgDesc.Digest.String(),
		Entrypoint: spec.Config.Entrypoint,
		Cmd:        spec.Config.Cmd,
		Env:        spec.Config.Env,
		WorkingDir: spec.Config.WorkingDir,
		User:       spec.Config.User,
		StopSignal: spec.Config.StopSignal,
	}
	if named, err := refdocker.ParseNormalizedNamed(img.Name()); err == nil {
		out.RepoDigest = named.Name() + "@" + img.Target().Digest.String()
	}
	return out, nil
}

// resolver resolves and fetches with creds, using plain HTTP for
// localhost and the configured insecure registries.
func (r *Runtime) resolver(creds Credentials) remotes.Resolver {
	plain := func(host string) (bool, error) {
		if ok, _ := docker.MatchLocalhost(host); ok {
			return true, nil
		}
		return slices.Contains(r.cfg.InsecureRegistries, host), nil
	}
	auth := docker.NewDockerAuthorizer(docker.WithAuthCreds(func(host string) (string, string, error) {
		a, ok := creds.lookup(host)
		if !ok {
			return "", "", nil
		}
		return a.userPass()
	}))
	return docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(plain), docker.WithAuthorizer(auth)),
	})
}

// registryHost reduces a credentials key or registry host to the form
// used for matching: no scheme, no path, docker.io for Docker Hub's aliases.
func registryHost(s string) string {
	if strings.Contains(s, "://") {
		if u, err := url.Parse(s); err == nil {
			s = u.Host
		}
	}
	s, _, _ = strings.Cut(s, "/")
	switch s {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return "docker.io"
	}
	return s
}

// lookup finds the credentials for a registry host.
func (c Credentials) lookup(host string) (Auth, bool) {
	want := registryHost(host)
	for k, a := range c {
		if registryHost(k) == want {
			return a, true
		}
	}
	return Auth{}, false
}

// userPass returns the user and secret the authorizer sends: an identity
// token is a refresh token with an empty user.
func (a Auth) userPass() (string, string, error) {
	if a.IdentityToken != "" {
		return "", a.IdentityToken, nil
	}
	if a.Username != "" || a.Auth == "" {
		return a.Username, a.Password, nil
	}
	raw, err := base64.StdEncoding.DecodeString(a.Auth)
	if err != nil {
		return "", "", errors.New("containers: registry credentials: auth is not base64")
	}
	u, p, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", errors.New("containers: registry credentials: auth is not user:password")
	}
	return u, p, nil
}
