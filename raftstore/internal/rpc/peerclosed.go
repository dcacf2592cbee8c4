package rpc

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// tcpCloseWait and tcpClose are the kernel's TCP states of a connection
// whose peer has closed its side (include/net/tcp_states.h).
const (
	tcpCloseWait = 8
	tcpClose     = 7
)

// peerClosed reports whether the kernel has already seen the peer close
// c (a FIN or a reset): asked before reusing a pooled connection, so that
// a request is not written to a peer that is gone. It reports false when
// it cannot tell (not TCP).
func peerClosed(c net.Conn) bool {
	if t, ok := c.(interface{ NetConn() net.Conn }); ok { // TLS
		c = t.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	raw.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		closed = err == nil && (info.State == tcpCloseWait || info.State == tcpClose)
	})
	return closed
}
