package rpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// echo answers method 1 with its payload, method 2 with an error, and method
// 3 only after release is closed.
type echo struct {
	release chan struct{}
	got     chan struct{} // receives once per method-3 call, when it arrives
}

func (e *echo) Serve(ctx context.Context, method byte, p []byte) ([]byte, error) {
	switch method {
	case 1:
		return p, nil
	case 2:
		return nil, errors.New("refused: " + string(p))
	case 3:
		e.got <- struct{}{}
		select {
		case <-e.release:
		case <-ctx.Done():
		}
		return []byte("late"), nil
	}
	return nil, fmt.Errorf("unknown method %d", method)
}

func (e *echo) EncodeError(err error) []byte { return []byte(err.Error()) }

// serve runs a server on a loopback listener and returns its address.
func serve(t *testing.T, h Handler) (addr string, ln net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	srv := &Server{Handler: h}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv.ServeConn(ctx, conn)
			}()
		}
	}()
	return ln.Addr().String(), ln
}

func dialer(addr string) Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

func TestConcurrentCallsShareAConnection(t *testing.T) {
	addr, _ := serve(t, &echo{})
	dials := 0
	var mu sync.Mutex
	c := NewClient(func(ctx context.Context) (net.Conn, error) {
		mu.Lock()
		dials++
		mu.Unlock()
		return dialer(addr)(ctx)
	})
	defer c.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := fmt.Sprintf("payload-%d", i)
			got, err := c.Call(t.Context(), 1, []byte(want))
			if err != nil || string(got) != want {
				errs <- fmt.Errorf("call %d = %q, %v; want %q", i, got, err, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if dials != 1 {
		t.Errorf("dialed %d times, want 1", dials)
	}
}

func TestRemoteErrorCarriesPayload(t *testing.T) {
	addr, _ := serve(t, &echo{})
	c := NewClient(dialer(addr))
	defer c.Close()
	_, err := c.Call(t.Context(), 2, []byte("x"))
	var re *RemoteError
	if !errors.As(err, &re) || string(re.Payload) != "refused: x" {
		t.Fatalf("got %v, want RemoteError with payload %q", err, "refused: x")
	}
}

// TestFailureBeforeAndAfterSending checks the distinction callers rely on
// for exactly-once writes: a call that never left is ErrNotSent, a call cut
// off after it was sent is ErrConnLost.
func TestFailureBeforeAndAfterSending(t *testing.T) {
	// Nothing listens on the address: the request is never sent.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()
	c := NewClient(dialer(deadAddr))
	if _, err := c.Call(t.Context(), 1, nil); !errors.Is(err, ErrNotSent) {
		t.Fatalf("call to a closed port: got %v, want ErrNotSent", err)
	}
	c.Close()

	// The server has the request when the connection breaks.
	h := &echo{release: make(chan struct{}), got: make(chan struct{}, 1)}
	addr, _ := serve(t, h)
	conns := make(chan net.Conn, 2)
	c = NewClient(func(ctx context.Context) (net.Conn, error) {
		conn, err := dialer(addr)(ctx)
		if err == nil {
			conns <- conn
		}
		return conn, err
	})
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(t.Context(), 3, nil)
		done <- err
	}()
	select {
	case <-h.got:
	case <-time.After(10 * time.Second):
		t.Fatal("the server never received the call")
	}
	(<-conns).Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrConnLost) {
			t.Fatalf("call cut off after sending: got %v, want ErrConnLost", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("call did not fail after its connection closed")
	}
	close(h.release)
	// The client redials for the next call.
	if got, err := c.Call(t.Context(), 1, []byte("again")); err != nil || string(got) != "again" {
		t.Fatalf("call after reconnect = %q, %v; want again", got, err)
	}
}

// brokenConn fails its writes once broken is set, as a connection to a
// killed peer does (connection reset).
type brokenConn struct {
	net.Conn
	broken *atomic.Bool
}

func (c brokenConn) Write(p []byte) (int, error) {
	if c.broken.Load() {
		return 0, syscall.ECONNRESET
	}
	return c.Conn.Write(p)
}

// TestFailedWriteIsNotSent: a call whose own request cannot be written on a
// pooled connection (the peer died meanwhile) is ErrNotSent — the server
// cannot have acted on a frame it never fully received — so a caller may
// send it elsewhere.
func TestFailedWriteIsNotSent(t *testing.T) {
	h := &echo{release: make(chan struct{}), got: make(chan struct{}, 1)}
	close(h.release)
	addr, _ := serve(t, h)
	var broken atomic.Bool
	c := NewClient(func(ctx context.Context) (net.Conn, error) {
		conn, err := dialer(addr)(ctx)
		if err != nil {
			return nil, err
		}
		return brokenConn{Conn: conn, broken: &broken}, nil
	})
	defer c.Close()
	if _, err := c.Call(t.Context(), 1, []byte("first")); err != nil {
		t.Fatalf("first call: %v", err)
	}
	broken.Store(true)
	if _, err := c.Call(t.Context(), 1, []byte("second")); !errors.Is(err, ErrNotSent) {
		t.Fatalf("call whose write failed: got %v, want ErrNotSent", err)
	}
}

func TestCallHonoursContext(t *testing.T) {
	h := &echo{release: make(chan struct{}), got: make(chan struct{}, 1)}
	defer close(h.release)
	addr, _ := serve(t, h)
	c := NewClient(dialer(addr))
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Call(ctx, 3, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
}
