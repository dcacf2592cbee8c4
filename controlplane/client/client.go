// Package client sets up Skiff's own clients of the Kubernetes API (the
// controllers and the scheduler, the agent, the hollow nodes) the way
// Kubernetes' components set up theirs:
//
//	cfg := &rest.Config{Host: ..., TLSClientConfig: ...}
//	client.Protobuf(cfg)                       // as the kubelet and the scheduler talk
//	if err := client.KeepConns(cfg, 256); err != nil { ... }
//	cs, err := kubernetes.NewForConfig(cfg)
package client

import (
	"net"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
)

// Protobuf makes cfg send protobuf and accept protobuf or JSON, as
// kube-controller-manager, kube-scheduler, the kubelet and kube-proxy do:
// encoding and decoding cost a fraction of JSON's, on both sides.
func Protobuf(cfg *rest.Config) {
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
}

// KeepConns gives cfg a transport of its own that keeps up to perHost idle
// connections to each server. client-go's keeps 25: a client with more
// requests in flight than that (a scheduler binding, hollow nodes reporting
// status, a benchmark's writers) closes the extra connections as requests
// end and opens new ones for the next, each a TLS handshake on both sides.
// cfg's TLS settings move into the transport; cfg.Dial, when set, still
// dials.
func KeepConns(cfg *rest.Config, perHost int) error {
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return err
	}
	dial := cfg.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	cfg.Transport = &http.Transport{
		Proxy: http.ProxyFromEnvironment, TLSClientConfig: tlsCfg, TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConns: 2 * perHost, MaxIdleConnsPerHost: perHost, IdleConnTimeout: 90 * time.Second,
		DialContext: dial,
	}
	cfg.TLSClientConfig, cfg.Dial = rest.TLSClientConfig{}, nil
	return nil
}
