package master

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/skiff-sh/skiff/controlplane/client"
	"github.com/skiff-sh/skiff/controlplane/internal/apiserver"
	"github.com/skiff-sh/skiff/controlplane/internal/clusterdns"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/controlplane/internal/cronjob"
	"github.com/skiff-sh/skiff/controlplane/internal/daemonset"
	"github.com/skiff-sh/skiff/controlplane/internal/defaultsa"
	"github.com/skiff-sh/skiff/controlplane/internal/deployment"
	"github.com/skiff-sh/skiff/controlplane/internal/disruption"
	"github.com/skiff-sh/skiff/controlplane/internal/endpoints"
	"github.com/skiff-sh/skiff/controlplane/internal/endpointslice"
	"github.com/skiff-sh/skiff/controlplane/internal/gc"
	"github.com/skiff-sh/skiff/controlplane/internal/job"
	"github.com/skiff-sh/skiff/controlplane/internal/kubeservice"
	"github.com/skiff-sh/skiff/controlplane/internal/leadership"
	"github.com/skiff-sh/skiff/controlplane/internal/nodeipam"
	"github.com/skiff-sh/skiff/controlplane/internal/nodelifecycle"
	"github.com/skiff-sh/skiff/controlplane/internal/nsfinalizer"
	"github.com/skiff-sh/skiff/controlplane/internal/pki"
	"github.com/skiff-sh/skiff/controlplane/internal/podgc"
	"github.com/skiff-sh/skiff/controlplane/internal/replicaset"
	"github.com/skiff-sh/skiff/controlplane/internal/roleaggregation"
	"github.com/skiff-sh/skiff/controlplane/internal/rootca"
	"github.com/skiff-sh/skiff/controlplane/internal/satoken"
	"github.com/skiff-sh/skiff/controlplane/internal/satokens"
	"github.com/skiff-sh/skiff/controlplane/internal/scheduler"
	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"
	"github.com/skiff-sh/skiff/controlplane/internal/statefulset"
	"github.com/skiff-sh/skiff/controlplane/membership"
)

// apiClients are what the leader-only components reach this master's API
// with (as kube-controller-manager and kube-scheduler do, through the
// API, never the store).
type apiClients struct {
	// cs is shared by the controllers, rate-limited to spare the API.
	cs kubernetes.Interface
	// unlimited is the scheduler's: it binds thousands of pods a second.
	unlimited kubernetes.Interface
	md        metadata.Interface
	disc      discovery.DiscoveryInterface
}

// newAPIClients returns the clients of cfg, a configuration of this
// master's API in process (client.InProcess). The scheduler's also reach
// the other masters through remote, a transport to their listeners; self
// is this master's API host as gossip names it.
func newAPIClients(cfg *rest.Config, remote http.RoundTripper, self string, pool *membership.Pool) (c apiClients, err error) {
	if c.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		return c, err
	}
	fast := rest.CopyConfig(cfg)
	fast.QPS = -1
	// The scheduler's requests (binds, status, events) go round the live
	// masters, as through a load balancer: the leader's CPU goes to Raft
	// and watches, the followers' to the API work.
	fast.WrapTransport = func(local http.RoundTripper) http.RoundTripper {
		return &spread{local: local, remote: remote, self: self, masters: pool}
	}
	if c.unlimited, err = kubernetes.NewForConfig(fast); err != nil {
		return c, err
	}
	if c.md, err = metadata.NewForConfig(cfg); err != nil {
		return c, err
	}
	dcfg := rest.CopyConfig(cfg)
	dcfg.Timeout = 30 * time.Second // never for watches, so only for discovery's client
	c.disc, err = discovery.NewDiscoveryClientForConfig(dcfg)
	return c, err
}

// localAPI is this master's API in process: where the leader's components
// send their requests (handler, as ControllerUser) and where their
// informers list and watch (apiserver.Server's ListerWatcher and
// MetadataListerWatcher).
type localAPI struct {
	handler http.Handler
	// self is this master's API host (host:port) as the gossip pool names
	// it.
	self     string
	typed    sharedinformers.Local
	metadata func(gvr schema.GroupVersionResource) (*cache.ListWatch, bool)
}

// runner is a leader-only component.
type runner interface {
	Run(ctx context.Context) error
}

// controllers returns the runner of the leader-only components (the
// scheduler and the controllers, named as in kube-controller-manager), over
// this master's own API in process (local), while this master leads. The
// scheduler's requests also go to the other masters (addr is this master's
// listener, whose port they share) with a client certificate of
// ControllerUser. pool is the gossip pool the node lifecycle controller
// learns worker deaths from.
func (m *Master) controllers(addr *net.TCPAddr, ca *pki.CA, signer *satoken.Signer, pool *membership.Pool, local localAPI) (*leadership.Runner, error) {
	remote, err := loopbackConfig(addr, ca, ControllerUser, []string{AdminGroup})
	if err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(remote)
	client.InProcess(cfg, local.handler)
	c, err := newAPIClients(cfg, remote.Transport, local.self, pool)
	if err != nil {
		return nil, err
	}
	log := m.log
	// Every component but the garbage collector (metadata informers of
	// every resource) shares the term's informers; set once counted below.
	var shared *sharedinformers.Provider
	builds := []struct {
		name  string
		build func() (runner, error)
	}{
		{"scheduler", func() (runner, error) {
			cfg := scheduler.DefaultConfig()
			cfg.Client, cfg.Logger = c.unlimited, log
			cfg.Informers = shared
			return scheduler.New(cfg)
		}},
		{"garbage-collector", func() (runner, error) {
			cfg := gc.DefaultConfig()
			cfg.Metadata, cfg.Discovery, cfg.Logger = c.md, c.disc, log
			cfg.Local = local.metadata
			return gc.New(cfg)
		}},
		{"namespace-controller", func() (runner, error) {
			cfg := nsfinalizer.DefaultConfig()
			cfg.Client, cfg.Metadata, cfg.Discovery, cfg.Logger = c.cs, c.md, c.disc, log
			cfg.Informers = shared
			return nsfinalizer.New(cfg)
		}},
		{"serviceaccount-controller", func() (runner, error) {
			cfg := defaultsa.DefaultConfig()
			cfg.Client, cfg.Logger = c.cs, log
			cfg.Informers = shared
			return defaultsa.New(cfg)
		}},
		{"node-lifecycle-controller", func() (runner, error) {
			cfg := nodelifecycle.DefaultConfig()
			cfg.Client, cfg.Logger, cfg.GracePeriod, cfg.Gossip = c.cs, log, m.cfg.NodeMonitorGracePeriod, workers{pool}
			cfg.Informers = shared
			return nodelifecycle.New(cfg)
		}},
		{"node-ipam-controller", func() (runner, error) {
			cfg := nodeipam.DefaultConfig()
			cfg.Client, cfg.Logger, cfg.ClusterCIDR, cfg.NodeMaskSize = c.cs, log, m.cfg.ClusterCIDR, m.cfg.NodeCIDRMaskSize
			cfg.Informers = shared
			return nodeipam.New(cfg)
		}},
		{"replicaset-controller", func() (runner, error) {
			cfg := replicaset.DefaultConfig()
			cfg.Client, cfg.Logger = c.cs, log
			cfg.Informers = shared
			return replicaset.New(cfg)
		}},
		{"deployment-controller", func() (runner, error) {
			cfg := deployment.DefaultConfig()
			cfg.Client, cfg.Logger = c.cs, log
			cfg.Informers = shared
			return deployment.New(cfg)
		}},
		{"statefulset-controller", func() (runner, error) {
			cfg := statefulset.DefaultConfig()
			cfg.Client, cfg.Logger = c.cs, log
			cfg.Informers = shared
			return statefulset.New(cfg)
		}},
		{"daemonset-controller", func() (runner, error) {
			cfg := daemonset.DefaultConfig()
			cfg.Client, cfg.Logger = c.cs, log
			cfg.Informers = shared
			return daemonset.New(cfg)
		}},
		{"job-controller", func() (runner, error) {
			cfg := job.DefaultConfig()
			cfg.Client, cfg.Logger = c.cs, log
			cfg.Informers = shared
			return job.New(cfg)
		}},
		{"cronjob-controller", func() (runner, error) {
			cfg := cronjob.DefaultConfig()
			cfg.Client, cfg.Logger = c.cs, log
			cfg.Informers = shared
			return cronjob.New(cfg)
		}},
		{"disruption-controller", func() (runner, error) {
			cfg := disruption.DefaultConfig()
			cfg.Client, cfg.Logger = c.cs, log
			cfg.Informers = shared
			return disruption.New(cfg)
		}},
		{"endpoints-controller", func() (runner, error) {
			cfg := endpoints.DefaultConfig()
			cfg.Client, cfg.Logger = c.cs, log
			cfg.Informers = shared
			return endpoints.New(cfg)
		}},
		{"endpointslice-controller", func() (runner, error) {
			cfg := endpointslice.DefaultConfig()
			cfg.Client, cfg.Logger = c.cs, log
			cfg.Informers = shared
			return endpointslice.New(cfg)
		}},
		{"cluster-dns-service", func() (runner, error) {
			cfg := clusterdns.DefaultConfig()
			cfg.Client, cfg.Logger = c.cs, log
			return clusterdns.New(cfg)
		}},
		{"serviceaccount-token-controller", func() (runner, error) {
			cfg := satokens.DefaultConfig()
			cfg.Client, cfg.Logger, cfg.Signer, cfg.CACert = c.cs, log, signer, ca.CertPEM()
			cfg.Informers = shared
			return satokens.New(cfg)
		}},
		{"root-ca-cert-publisher", func() (runner, error) {
			cfg := rootca.DefaultConfig()
			cfg.Client, cfg.Logger, cfg.CACert = c.cs, log, ca.CertPEM()
			cfg.Informers = shared
			return rootca.New(cfg)
		}},
		{"clusterrole-aggregation-controller", func() (runner, error) {
			cfg := roleaggregation.DefaultConfig()
			cfg.Client, cfg.Logger = c.cs, log
			cfg.Informers = shared
			return roleaggregation.New(cfg)
		}},
		{"kubernetes-service", func() (runner, error) {
			cfg := kubeservice.DefaultConfig()
			cfg.Client, cfg.Logger, cfg.Masters = c.cs, log, pool.MasterAPIs
			cfg.IP = apiserver.KubernetesServiceIP(apiserver.DefaultServiceCIDR)
			if m.cfg.SingleNode {
				cfg.LocalNode = localNodeIP(pool)
			}
			return kubeservice.New(cfg)
		}},
		{"pod-garbage-collector", func() (runner, error) {
			cfg := podgc.DefaultConfig()
			cfg.Client, cfg.Logger = c.cs, log
			cfg.Informers = shared
			return podgc.New(cfg)
		}},
	}
	shared = sharedinformers.New(c.cs, len(builds)-3) // all but the garbage collector and the DNS and kubernetes service keepers
	shared.Local = local.typed
	lcfg := leadership.DefaultConfig()
	lcfg.Source, lcfg.Logger = m.cfg.Store, m.log
	for _, b := range builds {
		r, err := b.build()
		if err != nil {
			return nil, fmt.Errorf("master: %s: %w", b.name, err)
		}
		lcfg.Components = append(lcfg.Components, leadership.Component{Name: b.name, Run: r.Run})
	}
	return leadership.New(lcfg)
}

// localNodeIP returns the address of the one worker the gossip pool
// knows, for a single-node cluster's kubernetes service.
func localNodeIP(pool *membership.Pool) func() string {
	return func() string {
		var ips []string
		for _, m := range pool.Members() {
			if m.Alive && m.Meta.Worker && m.Meta.NodeIP != "" {
				ips = append(ips, m.Meta.NodeIP)
			}
		}
		if len(ips) != 1 {
			return ""
		}
		return ips[0]
	}
}

// workers is the gossip pool's view of the workers, for the node
// lifecycle controller: masters that run no agent are not nodes.
type workers struct{ pool *membership.Pool }

func (w workers) Alive(node string) (alive, known bool) {
	m, ok := w.pool.Member(node)
	if !ok || !m.Meta.Worker {
		return false, false
	}
	return m.Alive, true
}

func (w workers) Changed() <-chan struct{} { return w.pool.Changed() }

// spread sends each request to the next live master's API in turn (the
// masters' gossip metadata names their APIs), or where it was addressed
// when gossip knows none. Every master serves every request; they share
// the cluster CA and revisions, so any one answers the same. This
// master's share is served in process (local), the others' through
// remote.
type spread struct {
	local, remote http.RoundTripper
	self          string
	masters       *membership.Pool
	next          atomic.Uint32
}

func (s *spread) RoundTrip(req *http.Request) (*http.Response, error) {
	hosts := s.masters.MasterAPIs()
	if len(hosts) == 0 {
		return s.local.RoundTrip(req)
	}
	host := hosts[int(s.next.Add(1))%len(hosts)]
	if host == s.self {
		return s.local.RoundTrip(req)
	}
	req = req.Clone(req.Context())
	req.URL.Host, req.Host = host, ""
	return s.remote.RoundTrip(req)
}
