package raftstore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// testCA issues certificates for the TLS tests.
type testCA struct {
	t    *testing.T
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{t: t, cert: cert, key: key, pool: pool}
}

// issue returns a certificate for name, valid for both server and client auth.
func (ca *testCA) issue(name string) tls.Certificate {
	ca.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ca.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// mutualTLS returns the server and client configs of a peer with cert.
func (ca *testCA) mutualTLS(cert tls.Certificate) (server, client *tls.Config) {
	server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool, ServerName: "skiff-peer", MinVersion: tls.VersionTLS13}
	return server, client
}

// TestMutualTLS runs a cluster whose peer traffic (Raft and RPC) is mutual
// TLS, and checks that clients without a certificate of the cluster's CA are
// turned away.
func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t, "skiff-test-ca")
	peerCert := ca.issue("skiff-peer")
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.ServerTLS, cfg.ClientTLS = ca.mutualTLS(peerCert)
	})
	ctx := ctxT(t, 20*time.Second)

	_, clientTLS := ca.mutualTLS(ca.issue("skiff-peer"))
	good, err := NewClient(ClientConfig{Endpoints: c.ids(), Network: c.net.Node("good"), TLS: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	for i := range c.ids() {
		if _, err := good.Endpoint(i).Create(ctx, "/tls/"+c.ids()[i], []byte("x")); err != nil {
			t.Fatalf("Create through endpoint %d over TLS: %v", i, err)
		}
	}

	other := newTestCA(t, "some-other-ca")
	_, strangerTLS := other.mutualTLS(other.issue("skiff-peer"))
	strangerTLS.RootCAs = ca.pool // trusts the cluster, but is not trusted by it
	for name, tlsCfg := range map[string]*tls.Config{"no TLS": nil, "foreign client certificate": strangerTLS} {
		bad, err := NewClient(ClientConfig{Endpoints: c.ids()[:1], Network: c.net.Node("bad"), TLS: tlsCfg, RequestTimeout: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		_, err = bad.Create(ctx, "/tls/stranger", []byte("x"))
		bad.Close()
		if err == nil {
			t.Fatalf("%s: Create succeeded, want it refused", name)
		}
	}
	kv, _, err := good.Get(ctx, "/tls/stranger", ReadOptions{})
	if err != nil || kv != nil {
		t.Fatalf("Get of a refused write = %v, %v; want absent", kv, err)
	}
}
