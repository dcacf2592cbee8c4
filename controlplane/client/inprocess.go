package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"

	"k8s.io/client-go/rest"
)

// InProcess makes cfg's requests be served by h in this process, as if they
// had come over cfg.Host: no connection, no TLS, no HTTP framing, the
// request and the response still encoded as on the wire. h sees requests
// without TLS state; whoever builds h gives them their identity. cfg's TLS
// settings are dropped.
func InProcess(cfg *rest.Config, h http.Handler) {
	cfg.Transport = HandlerTransport(h)
	cfg.TLSClientConfig, cfg.Dial = rest.TLSClientConfig{}, nil
}

// HandlerTransport is an http.RoundTripper that serves each request with h
// in a goroutine of its own, as net/http's server would: the handler's
// context ends when the caller's does, when the caller closes the response
// body, or when the handler returns. A response is returned once the
// handler returns or first flushes; from a flush on (a watch), the body
// streams what the handler writes, each write waiting for the reader. A
// handler that panics fails the request with an error (or the stream it
// had started), as a server would drop the connection.
func HandlerTransport(h http.Handler) http.RoundTripper { return handlerTransport{h} }

type handlerTransport struct{ h http.Handler }

// errBodyClosed is what a streaming handler's writes return once the
// client closed the response body.
var errBodyClosed = errors.New("client: in-process response body closed")

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	// The handler gets a request of its own, as a server parses one:
	// handlers may change its URL and headers.
	sreq := req.Clone(ctx)
	sreq.RequestURI = req.URL.RequestURI()
	sreq.RemoteAddr = "in-process"
	if sreq.Host == "" {
		sreq.Host = req.URL.Host
	}
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	w := &handlerResponse{req: req, header: http.Header{}, ready: make(chan *http.Response, 1), cancel: cancel, done: make(chan struct{})}
	go w.serve(t.h, sreq)
	select {
	case resp := <-w.ready:
		if resp == nil {
			return nil, w.err
		}
		return resp, nil
	case <-req.Context().Done():
		// The handler's context ended with the caller's. Whatever it still
		// hands over is closed, so that a stream's writes fail.
		go func() {
			if resp := <-w.ready; resp != nil {
				resp.Body.Close()
			}
		}()
		return nil, req.Context().Err()
	}
}

// handlerResponse is the http.ResponseWriter of one in-process request.
// Until the response is handed over (ready), only the handler's goroutine
// touches it; after a flush, writes go to the stream.
type handlerResponse struct {
	req    *http.Request
	header http.Header
	ready  chan *http.Response
	cancel context.CancelFunc
	done   chan struct{} // closed when the handler has returned

	code   int
	wrote  bool
	buf    bytes.Buffer
	stream *io.PipeWriter // set by the first Flush
	err    error          // why no response was handed over (ready got nil)
}

func (w *handlerResponse) serve(h http.Handler, r *http.Request) {
	defer func() {
		if r.Body != nil {
			r.Body.Close()
		}
		p := recover()
		if p != nil && p != http.ErrAbortHandler {
			p = fmt.Sprintf("%v\n%s", p, debug.Stack())
		}
		switch {
		case w.stream != nil && p != nil:
			w.stream.CloseWithError(fmt.Errorf("client: in-process handler of %s %s panicked: %v", r.Method, r.URL.Path, p))
		case w.stream != nil:
			w.stream.Close()
		case p != nil:
			w.err = fmt.Errorf("client: in-process handler of %s %s panicked: %v", r.Method, r.URL.Path, p)
			w.ready <- nil
		default:
			w.ready <- w.response(io.NopCloser(bytes.NewReader(w.buf.Bytes())), int64(w.buf.Len()))
		}
		close(w.done)
		w.cancel()
	}()
	h.ServeHTTP(w, r)
}

// response is the response handed to the caller: the status and a copy of
// the headers as they are now (net/http's server sends them at the first
// write too).
func (w *handlerResponse) response(body io.ReadCloser, length int64) *http.Response {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	h := w.header.Clone()
	if length >= 0 && h.Get("Content-Length") == "" {
		h.Set("Content-Length", strconv.FormatInt(length, 10))
	}
	if w.req.Method == http.MethodHead {
		body, length = http.NoBody, 0
	}
	return &http.Response{
		Status: strconv.Itoa(w.code) + " " + http.StatusText(w.code), StatusCode: w.code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: body, ContentLength: length, Request: w.req,
	}
}

func (w *handlerResponse) Header() http.Header { return w.header }

func (w *handlerResponse) WriteHeader(code int) {
	if w.code != 0 || code < 200 {
		return // a second status, or an informational one: net/http sends neither
	}
	w.code = code
}

func (w *handlerResponse) Write(p []byte) (int, error) {
	if !w.wrote && len(p) > 0 {
		w.wrote = true
		if _, ok := w.header["Content-Type"]; !ok && w.stream == nil {
			w.header.Set("Content-Type", http.DetectContentType(p))
		}
	}
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.stream != nil {
		return w.stream.Write(p)
	}
	return w.buf.Write(p)
}

// Flush hands the response over with what was written so far; later
// writes stream to the caller.
func (w *handlerResponse) Flush() {
	if w.stream != nil {
		return
	}
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	pr, pw := io.Pipe()
	w.stream = pw
	// A caller that goes away without closing the body must not leave the
	// handler blocked in a write (a server's connection would close).
	ctx := w.req.Context()
	go func() {
		select {
		case <-ctx.Done():
			pr.CloseWithError(ctx.Err())
		case <-w.done:
		}
	}()
	head := bytes.Clone(w.buf.Bytes())
	w.buf = bytes.Buffer{}
	w.ready <- w.response(&streamBody{Reader: io.MultiReader(bytes.NewReader(head), pr), pipe: pr, cancel: w.cancel}, -1)
}

// streamBody is a streamed response's body: closing it ends the handler's
// context and fails its writes.
type streamBody struct {
	io.Reader
	pipe   *io.PipeReader
	cancel context.CancelFunc
	once   sync.Once
}

func (b *streamBody) Close() error {
	b.once.Do(func() {
		b.pipe.CloseWithError(errBodyClosed)
		b.cancel()
	})
	return nil
}
