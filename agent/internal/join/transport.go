package join

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/controlplane/client"

	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/controlplane/membership"
)

// dialTimeout bounds connecting to one master's API: a master that is
// unreachable (not just down) costs this much before the next is tried.
const dialTimeout = 5 * time.Second

// failedFor is how long a master that could not be reached is tried after
// the others.
const failedFor = 10 * time.Second

// restConfig is the node's client configuration: its client certificate,
// the cluster CA, and a transport that spreads nothing but fails over
// between the live masters' APIs (the pool's) in an order that starts at a
// master chosen by the node's name, so that the workers spread over the
// masters.
func (c *credentials) restConfig(nodeName string, pool *membership.Pool, hosts []string, log *slog.Logger) (*rest.Config, *masterSet) {
	h := fnv.New32a()
	h.Write([]byte(nodeName))
	set := &masterSet{masters: pool.MasterAPIs, seed: int(h.Sum32() & 0x7fffffff), last: slices.Clone(hosts), failed: map[string]time.Time{}, log: log, now: time.Now}
	cfg := &rest.Config{
		Host:            "https://" + hosts[0],
		TLSClientConfig: rest.TLSClientConfig{CAData: c.caPEM, CertData: c.clientCert, KeyData: c.clientKey},
		UserAgent:       "skiff-agent/" + nodeName,
		QPS:             50,
		Burst:           100,
		Dial:            dialMaster,
	}
	client.Protobuf(cfg) // as the kubelet and kube-proxy talk
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &failover{base: rt, set: set} })
	return cfg, set
}

// dialError is a failure to connect to a master: the request was not sent,
// so another master may be asked.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// dialMaster connects to a master's API, marking failures as dialErrors.
func dialMaster(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, &dialError{err}
	}
	return conn, nil
}

// failover sends each request to a live master's API: the first in the
// set's order that can be connected to. Every master serves every request
// (they share the CA and the revisions), so any one answers the same. A
// request is sent again to another master only when it was not sent at all
// (the connection failed), never after a failure that may have reached the
// server.
type failover struct {
	base http.RoundTripper
	set  *masterSet
}

// masterSet is what the failover transports of one configuration share:
// the masters and which of them failed lately.
type masterSet struct {
	masters func() []string // the live masters' API hosts, sorted
	seed    int
	log     *slog.Logger
	now     func() time.Time

	mu     sync.Mutex
	last   []string             // the last non-empty answer of masters
	failed map[string]time.Time // hosts that could not be reached, and when
}

// order returns the hosts to try, in order: starting at the seed's, those
// that failed recently last.
func (f *masterSet) order() []string {
	hosts := f.masters()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(hosts) == 0 {
		// Gossip knows no live master (the pool is catching up, or every
		// master is down): try the ones it knew.
		hosts = f.last
	} else if !slices.Equal(hosts, f.last) {
		f.last = slices.Clone(hosts)
	}
	if len(hosts) == 0 {
		return nil
	}
	out := make([]string, 0, len(hosts))
	var later []string
	now := f.now()
	for i := range hosts {
		h := hosts[(f.seed+i)%len(hosts)]
		if t, ok := f.failed[h]; ok && now.Sub(t) < failedFor {
			later = append(later, h)
			continue
		}
		delete(f.failed, h)
		out = append(out, h)
	}
	return append(out, later...)
}

func (f *masterSet) markFailed(host string) {
	f.mu.Lock()
	f.failed[host] = f.now()
	f.mu.Unlock()
}

func (f *failover) RoundTrip(req *http.Request) (*http.Response, error) {
	hosts := f.set.order()
	if len(hosts) == 0 {
		return f.base.RoundTrip(req)
	}
	var errs []error
	for i, host := range hosts {
		r := req.Clone(req.Context())
		r.URL.Host, r.Host = host, ""
		if i > 0 && req.Body != nil && req.Body != http.NoBody {
			// The transport closed the first body; a request that cannot
			// make another is not retried.
			if req.GetBody == nil {
				break
			}
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r.Body = body
		}
		resp, err := f.base.RoundTrip(r)
		var de *dialError
		if err == nil || !errors.As(err, &de) || req.Context().Err() != nil {
			return resp, err
		}
		f.set.markFailed(host)
		f.set.log.Debug("API server unreachable, trying the next master", "api", host, "err", err)
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}
