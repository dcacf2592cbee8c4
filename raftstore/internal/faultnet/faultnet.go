// Package faultnet is a network of named nodes over real loopback TCP, with
// partitions on demand, for tests of in-process clusters. Nodes address each
// other by name; a name keeps its meaning when its node restarts on a new
// port. Cutting a link closes its open connections and refuses new ones in
// both directions until the link is healed.
//
//	n := faultnet.New()
//	ep := n.Node("n1")          // a raftstore.Network for node n1
//	n.Isolate("n1")             // cut n1 from everyone
//	n.Heal()                    // restore every link
package faultnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// ErrCut is returned when dialing across a cut link.
var ErrCut = errors.New("faultnet: link is cut")

type link [2]string

func mkLink(a, b string) link {
	if a > b {
		a, b = b, a
	}
	return link{a, b}
}

// Net is one network. Safe for concurrent use.
type Net struct {
	mu    sync.Mutex
	addrs map[string]string // node name -> real listening address
	cut   map[link]bool
	conns map[link]map[net.Conn]struct{}
}

// New returns a network with every link up.
func New() *Net {
	return &Net{addrs: map[string]string{}, cut: map[link]bool{}, conns: map[link]map[net.Conn]struct{}{}}
}

// Node returns the endpoint of node name.
func (n *Net) Node(name string) *Endpoint { return &Endpoint{net: n, name: name} }

// Cut cuts the links between every node of a and every node of b.
func (n *Net) Cut(a, b []string) {
	n.mu.Lock()
	var doomed []net.Conn
	for _, x := range a {
		for _, y := range b {
			if x == y {
				continue
			}
			l := mkLink(x, y)
			n.cut[l] = true
			for c := range n.conns[l] {
				doomed = append(doomed, c)
			}
			delete(n.conns, l)
		}
	}
	n.mu.Unlock()
	for _, c := range doomed {
		c.Close()
	}
}

// Isolate cuts node from every other node the network knows.
func (n *Net) Isolate(node string) {
	n.Cut([]string{node}, n.names())
}

// Partition splits the known nodes into the given groups: links inside a
// group stay up, links across groups are cut. Nodes in no group are cut from all.
func (n *Net) Partition(groups ...[]string) {
	group := map[string]int{}
	for i, g := range groups {
		for _, x := range g {
			group[x] = i + 1
		}
	}
	names := n.names()
	for _, x := range names {
		for _, y := range names {
			if x < y && (group[x] == 0 || group[x] != group[y]) {
				n.Cut([]string{x}, []string{y})
			}
		}
	}
}

// Heal restores every link.
func (n *Net) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut = map[link]bool{}
}

func (n *Net) names() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for k := range n.addrs {
		out = append(out, k)
	}
	return out
}

// track registers an established connection on link l; false if l is cut.
func (n *Net) track(l link, c net.Conn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cut[l] {
		return false
	}
	if n.conns[l] == nil {
		n.conns[l] = map[net.Conn]struct{}{}
	}
	n.conns[l][c] = struct{}{}
	return true
}

func (n *Net) untrack(l link, c net.Conn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.conns[l], c)
}

// Endpoint is one node's view of the network; it satisfies raftstore.Network.
type Endpoint struct {
	net  *Net
	name string
}

// Listen listens on a fresh loopback port for node name; addr must be the
// node's name.
func (e *Endpoint) Listen(addr string) (net.Listener, error) {
	if addr != e.name {
		return nil, fmt.Errorf("faultnet: node %s cannot listen on %q", e.name, addr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e.net.mu.Lock()
	e.net.addrs[e.name] = ln.Addr().String()
	e.net.mu.Unlock()
	l := &listener{Listener: ln, ep: e, ch: make(chan net.Conn), done: make(chan struct{})}
	go l.acceptLoop()
	return l, nil
}

// Dial connects to the node named addr unless the link is cut.
func (e *Endpoint) Dial(ctx context.Context, addr string) (net.Conn, error) {
	e.net.mu.Lock()
	real, ok := e.net.addrs[addr]
	isCut := e.net.cut[mkLink(e.name, addr)]
	e.net.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("faultnet: unknown node %q", addr)
	}
	if isCut {
		return nil, fmt.Errorf("%w: %s -> %s", ErrCut, e.name, addr)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", real)
	if err != nil {
		return nil, err
	}
	hdr := append([]byte{byte(len(e.name))}, e.name...)
	if _, err := c.Write(hdr); err != nil {
		c.Close()
		return nil, err
	}
	tc := &conn{Conn: c, net: e.net, link: mkLink(e.name, addr)}
	if !e.net.track(tc.link, tc) {
		c.Close()
		return nil, fmt.Errorf("%w: %s -> %s", ErrCut, e.name, addr)
	}
	return tc, nil
}

type listener struct {
	net.Listener
	ep   *Endpoint
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *listener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.Close()
			return
		}
		go l.handshake(c)
	}
}

func (l *listener) handshake(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var n [1]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		c.Close()
		return
	}
	name := make([]byte, n[0])
	if _, err := io.ReadFull(c, name); err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	tc := &conn{Conn: c, net: l.ep.net, link: mkLink(string(name), l.ep.name)}
	if !l.ep.net.track(tc.link, tc) {
		c.Close()
		return
	}
	select {
	case l.ch <- tc:
	case <-l.done:
		tc.Close()
	}
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Addr reports the node's name, the address other nodes dial it by.
func (l *listener) Addr() net.Addr { return nameAddr(l.ep.name) }

type nameAddr string

func (a nameAddr) Network() string { return "faultnet" }
func (a nameAddr) String() string  { return string(a) }

type conn struct {
	net.Conn
	net  *Net
	link link
}

func (c *conn) Close() error {
	c.net.untrack(c.link, c)
	return c.Conn.Close()
}
