package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/pki"
)

// handshake runs one TLS handshake over a loopback TCP connection between a
// server with serverCfg and a client with clientCfg, and returns the server's
// view of the connection and both ends' handshake errors.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) (state tls.ConnectionState, serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		srv := tls.Server(conn, serverCfg)
		err = srv.HandshakeContext(t.Context())
		done <- result{state: srv.ConnectionState(), err: err}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	cli := tls.Client(conn, clientCfg)
	clientErr = cli.HandshakeContext(t.Context())
	if clientErr == nil {
		// In TLS 1.3 the client finishes its handshake before the server has
		// checked the client certificate; a read surfaces the server's verdict.
		cli.SetReadDeadline(time.Now().Add(5 * time.Second))
		var b [1]byte
		if _, err := cli.Read(b[:]); err != nil && !isEOF(err) {
			clientErr = err
		}
	}
	r := <-done
	return r.state, r.err, clientErr
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }

// keyPair parses a PEM certificate and key.
func keyPair(t *testing.T, certPEM, keyPEM []byte, err error) tls.Certificate {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestServerTLSConfig(t *testing.T) {
	ca, foreign := newCA(t), newCA(t)
	servingCert, servingKey, err := ca.IssueServing(nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serverCfg, err := pki.ServerTLSConfig(servingCert, servingKey, ca)
	if err != nil {
		t.Fatalf("ServerTLSConfig: %v", err)
	}
	if got, want := serverCfg.MinVersion, uint16(tls.VersionTLS12); got != want {
		t.Errorf("MinVersion: got %x, want %x", got, want)
	}
	pair := pairOf(t)
	admin := pair(ca.IssueClient("system:admin", []string{"system:masters"}, time.Hour))
	stranger := pair(foreign.IssueClient("system:admin", []string{"system:masters"}, time.Hour))
	peer := pair(ca.IssuePeer(time.Hour))

	tests := []struct {
		name          string
		certs         []tls.Certificate
		wantHandshake bool
		wantOK        bool
		wantUser      string
		wantGroups    []string
	}{
		{name: "client certificate of the CA", certs: []tls.Certificate{admin}, wantHandshake: true, wantOK: true, wantUser: "system:admin", wantGroups: []string{"system:masters"}},
		{name: "peer certificate", certs: []tls.Certificate{peer}, wantHandshake: true, wantOK: true, wantUser: pki.PeerServerName},
		{name: "no client certificate", wantHandshake: true},
		{name: "client certificate of a foreign CA", certs: []tls.Certificate{stranger}},
	}
	for _, tt := range tests {
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(tt.name+"/"+tls.VersionName(version), func(t *testing.T) {
				clientCfg := &tls.Config{
					RootCAs: ca.Pool(), ServerName: "kubernetes.default.svc", Certificates: tt.certs,
					MinVersion: version, MaxVersion: version,
				}
				state, serverErr, clientErr := handshake(t, serverCfg, clientCfg)
				if gotHandshake := serverErr == nil && clientErr == nil; gotHandshake != tt.wantHandshake {
					t.Fatalf("handshake: got server error %v, client error %v, want success %v", serverErr, clientErr, tt.wantHandshake)
				}
				if !tt.wantHandshake {
					t.Logf("refused as wanted: server error %v, client error %v", serverErr, clientErr)
					return
				}
				user, groups, ok := pki.Authenticate(&state)
				if ok != tt.wantOK || user != tt.wantUser || !slices.Equal(groups, tt.wantGroups) {
					t.Errorf("Authenticate: got %q %q %v, want %q %q %v", user, groups, ok, tt.wantUser, tt.wantGroups, tt.wantOK)
				}
			})
		}
	}
}

func TestPeerTLSConfigs(t *testing.T) {
	ca, foreign := newCA(t), newCA(t)
	peerCert, peerKey, err := ca.IssuePeer(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	server, client, err := pki.PeerTLSConfigs(peerCert, peerKey, ca)
	if err != nil {
		t.Fatalf("PeerTLSConfigs: %v", err)
	}
	foreignCert, foreignKey, err := foreign.IssuePeer(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreignServer, _, err := pki.PeerTLSConfigs(foreignCert, foreignKey, foreign)
	if err != nil {
		t.Fatal(err)
	}
	// foreignClient trusts our CA but presents a certificate of another one.
	foreignClient := client.Clone()
	foreignClient.Certificates = []tls.Certificate{keyPair(t, foreignCert, foreignKey, nil)}
	servingCert, servingKey, err := ca.IssueServing(nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	apiServer, err := pki.ServerTLSConfig(servingCert, servingKey, ca)
	if err != nil {
		t.Fatal(err)
	}
	noCert := client.Clone()
	noCert.Certificates = nil
	clientOnly := client.Clone()
	clientOnly.Certificates = []tls.Certificate{pairOf(t)(ca.IssueClient("skiff-peer", nil, time.Hour))}

	tests := []struct {
		name           string
		server, client *tls.Config
		wantHandshake  bool
	}{
		{"peer to peer", server, client, true},
		{"client without certificate", server, noCert, false},
		{"client of a foreign CA", server, foreignClient, false},
		{"server of a foreign CA", foreignServer, client, false},
		// A certificate for client auth only cannot serve a peer listener,
		// and the API's serving certificate does not carry skiff-peer.
		{"client-only certificate as server", &tls.Config{Certificates: clientOnly.Certificates, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}, client, false},
		{"API serving certificate", apiServer, client, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, serverErr, clientErr := handshake(t, tt.server, tt.client)
			if got := serverErr == nil && clientErr == nil; got != tt.wantHandshake {
				t.Fatalf("handshake: got server error %v, client error %v, want success %v", serverErr, clientErr, tt.wantHandshake)
			}
			if !tt.wantHandshake {
				t.Logf("refused as wanted: server error %v, client error %v", serverErr, clientErr)
				return
			}
			// Each side verified the other's certificate against the CA.
			if user, _, ok := pki.Authenticate(&state); !ok || user != pki.PeerServerName {
				t.Errorf("Authenticate on the peer server: got %q %v, want %q true", user, ok, pki.PeerServerName)
			}
		})
	}
}

func TestAuthenticateWithoutVerifiedChain(t *testing.T) {
	ca := newCA(t)
	leaf := leafOf(t)
	cert := leaf(ca.IssueClient("alice", []string{"dev"}, time.Hour))
	noCN := leaf(ca.IssueServing(nil, nil, time.Hour))
	noCN.Subject.CommonName = ""
	tests := []struct {
		name  string
		state *tls.ConnectionState
	}{
		{"plain HTTP", nil},
		{"no certificate", &tls.ConnectionState{}},
		// Presented but unverified certificates never authenticate.
		{"unverified certificate", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}},
		{"empty common name", &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{noCN}}}},
	}
	for _, tt := range tests {
		if user, groups, ok := pki.Authenticate(tt.state); ok || user != "" || groups != nil {
			t.Errorf("Authenticate(%s): got %q %q %v, want \"\" nil false", tt.name, user, groups, ok)
		}
	}
}

// pairOf returns a function that parses an Issue method's results into a
// tls.Certificate, failing t on any error.
func pairOf(t *testing.T) func(certPEM, keyPEM []byte, err error) tls.Certificate {
	return func(certPEM, keyPEM []byte, err error) tls.Certificate {
		t.Helper()
		return keyPair(t, certPEM, keyPEM, err)
	}
}

// leafOf returns a function that parses the certificate of an Issue method's
// results, failing t on any error.
func leafOf(t *testing.T) func(certPEM, keyPEM []byte, err error) *x509.Certificate {
	return func(certPEM, _ []byte, err error) *x509.Certificate {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return parseLeaf(t, certPEM)
	}
}
