package imagebuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Credentials authenticate Push to a registry with HTTP Basic auth.
type Credentials struct{ Username, Password string }

// ErrRegistry is returned (wrapped, with the registry's answer) when a
// registry refuses a request of Push.
var ErrRegistry = errors.New("imagebuild: registry refused the request")

// Push uploads spec to the registry at registryURL ("http://10.99.0.1:5000";
// a bare host:port means http) through the registry HTTP API v2: each blob
// not there yet (HEAD) is uploaded with POST /v2/<repo>/blobs/uploads/ then
// PUT <location>?digest=, then the OCI manifest is PUT under the tag. The
// repository is the path of spec.Name ("skiff/busybox" for
// "10.99.0.1:5000/skiff/busybox:1"); its registry host is not checked
// against registryURL, so one spec can be pushed anywhere. At most one
// Credentials may be given.
func Push(ctx context.Context, registryURL string, spec Spec, creds ...Credentials) error {
	if len(creds) > 1 {
		return fmt.Errorf("%w: more than one Credentials", ErrInvalidSpec)
	}
	img, err := build(spec)
	if err != nil {
		return err
	}
	if !strings.Contains(registryURL, "://") {
		registryURL = "http://" + registryURL
	}
	base, err := url.Parse(strings.TrimSuffix(registryURL, "/"))
	if err != nil {
		return fmt.Errorf("imagebuild: registry URL %q: %w", registryURL, err)
	}
	p := &pusher{base: base, repo: img.repo, client: http.DefaultClient}
	if len(creds) == 1 {
		p.creds = &creds[0]
	}
	for _, b := range []blob{img.layer, img.config} {
		if err := p.blob(ctx, b); err != nil {
			return fmt.Errorf("imagebuild: push %s: blob %s: %w", img.name, b.desc.Digest, err)
		}
	}
	u := p.url("/v2/" + img.repo + "/manifests/" + img.tag)
	if _, err := p.do(ctx, http.MethodPut, u, img.manifest.desc.MediaType, img.manifest.data, http.StatusCreated); err != nil {
		return fmt.Errorf("imagebuild: push %s: manifest: %w", img.name, err)
	}
	return nil
}

type pusher struct {
	base   *url.URL
	repo   string
	creds  *Credentials
	client *http.Client
}

func (p *pusher) url(path string) string { return p.base.String() + path }

// blob uploads b unless the registry has it already.
func (p *pusher) blob(ctx context.Context, b blob) error {
	resp, err := p.do(ctx, http.MethodHead, p.url("/v2/"+p.repo+"/blobs/"+b.desc.Digest.String()), "", nil, http.StatusOK, http.StatusNotFound)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	resp, err = p.do(ctx, http.MethodPost, p.url("/v2/"+p.repo+"/blobs/uploads/"), "", nil, http.StatusAccepted)
	if err != nil {
		return err
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("upload started without a Location: %w", err)
	}
	q := loc.Query()
	q.Set("digest", b.desc.Digest.String())
	loc.RawQuery = q.Encode()
	_, err = p.do(ctx, http.MethodPut, loc.String(), "application/octet-stream", b.data, http.StatusCreated)
	return err
}

// do sends one request and checks its status is one of want. The body is
// read and closed.
func (p *pusher) do(ctx context.Context, method, u, contentType string, body []byte, want ...int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.ContentLength = int64(len(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if p.creds != nil {
		req.SetBasicAuth(p.creds.Username, p.creds.Password)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	for _, w := range want {
		if resp.StatusCode == w {
			return resp, nil
		}
	}
	return nil, fmt.Errorf("%w: %s %s: got %s %s", ErrRegistry, method, u, resp.Status, strings.TrimSpace(string(msg)))
}
