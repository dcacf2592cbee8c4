// Package rpc is the small request/response protocol the store's nodes speak
// to each other (write forwarding, read index, membership) and that remote
// clients use. Many calls share one connection; responses may come back in
// any order.
//
// Frame: 4-byte big-endian length of the rest, 8-byte call id, 1 byte
// (method in a request, status in a response), then the payload.
//
//	srv := &rpc.Server{Handler: h}
//	go srv.ServeConn(ctx, conn)           // per accepted connection
//	cl := rpc.NewClient(dial)             // dial opens a fresh connection
//	resp, err := cl.Call(ctx, method, payload)
//
// A Call either fails before its whole request was written (ErrNotSent: the
// server never saw it) or after (ErrConnLost: the server may or may not have
// acted).
// Callers that care about exactly-once use that distinction.
package rpc

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// writeTimeout bounds one flush of requests to the server.
const writeTimeout = 10 * time.Second

// MaxFrame bounds one frame's size.
const MaxFrame = 64 << 20

const headerLen = 4 + 8 + 1

// Response statuses.
const (
	statusOK    byte = 0
	statusError byte = 1
)

// ErrNotSent wraps failures that happened before the request left this
// process: the server did not see the call.
var ErrNotSent = errors.New("rpc: request not sent")

// ErrConnLost wraps failures after the request may have been sent: the
// server may have acted on it.
var ErrConnLost = errors.New("rpc: connection lost before the response")

// RemoteError is an error the handler returned, as the client receives it.
type RemoteError struct {
	// Payload is the error's encoding, as produced by the server's ErrorEncoder.
	Payload []byte
}

func (e *RemoteError) Error() string { return "rpc: remote error" }

// Handler serves one call. An error is sent back as a RemoteError whose
// payload is EncodeError(err).
type Handler interface {
	Serve(ctx context.Context, method byte, payload []byte) ([]byte, error)
	EncodeError(err error) []byte
}

// Server serves calls on connections handed to ServeConn.
type Server struct {
	Handler Handler
}

// ServeConn serves calls on conn until ctx ends or the connection fails, and
// closes conn. It returns after every call it started has finished.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		conn.Close()
		wg.Wait()
	}()
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	var (
		wmu sync.Mutex
		// writers counts responses about to be written: only the last
		// of a burst flushes, so concurrent responses share a syscall.
		writers atomic.Int32
	)
	bw := bufio.NewWriter(conn)
	br := bufio.NewReader(conn)
	for {
		id, method, payload, err := readFrame(br)
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := s.Handler.Serve(ctx, method, payload)
			status := statusOK
			if err != nil {
				status, resp = statusError, s.Handler.EncodeError(err)
			}
			writers.Add(1)
			wmu.Lock()
			defer wmu.Unlock()
			err = writeFrame(bw, id, status, resp)
			if writers.Add(-1) == 0 && err == nil {
				err = bw.Flush()
			}
			if err != nil {
				conn.Close()
			}
		}()
	}
}

func readFrame(r *bufio.Reader) (id uint64, kind byte, payload []byte, err error) {
	var hdr [headerLen]byte
	if _, err = io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 9 || n > MaxFrame {
		return 0, 0, nil, fmt.Errorf("rpc: bad frame length %d", n)
	}
	id = binary.BigEndian.Uint64(hdr[4:12])
	payload = make([]byte, n-9)
	if _, err = io.ReadFull(r, payload); err != nil {
		return 0, 0, nil, err
	}
	return id, hdr[12], payload, nil
}

func writeFrame(w *bufio.Writer, id uint64, kind byte, payload []byte) error {
	if len(payload)+9 > MaxFrame {
		return fmt.Errorf("rpc: frame of %d bytes is too large", len(payload))
	}
	var hdr [headerLen]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(payload)+9))
	binary.BigEndian.PutUint64(hdr[4:12], id)
	hdr[12] = kind
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// Dialer opens a new connection to the server.
type Dialer func(ctx context.Context) (net.Conn, error)

// Client multiplexes calls over one connection to one server, redialing
// after a failure. Safe for concurrent use.
type Client struct {
	dial Dialer

	mu     sync.Mutex
	cur    *clientConn
	closed bool
}

// NewClient returns a client that connects lazily with dial.
func NewClient(dial Dialer) *Client { return &Client{dial: dial} }

type result struct {
	status  byte
	payload []byte
}

type clientConn struct {
	conn net.Conn
	wmu  sync.Mutex
	bw   *bufio.Writer
	// writers counts calls about to write: only the last of a burst
	// flushes, so concurrent requests share a syscall.
	writers atomic.Int32

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan result
	err     error // set once the connection is dead
}

// Close closes the client's connection and fails its pending calls.
func (c *Client) Close() error {
	c.mu.Lock()
	cc := c.cur
	c.cur, c.closed = nil, true
	c.mu.Unlock()
	if cc != nil {
		cc.fail(net.ErrClosed)
	}
	return nil
}

func (c *Client) conn(ctx context.Context) (*clientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, net.ErrClosed
	}
	if c.cur != nil {
		c.cur.mu.Lock()
		dead := c.cur.err != nil
		c.cur.mu.Unlock()
		if !dead && peerClosed(c.cur.conn) {
			// The peer closed (it was killed) but the read loop has not
			// seen it yet: a request written now would be lost with an
			// unknown outcome, though the peer can never act on it.
			c.cur.fail(io.EOF)
			dead = true
		}
		if !dead {
			return c.cur, nil
		}
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	cc := &clientConn{conn: conn, bw: bufio.NewWriter(conn), pending: map[uint64]chan result{}}
	c.cur = cc
	go cc.readLoop()
	return cc, nil
}

func (cc *clientConn) readLoop() {
	br := bufio.NewReader(cc.conn)
	for {
		id, status, payload, err := readFrame(br)
		if err != nil {
			cc.fail(err)
			return
		}
		cc.mu.Lock()
		ch := cc.pending[id]
		delete(cc.pending, id)
		cc.mu.Unlock()
		if ch != nil {
			ch <- result{status, payload}
		}
	}
}

func (cc *clientConn) fail(err error) {
	cc.mu.Lock()
	if cc.err == nil {
		cc.err = err
	}
	pending := cc.pending
	cc.pending = map[uint64]chan result{}
	cc.mu.Unlock()
	cc.conn.Close()
	for _, ch := range pending {
		close(ch)
	}
}

// Call sends one request and waits for its response. Errors wrap ErrNotSent,
// ErrConnLost or the context's error (after sending: the server may act), or
// are a *RemoteError.
func (c *Client) Call(ctx context.Context, method byte, payload []byte) ([]byte, error) {
	cc, err := c.conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	ch := make(chan result, 1)
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrNotSent, cc.err)
	}
	cc.nextID++
	id := cc.nextID
	cc.pending[id] = ch
	cc.mu.Unlock()

	cc.writers.Add(1)
	cc.wmu.Lock()
	// A peer that stops reading must not hang writers forever.
	cc.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	err = writeFrame(cc.bw, id, method, payload)
	if cc.writers.Add(-1) == 0 && err == nil {
		err = cc.bw.Flush()
	}
	cc.wmu.Unlock()
	if err != nil {
		// This call's frame was the last one put in the buffer, and the
		// write that failed held at least its end: the server never got
		// the whole frame, so it cannot act on it. (Calls whose frames an
		// earlier write carried wait for their responses and get
		// ErrConnLost.) A leader killed under a pooled connection fails
		// here, and the write goes to the next leader instead of being
		// reported as of unknown outcome.
		cc.fail(err)
		return nil, fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			cc.mu.Lock()
			err := cc.err
			cc.mu.Unlock()
			return nil, fmt.Errorf("%w: %w", ErrConnLost, err)
		}
		if r.status != statusOK {
			return nil, &RemoteError{Payload: r.payload}
		}
		return r.payload, nil
	case <-ctx.Done():
		cc.mu.Lock()
		delete(cc.pending, id)
		cc.mu.Unlock()
		return nil, ctx.Err()
	}
}
