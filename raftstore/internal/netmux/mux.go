// Package netmux shares one listening address between Raft's transport and
// the store's RPC protocol, optionally over TLS. The dialing side writes one
// byte naming the protocol right after the (TLS) handshake; the accepting side
// reads it and hands the connection to the right consumer.
//
//	m := netmux.New(netmux.Config{Listener: ln, ...})
//	go m.Run(ctx)                         // accept loop
//	raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: m.RaftLayer(), ...})
//	conn, _ := m.AcceptRPC(ctx)           // server side of RPC
//	conn, _ := m.Dial(ctx, addr, netmux.RPC)
package netmux

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Protocol bytes. Part of the wire format: append only.
const (
	Raft byte = 'r'
	RPC  byte = 'c'
)

// DialFunc opens a raw connection to addr.
type DialFunc func(ctx context.Context, addr string) (net.Conn, error)

// Config configures a Mux.
type Config struct {
	// Listener accepts raw connections; the Mux owns and closes it.
	Listener net.Listener
	// Dial opens raw connections to other nodes.
	Dial DialFunc
	// ServerTLS, when set, wraps every accepted connection; ClientTLS every
	// dialed one. Both or neither.
	ServerTLS, ClientTLS *tls.Config
	// Advertise is the address other nodes reach this one at, reported as
	// the raft layer's address; the listener's own address when empty.
	Advertise string
	// HandshakeTimeout bounds the TLS handshake and the protocol byte.
	HandshakeTimeout time.Duration
	Logger           *slog.Logger
}

// Mux is one shared listener. Create it with New and run it with Run.
type Mux struct {
	cfg    Config
	raftCh chan net.Conn
	rpcCh  chan net.Conn
	done   chan struct{}
	once   sync.Once
}

// New returns a mux over cfg.Listener.
func New(cfg Config) *Mux {
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Mux{cfg: cfg, raftCh: make(chan net.Conn), rpcCh: make(chan net.Conn), done: make(chan struct{})}
}

// Addr returns the listening address.
func (m *Mux) Addr() net.Addr { return m.cfg.Listener.Addr() }

// Run accepts connections until ctx ends, then closes the listener. It
// returns after its goroutines have exited.
func (m *Mux) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		<-ctx.Done()
		m.close()
	}()
	for {
		conn, err := m.cfg.Listener.Accept()
		if err != nil {
			select {
			case <-m.done:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.close()
			return fmt.Errorf("netmux: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.route(conn)
		}()
	}
}

func (m *Mux) close() {
	m.once.Do(func() {
		close(m.done)
		m.cfg.Listener.Close()
	})
}

func (m *Mux) route(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(m.cfg.HandshakeTimeout))
	if m.cfg.ServerTLS != nil {
		tc := tls.Server(conn, m.cfg.ServerTLS)
		if err := tc.Handshake(); err != nil {
			m.cfg.Logger.Debug("netmux: TLS handshake failed", "remote", conn.RemoteAddr(), "err", err)
			conn.Close()
			return
		}
		conn = tc
	}
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		conn.Close()
		return
	}
	conn.SetDeadline(time.Time{})
	var ch chan net.Conn
	switch b[0] {
	case Raft:
		ch = m.raftCh
	case RPC:
		ch = m.rpcCh
	default:
		m.cfg.Logger.Warn("netmux: unknown protocol byte", "remote", conn.RemoteAddr(), "byte", b[0])
		conn.Close()
		return
	}
	select {
	case ch <- conn:
	case <-m.done:
		conn.Close()
	}
}

// Dial opens a connection to addr for protocol proto.
func (m *Mux) Dial(ctx context.Context, addr string, proto byte) (net.Conn, error) {
	return Dial(ctx, m.cfg.Dial, addr, m.cfg.ClientTLS, m.cfg.HandshakeTimeout, proto)
}

// Dial opens a connection to a mux at addr for protocol proto, through TLS
// when tlsCfg is set; timeout bounds the handshake.
func Dial(ctx context.Context, dial DialFunc, addr string, tlsCfg *tls.Config, timeout time.Duration, proto byte) (net.Conn, error) {
	conn, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	dl := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	conn.SetDeadline(dl)
	if tlsCfg != nil {
		tc := tls.Client(conn, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("netmux: TLS handshake with %s: %w", addr, err)
		}
		conn = tc
	}
	if _, err := conn.Write([]byte{proto}); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// AcceptRPC returns the next RPC connection, or an error once the mux is closed.
func (m *Mux) AcceptRPC(ctx context.Context) (net.Conn, error) {
	select {
	case c := <-m.rpcCh:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// RaftLayer returns the stream layer for raft's NetworkTransport.
func (m *Mux) RaftLayer() raft.StreamLayer { return raftLayer{m} }

type raftLayer struct{ m *Mux }

func (l raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.raftCh:
		return c, nil
	case <-l.m.done:
		return nil, net.ErrClosed
	}
}

// Close is a no-op: the mux, not raft's transport, owns the listener.
func (l raftLayer) Close() error { return nil }

func (l raftLayer) Addr() net.Addr {
	if l.m.cfg.Advertise != "" {
		return advertised(l.m.cfg.Advertise)
	}
	return l.m.Addr()
}

type advertised string

func (a advertised) Network() string { return "tcp" }
func (a advertised) String() string  { return string(a) }

func (l raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.m.Dial(ctx, string(addr), Raft)
}
