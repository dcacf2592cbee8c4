package rpc

import (
	"net"
	"testing"
	"time"
)

// TestPeerClosed: a live connection is not closed; once the peer closes
// its side, peerClosed says so without reading from the connection.
func TestPeerClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv := <-accepted
	if peerClosed(c) {
		t.Fatal("peerClosed on a live connection")
	}
	srv.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !peerClosed(c) {
		if time.Now().After(deadline) {
			t.Fatal("peerClosed still false 5s after the peer closed")
		}
		time.Sleep(time.Millisecond)
	}
}
