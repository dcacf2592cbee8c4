package e2e

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// tcpProxy is a loopback TCP proxy that a test puts between a client and
// the masters' API listeners. TLS passes through untouched (the serving
// certificates name 127.0.0.1, the proxy's address too). A test uses it to
//
//   - give a client one address that reaches whichever master is up: each
//     new connection goes to the first upstream in the current list that
//     accepts it, so a client of a killed master reconnects to another one;
//
//   - cut a client off: freeze closes every proxied connection and holds new
//     ones unanswered until thaw, which then forwards them.
//
//     p := newTCPProxy(t, leaderAddr, followerAddr)
//     cfg.Host = "https://" + p.addr()
//     p.freeze() ... p.thaw()
//
// Its methods are safe for concurrent use. t.Cleanup closes the listener
// and every connection and waits for the proxy's goroutines.
type tcpProxy struct {
	t  testing.TB
	ln net.Listener
	wg sync.WaitGroup

	mu        sync.Mutex
	upstreams []string
	frozen    bool
	held      []net.Conn
	// open holds both ends of every proxied connection, to close on freeze.
	open   map[net.Conn]struct{}
	dialed map[string]int // connections forwarded, by upstream
	closed bool
}

func newTCPProxy(t testing.TB, upstreams ...string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listener: %v", err)
	}
	p := &tcpProxy{t: t, ln: ln, upstreams: upstreams, open: map[net.Conn]struct{}{}, dialed: map[string]int{}}
	t.Cleanup(p.close)
	p.wg.Add(1)
	go p.serve()
	return p
}

// addr returns the host:port clients connect to.
func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

// setUpstreams replaces the upstream list for new connections; connections
// already forwarded stay where they are.
func (p *tcpProxy) setUpstreams(upstreams ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.upstreams = upstreams
}

// dialedTo returns how many connections were forwarded to upstream.
func (p *tcpProxy) dialedTo(upstream string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dialed[upstream]
}

// freeze closes every proxied connection and holds new connections
// (accepted, never answered) until thaw.
func (p *tcpProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
	for c := range p.open {
		c.Close()
	}
}

// thaw forwards the held connections and every later one.
func (p *tcpProxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = false
	for _, c := range p.held {
		p.startForward(c)
	}
	p.held = nil
}

// heldConns returns how many connections wait for thaw.
func (p *tcpProxy) heldConns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.held)
}

func (p *tcpProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.open {
		c.Close()
	}
	for _, c := range p.held {
		c.Close()
	}
	p.held = nil
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		switch {
		case p.closed:
			c.Close()
		case p.frozen:
			p.held = append(p.held, c)
		default:
			p.startForward(c)
		}
		p.mu.Unlock()
	}
}

// startForward forwards c in a new goroutine; p.mu must be held.
func (p *tcpProxy) startForward(c net.Conn) {
	p.open[c] = struct{}{}
	upstreams := append([]string(nil), p.upstreams...)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.forward(c, upstreams)
	}()
}

// forward connects c to the first upstream that accepts a connection and
// copies both ways until either side ends; then it closes both.
func (p *tcpProxy) forward(c net.Conn, upstreams []string) {
	defer p.forget(c)
	var up net.Conn
	for _, addr := range upstreams {
		var err error
		if up, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			p.mu.Lock()
			if p.closed || p.frozen {
				// Frozen or closed while dialing: this connection is cut too.
				p.mu.Unlock()
				up.Close()
				return
			}
			p.dialed[addr]++
			p.open[up] = struct{}{}
			p.mu.Unlock()
			defer p.forget(up)
			break
		}
	}
	if up == nil {
		return // no upstream answers: the client sees its connection closed
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src) // ends when either side is closed
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	c.Close()
	up.Close()
	<-done
}

// forget closes c and drops it from the open set.
func (p *tcpProxy) forget(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.open, c)
	p.mu.Unlock()
}
