package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/skiff-sh/skiff/raftstore"
)

// peerClientFlags are the flags of the admin verbs that reach a running
// cluster's store through masters' peer addresses (the Raft and RPC
// listener), as raftstore.Client does.
type peerClientFlags struct {
	peers                     string
	cert, key, ca, serverName string
}

func (f *peerClientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.peers, "peer", "127.0.0.1:6444", "comma-separated peer addresses of masters to ask (their --peer-addr)")
	fs.StringVar(&f.cert, "peer-cert-file", "", "client certificate, when the masters' peer listeners use mutual TLS (with --peer-key-file and --peer-ca-file)")
	fs.StringVar(&f.key, "peer-key-file", "", "key of --peer-cert-file")
	fs.StringVar(&f.ca, "peer-ca-file", "", "CA that signs the masters' peer certificates")
	fs.StringVar(&f.serverName, "peer-server-name", "skiff-peer", "name every peer certificate carries (a DNS SAN)")
}

// client returns a client of the store at the peer addresses.
func (f *peerClientFlags) client() (*raftstore.Client, error) {
	var endpoints []string
	for _, a := range strings.Split(f.peers, ",") {
		if a = strings.TrimSpace(a); a != "" {
			endpoints = append(endpoints, a)
		}
	}
	_, clientTLS, err := loadPeerTLS(f.cert, f.key, f.ca, f.serverName)
	if err != nil {
		return nil, err
	}
	return raftstore.NewClient(raftstore.ClientConfig{Endpoints: endpoints, TLS: clientTLS})
}

// loadPeerTLS loads both ends of peer mutual TLS from PEM files, or returns
// nil, nil when none is given.
func loadPeerTLS(certFile, keyFile, caFile, serverName string) (server, client *tls.Config, err error) {
	if certFile == "" && keyFile == "" && caFile == "" {
		return nil, nil, nil
	}
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, nil, errors.New("--peer-cert-file, --peer-key-file and --peer-ca-file go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("peer certificate: %w", err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("peer CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("peer CA %s: no PEM certificate found", caFile)
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
	return server, client, nil
}
