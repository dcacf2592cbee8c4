package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// cluster is a fake informer cache: services plus slices by service.
type cluster struct {
	mu       sync.RWMutex
	services []*corev1.Service
	slices   map[string][]*discoveryv1.EndpointSlice // "ns/name"
}

func (c *cluster) Services() []*corev1.Service {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.services
}

func (c *cluster) Slices(ns, name string) []*discoveryv1.EndpointSlice {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.slices[ns+"/"+name]
}

func (c *cluster) add(svc *corev1.Service, slices ...*discoveryv1.EndpointSlice) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.services = append(slices0(c.services), svc)
	if c.slices == nil {
		c.slices = map[string][]*discoveryv1.EndpointSlice{}
	}
	c.slices[svc.Namespace+"/"+svc.Name] = slices
}

// slices0 copies s so a reader's earlier result is never mutated.
func slices0(s []*corev1.Service) []*corev1.Service { return append([]*corev1.Service(nil), s...) }

func clusterIPService(ns, name string, ips []string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: ips[0], ClusterIPs: ips, Ports: ports},
	}
}

func headlessService(ns, name string, ports ...corev1.ServicePort) *corev1.Service {
	svc := clusterIPService(ns, name, []string{corev1.ClusterIPNone}, ports...)
	svc.Spec.ClusterIPs = nil
	return svc
}

func externalNameService(ns, name, target string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: target},
	}
}

type ep struct {
	ip       string
	hostname string
	ready    *bool
}

func slice(ns, svc string, ports []discoveryv1.EndpointPort, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
	}
	for _, e := range eps {
		end := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}}
		if e.hostname != "" {
			end.Hostname = ptr.To(e.hostname)
		}
		s.Endpoints = append(s.Endpoints, end)
	}
	return s
}

func slicePort(name string, proto corev1.Protocol, port int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Protocol: ptr.To(proto), Port: ptr.To(port)}
}

// bigEndpoints is the size of the headless service "big".
const bigEndpoints = 300

// testCluster holds one of each kind of service.
func testCluster() *cluster {
	c := &cluster{}
	c.add(clusterIPService("default", "web", []string{"10.96.0.20"},
		corev1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80},
		corev1.ServicePort{Name: "dns-udp", Protocol: corev1.ProtocolUDP, Port: 53}),
		slice("default", "web", []discoveryv1.EndpointPort{slicePort("http", corev1.ProtocolTCP, 8080)},
			ep{ip: "10.244.1.5"}, ep{ip: "10.244.2.6", ready: ptr.To(false)}))
	c.add(clusterIPService("default", "web6", []string{"10.96.0.21", "fd00::21"},
		corev1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}))
	c.add(headlessService("default", "db", corev1.ServicePort{Name: "pg", Port: 5432}),
		slice("default", "db", []discoveryv1.EndpointPort{slicePort("pg", corev1.ProtocolTCP, 5432)},
			ep{ip: "10.244.1.10", hostname: "db-0", ready: ptr.To(true)},
			ep{ip: "10.244.2.11"}, // nil ready counts as ready
			ep{ip: "10.244.1.12", hostname: "db-2", ready: ptr.To(false)}))
	pub := headlessService("default", "pubnr")
	pub.Spec.PublishNotReadyAddresses = true
	c.add(pub, slice("default", "pubnr", nil, ep{ip: "10.244.1.20", ready: ptr.To(false)}))
	c.add(headlessService("default", "empty", corev1.ServicePort{Name: "x", Port: 1}),
		slice("default", "empty", nil, ep{ip: "10.244.1.30", ready: ptr.To(false)}))
	c.add(externalNameService("default", "ext", "example.org"))
	c.add(externalNameService("default", "extin", "WEB.default.svc.cluster.local."))
	c.add(externalNameService("default", "loop", "loop.default.svc.cluster.local"))
	var big []ep
	for i := range bigEndpoints {
		big = append(big, ep{ip: fmt.Sprintf("10.244.%d.%d", 10+i/200, 1+i%200)})
	}
	c.add(headlessService("default", "big"), slice("default", "big", nil, big...))
	c.add(clusterIPService("kube-system", "kube-dns", []string{"10.96.0.10"},
		corev1.ServicePort{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53}))
	return c
}

// upstream is a fake resolver on 127.0.0.1 (UDP and TCP on one port).
type upstream struct {
	addr     string
	udp, tcp atomic.Int64 // queries seen
	names    sync.Map     // names asked
}

// bigUpstream is how many A records the upstream returns for big.example.org.
const bigUpstream = 100

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		udp := true
		if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
			udp = false
			u.tcp.Add(1)
		} else {
			u.udp.Add(1)
		}
		q := r.Question[0]
		u.names.Store(strings.ToLower(q.Name), true)
		m := new(dns.Msg)
		m.SetReply(r)
		a := func(name, ip string) dns.RR {
			rr, err := dns.NewRR(name + " 60 IN A " + ip)
			if err != nil {
				panic(err)
			}
			return rr
		}
		switch strings.ToLower(q.Name) {
		case "example.org.":
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, a(q.Name, "93.184.216.34"))
			}
		case "big.example.org.":
			for i := range bigUpstream {
				m.Answer = append(m.Answer, a(q.Name, fmt.Sprintf("192.0.2.%d", i+1)))
			}
		case "refused.example.org.":
			m.Rcode = dns.RcodeRefused
		default:
			m.Rcode = dns.RcodeNameError
		}
		if udp {
			size := dns.MinMsgSize
			if o := r.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size)
		}
		_ = w.WriteMsg(m)
	})
	pc, ln := listenPair(t)
	u.addr = ln.Addr().String()
	serveOn(t, pc, ln, h)
	return u
}

// listenPair binds UDP and TCP on one free 127.0.0.1 port.
func listenPair(t *testing.T) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err == nil {
			return pc, ln
		}
		ln.Close()
	}
	t.Fatal("no free port for UDP and TCP")
	return nil, nil
}

// serveOn serves h on pc and ln until the test ends.
func serveOn(t *testing.T, pc net.PacketConn, ln net.Listener, h dns.Handler) {
	t.Helper()
	var started, done sync.WaitGroup
	servers := []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}}
	for _, srv := range servers {
		started.Add(1)
		srv.NotifyStartedFunc = started.Done
		done.Go(func() { _ = srv.ActivateAndServe() })
	}
	started.Wait()
	t.Cleanup(func() {
		for _, srv := range servers {
			_ = srv.Shutdown()
		}
		done.Wait()
	})
}

// startServer runs a Server for c with upstreams until the test ends and
// returns its address.
func startServer(t testing.TB, c *cluster, mod func(*Config)) string {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Services, cfg.Slices = c.Services, c.Slices
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.Logger = nil
	cfg.ForwardTimeout = time.Second
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return 10 s after its context ended")
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("server not ready after 5 s")
	}
	addrs := s.Addrs()
	if len(addrs) != 1 {
		t.Fatalf("Addrs() = %v, want one address", addrs)
	}
	return addrs[0]
}

type queryOpts struct {
	proto   string // "udp" (default) or "tcp"
	bufsize uint16 // EDNS0 buffer size; 0: no EDNS0
}

func query(t testing.TB, addr, name string, qtype uint16, o queryOpts) *dns.Msg {
	t.Helper()
	proto := o.proto
	if proto == "" {
		proto = "udp"
	}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if o.bufsize > 0 {
		m.SetEdns0(o.bufsize, false)
	}
	c := dns.Client{Net: proto, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], proto, err)
	}
	return resp
}

// rrs renders records as "owner ttl class type data" with single spaces,
// sorted, leaving out OPT.
func rrs(in []dns.RR) []string {
	var out []string
	for _, rr := range in {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, strings.Join(strings.Fields(rr.String()), " "))
	}
	slices.Sort(out)
	return out
}

func TestRecords(t *testing.T) {
	up := startUpstream(t)
	addr := startServer(t, testCluster(), func(c *Config) { c.Upstreams = []string{up.addr} })

	const (
		nx     = dns.RcodeNameError
		ok     = dns.RcodeSuccess
		z      = "cluster.local."
		svcDom = ".default.svc." + z
	)
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		answer []string
		extra  []string
	}{
		{"service A", "web" + svcDom, dns.TypeA, ok, []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.20"}, nil},
		{"service AAAA on IPv4 only: NODATA", "web" + svcDom, dns.TypeAAAA, ok, nil, nil},
		{"service TXT: NODATA", "web" + svcDom, dns.TypeTXT, ok, nil, nil},
		{"case-insensitive, answer keeps the case", "WeB.DEFAULT.svc.Cluster.Local.", dns.TypeA, ok, []string{"WeB.DEFAULT.svc.Cluster.Local. 5 IN A 10.96.0.20"}, nil},
		{"dual-stack A", "web6" + svcDom, dns.TypeA, ok, []string{"web6.default.svc.cluster.local. 5 IN A 10.96.0.21"}, nil},
		{"dual-stack AAAA", "web6" + svcDom, dns.TypeAAAA, ok, []string{"web6.default.svc.cluster.local. 5 IN AAAA fd00::21"}, nil},
		{"other namespace", "kube-dns.kube-system.svc." + z, dns.TypeA, ok, []string{"kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.10"}, nil},
		{"SRV named port", "_http._tcp.web" + svcDom, dns.TypeSRV, ok,
			[]string{"_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local."},
			[]string{"web.default.svc.cluster.local. 5 IN A 10.96.0.20"}},
		{"SRV UDP port, any case", "_DNS-UDP._Udp.web" + svcDom, dns.TypeSRV, ok,
			[]string{"_DNS-UDP._Udp.web.default.svc.cluster.local. 5 IN SRV 0 100 53 web.default.svc.cluster.local."},
			[]string{"web.default.svc.cluster.local. 5 IN A 10.96.0.20"}},
		{"SRV wrong protocol", "_http._udp.web" + svcDom, dns.TypeSRV, nx, nil, nil},
		{"SRV unknown port", "_nope._tcp.web" + svcDom, dns.TypeSRV, nx, nil, nil},
		{"SRV on the service name: every port", "web" + svcDom, dns.TypeSRV, ok,
			[]string{
				"web.default.svc.cluster.local. 5 IN SRV 0 50 53 web.default.svc.cluster.local.",
				"web.default.svc.cluster.local. 5 IN SRV 0 50 80 web.default.svc.cluster.local.",
			},
			[]string{"web.default.svc.cluster.local. 5 IN A 10.96.0.20"}},
		{"A on a port name", "_http._tcp.web" + svcDom, dns.TypeA, ok, []string{"_http._tcp.web.default.svc.cluster.local. 5 IN A 10.96.0.20"}, nil},
		{"headless: ready endpoints only", "db" + svcDom, dns.TypeA, ok, []string{
			"db.default.svc.cluster.local. 5 IN A 10.244.1.10",
			"db.default.svc.cluster.local. 5 IN A 10.244.2.11",
		}, nil},
		{"headless SRV: endpoint targets", "_pg._tcp.db" + svcDom, dns.TypeSRV, ok,
			[]string{
				"_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5432 10-244-2-11.db.default.svc.cluster.local.",
				"_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5432 db-0.db.default.svc.cluster.local.",
			},
			[]string{
				"10-244-2-11.db.default.svc.cluster.local. 5 IN A 10.244.2.11",
				"db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.10",
			}},
		{"endpoint hostname", "db-0.db" + svcDom, dns.TypeA, ok, []string{"db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.10"}, nil},
		{"endpoint dashed IP", "10-244-2-11.db" + svcDom, dns.TypeA, ok, []string{"10-244-2-11.db.default.svc.cluster.local. 5 IN A 10.244.2.11"}, nil},
		{"not-ready endpoint has no name", "db-2.db" + svcDom, dns.TypeA, nx, nil, nil},
		{"endpoint hostname, AAAA: NODATA", "db-0.db" + svcDom, dns.TypeAAAA, ok, nil, nil},
		{"endpoint under a ClusterIP service (as CoreDNS)", "10-244-1-5.web" + svcDom, dns.TypeA, ok, []string{"10-244-1-5.web.default.svc.cluster.local. 5 IN A 10.244.1.5"}, nil},
		{"publishNotReadyAddresses", "pubnr" + svcDom, dns.TypeA, ok, []string{"pubnr.default.svc.cluster.local. 5 IN A 10.244.1.20"}, nil},
		{"headless without ready endpoints", "empty" + svcDom, dns.TypeA, nx, nil, nil},
		{"ExternalName: CNAME followed upstream", "ext" + svcDom, dns.TypeA, ok, []string{
			"example.org. 60 IN A 93.184.216.34",
			"ext.default.svc.cluster.local. 5 IN CNAME example.org.",
		}, nil},
		{"ExternalName CNAME query", "ext" + svcDom, dns.TypeCNAME, ok, []string{"ext.default.svc.cluster.local. 5 IN CNAME example.org."}, nil},
		{"ExternalName into the cluster domain", "extin" + svcDom, dns.TypeA, ok, []string{
			"WEB.default.svc.cluster.local. 5 IN A 10.96.0.20",
			"extin.default.svc.cluster.local. 5 IN CNAME WEB.default.svc.cluster.local.",
		}, nil},
		{"ExternalName loop is bounded", "loop" + svcDom, dns.TypeA, ok, slices.Repeat([]string{"loop.default.svc.cluster.local. 5 IN CNAME loop.default.svc.cluster.local."}, maxCNAMEChain+1), nil},
		{"ExternalName port name", "_http._tcp.ext" + svcDom, dns.TypeSRV, nx, nil, nil},
		{"pod A", "10-244-1-7.default.pod." + z, dns.TypeA, ok, []string{"10-244-1-7.default.pod.cluster.local. 5 IN A 10.244.1.7"}, nil},
		{"pod in any namespace", "1-2-3-4.nowhere.pod." + z, dns.TypeA, ok, []string{"1-2-3-4.nowhere.pod.cluster.local. 5 IN A 1.2.3.4"}, nil},
		{"pod IPv6", "fd00--1.default.pod." + z, dns.TypeAAAA, ok, []string{"fd00--1.default.pod.cluster.local. 5 IN AAAA fd00::1"}, nil},
		{"pod A for IPv6: NODATA", "fd00--1.default.pod." + z, dns.TypeA, ok, nil, nil},
		{"pod malformed", "1-2-3.default.pod." + z, dns.TypeA, nx, nil, nil},
		{"pod out of range", "1-2-3-400.default.pod." + z, dns.TypeA, nx, nil, nil},
		{"pod too deep", "x.1-2-3-4.default.pod." + z, dns.TypeA, nx, nil, nil},
		{"unknown service", "nope" + svcDom, dns.TypeA, nx, nil, nil},
		{"unknown namespace", "web.nope.svc." + z, dns.TypeA, nx, nil, nil},
		{"search-path expansion", "web.default.svc.cluster.local.default.svc." + z, dns.TypeA, nx, nil, nil},
		{"external name via search path", "example.org.default.svc." + z, dns.TypeA, nx, nil, nil},
		{"namespace: empty non-terminal", "default.svc." + z, dns.TypeA, ok, nil, nil},
		{"namespace without services", "nope.svc." + z, dns.TypeA, nx, nil, nil},
		{"svc: empty non-terminal", "svc." + z, dns.TypeA, ok, nil, nil},
		{"other subdomain", "foo." + z, dns.TypeA, nx, nil, nil},
		{"apex A: NODATA", z, dns.TypeA, ok, nil, nil},
		{"apex NS", z, dns.TypeNS, ok, []string{"cluster.local. 5 IN NS ns.dns.cluster.local."}, nil},
		{"dns-version", "dns-version." + z, dns.TypeTXT, ok, []string{`dns-version.cluster.local. 5 IN TXT "1.1.0"`}, nil},
	}
	for _, proto := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			t.Run(proto+"/"+tc.name, func(t *testing.T) {
				resp := query(t, addr, tc.qname, tc.qtype, queryOpts{proto: proto})
				if resp.Rcode != tc.rcode {
					t.Fatalf("rcode = %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
				}
				if !resp.Authoritative {
					t.Errorf("AA not set")
				}
				if got := rrs(resp.Answer); !slices.Equal(got, tc.answer) {
					t.Errorf("answer:\n got %q\nwant %q", got, tc.answer)
				}
				if got := rrs(resp.Extra); !slices.Equal(got, tc.extra) {
					t.Errorf("extra:\n got %q\nwant %q", got, tc.extra)
				}
				// NXDOMAIN and NODATA carry the SOA.
				if len(resp.Answer) == 0 || resp.Rcode == nx {
					if len(resp.Ns) != 1 || resp.Ns[0].Header().Rrtype != dns.TypeSOA {
						t.Fatalf("authority = %v, want the SOA", resp.Ns)
					}
					soa := resp.Ns[0].(*dns.SOA)
					if soa.Hdr.Name != z || soa.Ns != "ns.dns."+z || soa.Mbox != "hostmaster."+z || soa.Minttl != 5 || soa.Hdr.Ttl != 5 {
						t.Errorf("SOA = %v", soa)
					}
				} else if len(resp.Ns) != 0 {
					t.Errorf("authority = %v, want none", resp.Ns)
				}
			})
		}
	}
	// Names in the cluster domain are never forwarded (the ExternalName
	// target example.org is: it is outside).
	up.names.Range(func(k, _ any) bool {
		if strings.HasSuffix(k.(string), z) {
			t.Errorf("upstream asked for %s", k)
		}
		return true
	})
	if _, ok := up.names.Load("example.org."); !ok {
		t.Errorf("the ExternalName target was not resolved upstream")
	}
}

func TestApexSOA(t *testing.T) {
	addr := startServer(t, testCluster(), nil)
	resp := query(t, addr, "Cluster.Local.", dns.TypeSOA, queryOpts{})
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Fatalf("got %v, want one SOA", resp)
	}
	soa, ok := resp.Answer[0].(*dns.SOA)
	if !ok || soa.Hdr.Name != "Cluster.Local." || soa.Refresh != 7200 || soa.Retry != 1800 || soa.Expire != 86400 || soa.Minttl != 5 || soa.Serial == 0 {
		t.Errorf("SOA = %v", resp.Answer[0])
	}
}

func TestTTLFromConfig(t *testing.T) {
	addr := startServer(t, testCluster(), func(c *Config) { c.TTL = 30 })
	resp := query(t, addr, "web.default.svc.cluster.local.", dns.TypeA, queryOpts{})
	if len(resp.Answer) != 1 || resp.Answer[0].Header().Ttl != 30 {
		t.Fatalf("answer = %v, want one record with TTL 30", resp.Answer)
	}
}

// TestCustomDomain checks a domain other than cluster.local: its names are
// served, cluster.local is forwarded like any other name.
func TestCustomDomain(t *testing.T) {
	up := startUpstream(t)
	addr := startServer(t, testCluster(), func(c *Config) { c.Domain = "Skiff.Internal."; c.Upstreams = []string{up.addr} })
	resp := query(t, addr, "web.default.svc.skiff.internal.", dns.TypeA, queryOpts{})
	if got, want := rrs(resp.Answer), []string{"web.default.svc.skiff.internal. 5 IN A 10.96.0.20"}; !slices.Equal(got, want) {
		t.Errorf("answer = %q, want %q", got, want)
	}
	resp = query(t, addr, "web.default.svc.cluster.local.", dns.TypeA, queryOpts{})
	if resp.Rcode != dns.RcodeNameError || resp.Authoritative {
		t.Errorf("cluster.local under another domain: rcode %s AA %v, want the upstream's NXDOMAIN", dns.RcodeToString[resp.Rcode], resp.Authoritative)
	}
	if _, ok := up.names.Load("web.default.svc.cluster.local."); !ok {
		t.Errorf("cluster.local was not forwarded")
	}
}

func TestIndexedServiceLookup(t *testing.T) {
	c := testCluster()
	var calls atomic.Int64
	addr := startServer(t, c, func(cfg *Config) {
		cfg.Services = func() []*corev1.Service { t.Error("Services scanned for a service lookup"); return nil }
		cfg.Service = func(ns, name string) *corev1.Service {
			calls.Add(1)
			for _, s := range c.Services() {
				if s.Namespace == ns && s.Name == name {
					return s
				}
			}
			return nil
		}
	})
	resp := query(t, addr, "web.default.svc.cluster.local.", dns.TypeA, queryOpts{})
	if got, want := rrs(resp.Answer), []string{"web.default.svc.cluster.local. 5 IN A 10.96.0.20"}; !slices.Equal(got, want) {
		t.Errorf("answer = %q, want %q", got, want)
	}
	if calls.Load() != 1 {
		t.Errorf("Service called %d times, want 1", calls.Load())
	}
}

func TestForward(t *testing.T) {
	up := startUpstream(t)
	addr := startServer(t, testCluster(), func(c *Config) { c.Upstreams = []string{up.addr} })
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			udp0, tcp0 := up.udp.Load(), up.tcp.Load()
			resp := query(t, addr, "Example.Org.", dns.TypeA, queryOpts{proto: proto})
			if got, want := rrs(resp.Answer), []string{"Example.Org. 60 IN A 93.184.216.34"}; !slices.Equal(got, want) || resp.Rcode != dns.RcodeSuccess {
				t.Fatalf("answer = %q rcode %s, want %q", got, dns.RcodeToString[resp.Rcode], want)
			}
			if resp.Authoritative {
				t.Errorf("a forwarded answer is marked authoritative")
			}
			// The client's protocol is used upstream.
			du, dt := up.udp.Load()-udp0, up.tcp.Load()-tcp0
			if (proto == "udp" && (du != 1 || dt != 0)) || (proto == "tcp" && (du != 0 || dt != 1)) {
				t.Errorf("upstream saw %d UDP and %d TCP queries for one %s query", du, dt, proto)
			}
			resp = query(t, addr, "missing.example.org.", dns.TypeA, queryOpts{proto: proto})
			if resp.Rcode != dns.RcodeNameError {
				t.Errorf("missing name: rcode %s, want NXDOMAIN from upstream", dns.RcodeToString[resp.Rcode])
			}
		})
	}
}

// TestForwardTruncated: a truncated UDP answer from upstream is fetched
// again over TCP; the client gets what fits its buffer (TC set) over UDP and
// everything over TCP.
func TestForwardTruncated(t *testing.T) {
	up := startUpstream(t)
	addr := startServer(t, testCluster(), func(c *Config) { c.Upstreams = []string{up.addr} })

	tcp0 := up.tcp.Load()
	resp := query(t, addr, "big.example.org.", dns.TypeA, queryOpts{})
	if !resp.Truncated || len(resp.Answer) == 0 || len(resp.Answer) >= bigUpstream {
		t.Errorf("UDP without EDNS0: TC %v with %d answers, want TC with part of %d", resp.Truncated, len(resp.Answer), bigUpstream)
	}
	if up.tcp.Load() == tcp0 {
		t.Errorf("the truncated upstream answer was not retried over TCP")
	}
	resp = query(t, addr, "big.example.org.", dns.TypeA, queryOpts{bufsize: 4096})
	if resp.Truncated || len(resp.Answer) != bigUpstream {
		t.Errorf("UDP with a 4096-byte buffer: TC %v with %d answers, want %d", resp.Truncated, len(resp.Answer), bigUpstream)
	}
	resp = query(t, addr, "big.example.org.", dns.TypeA, queryOpts{proto: "tcp"})
	if resp.Truncated || len(resp.Answer) != bigUpstream {
		t.Errorf("TCP: TC %v with %d answers, want %d", resp.Truncated, len(resp.Answer), bigUpstream)
	}
}

func TestForwardFailover(t *testing.T) {
	up := startUpstream(t)
	dead := deadAddr(t)
	blackhole := blackholeAddr(t)
	tests := []struct {
		name      string
		upstreams []string
		qname     string
		rcode     int
	}{
		{"dead then good", []string{dead, up.addr}, "example.org.", dns.RcodeSuccess},
		{"silent then good", []string{blackhole, up.addr}, "example.org.", dns.RcodeSuccess},
		{"all dead: SERVFAIL", []string{dead, blackhole}, "example.org.", dns.RcodeServerFailure},
		{"no upstreams: SERVFAIL", nil, "example.org.", dns.RcodeServerFailure},
		{"refused by every upstream: the last answer", []string{up.addr, up.addr}, "refused.example.org.", dns.RcodeRefused},
	}
	const timeout = 200 * time.Millisecond
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := startServer(t, testCluster(), func(c *Config) { c.Upstreams = tc.upstreams; c.ForwardTimeout = timeout })
			for _, proto := range []string{"udp", "tcp"} {
				start := time.Now()
				resp := query(t, addr, tc.qname, dns.TypeA, queryOpts{proto: proto})
				elapsed := time.Since(start)
				if resp.Rcode != tc.rcode {
					t.Errorf("%s: rcode %s, want %s", proto, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
				}
				// Bounded: each upstream costs at most one timeout (plus a
				// TCP retry that a dead upstream never reaches).
				if limit := time.Duration(len(tc.upstreams)+1) * timeout * 2; elapsed > limit {
					t.Errorf("%s: answered after %v, want at most %v", proto, elapsed, limit)
				}
			}
		})
	}
}

// deadAddr is a 127.0.0.1 port with nothing behind it (UDP: ICMP port
// unreachable; TCP: connection refused).
func deadAddr(t *testing.T) string {
	t.Helper()
	pc, ln := listenPair(t)
	addr := ln.Addr().String()
	pc.Close()
	ln.Close()
	return addr
}

// blackholeAddr is a 127.0.0.1 port that accepts and never answers.
func blackholeAddr(t *testing.T) string {
	t.Helper()
	pc, ln := listenPair(t)
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		pc.Close()
		ln.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// TestLargeAnswer: a headless service with many endpoints is truncated to
// the client's buffer over UDP (512 without EDNS0, the EDNS0 size with it)
// and complete over TCP.
func TestLargeAnswer(t *testing.T) {
	addr := startServer(t, testCluster(), nil)
	const name = "big.default.svc.cluster.local."
	tests := []struct {
		name     string
		opts     queryOpts
		complete bool
		maxSize  int
	}{
		{"udp", queryOpts{}, false, 512},
		{"udp edns 1232", queryOpts{bufsize: 1232}, false, 1232},
		{"udp edns 65000", queryOpts{bufsize: 65000}, true, 65000},
		{"tcp", queryOpts{proto: "tcp"}, true, 65535},
	}
	prev := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := query(t, addr, name, dns.TypeA, tc.opts)
			if tc.complete {
				if resp.Truncated || len(resp.Answer) != bigEndpoints {
					t.Fatalf("TC %v, %d answers; want %d and no TC", resp.Truncated, len(resp.Answer), bigEndpoints)
				}
			} else if !resp.Truncated || len(resp.Answer) == 0 || len(resp.Answer) >= bigEndpoints {
				t.Fatalf("TC %v, %d answers; want TC and part of %d", resp.Truncated, len(resp.Answer), bigEndpoints)
			}
			resp.Compress = true
			if n := resp.Len(); n > tc.maxSize {
				t.Errorf("answer of %d bytes, want at most %d", n, tc.maxSize)
			}
			if !tc.complete {
				if len(resp.Answer) <= prev {
					t.Errorf("%d answers, want more than the smaller buffer's %d", len(resp.Answer), prev)
				}
				prev = len(resp.Answer)
			}
			if (tc.opts.bufsize > 0) != (resp.IsEdns0() != nil) {
				t.Errorf("OPT in answer %v, want it exactly when the query had one", resp.IsEdns0() != nil)
			}
		})
	}
}

// TestConcurrentQueriesDuringUpdates runs queries from many goroutines
// while services come and go (the race detector watches).
func TestConcurrentQueriesDuringUpdates(t *testing.T) {
	c := testCluster()
	addr := startServer(t, c, nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var writer sync.WaitGroup
	writer.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			c.add(clusterIPService("churn", fmt.Sprintf("s%d", i), []string{fmt.Sprintf("10.97.%d.%d", i/250%250, i%250+1)}))
		}
	})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			cl := dns.Client{Net: []string{"udp", "tcp"}[g%2], Timeout: 5 * time.Second}
			for range 50 {
				m := new(dns.Msg)
				m.SetQuestion("web.default.svc.cluster.local.", dns.TypeA)
				resp, _, err := cl.Exchange(m, addr)
				if err == nil && (len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "10.96.0.20") {
					err = fmt.Errorf("answer %v", resp.Answer)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	cancel()
	writer.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	resp := query(t, addr, "s0.churn.svc.cluster.local.", dns.TypeA, queryOpts{})
	if got, want := rrs(resp.Answer), []string{"s0.churn.svc.cluster.local. 5 IN A 10.97.0.1"}; !slices.Equal(got, want) {
		t.Errorf("a service added while serving: %q, want %q", got, want)
	}
}

func TestRun(t *testing.T) {
	c := testCluster()
	cfg := DefaultConfig()
	cfg.Services, cfg.Slices, cfg.Logger = c.Services, c.Slices, nil
	cfg.Listen = []string{"127.0.0.1:0", "127.0.0.1:0"}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Addrs() != nil {
		t.Errorf("Addrs before Run = %v, want nil", s.Addrs())
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-s.Ready()
	addrs := s.Addrs()
	if len(addrs) != 2 || addrs[0] == addrs[1] {
		t.Fatalf("Addrs = %v, want two different addresses", addrs)
	}
	for _, a := range addrs {
		for _, proto := range []string{"udp", "tcp"} {
			if resp := query(t, a, "web.default.svc.cluster.local.", dns.TypeA, queryOpts{proto: proto}); len(resp.Answer) != 1 {
				t.Errorf("%s %s: %v", proto, a, resp.Answer)
			}
		}
	}
	if err := s.Run(ctx); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("second Run = %v, want ErrAlreadyRunning", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// The ports are released.
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("tcp %s still bound: %v", a, err)
			continue
		}
		ln.Close()
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			t.Errorf("udp %s still bound: %v", a, err)
			continue
		}
		pc.Close()
	}
}

func TestRunBindFailure(t *testing.T) {
	pc, ln := listenPair(t)
	defer pc.Close()
	defer ln.Close()
	c := testCluster()
	cfg := DefaultConfig()
	cfg.Services, cfg.Slices, cfg.Logger = c.Services, c.Slices, nil
	cfg.Listen = []string{ln.Addr().String()}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(t.Context()); err == nil {
		t.Fatal("Run on a taken address succeeded")
	}
	select {
	case <-s.Ready():
	default:
		t.Error("Ready not closed after a failed Run")
	}
}

func TestValidate(t *testing.T) {
	c := testCluster()
	good := func() Config {
		cfg := DefaultConfig()
		cfg.Services, cfg.Slices = c.Services, c.Slices
		cfg.Listen = []string{"10.244.1.1:53"}
		cfg.Upstreams = []string{"192.0.2.1:53", "[2001:db8::1]:53"}
		return cfg
	}
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"good", func(*Config) {}, true},
		{"no Services", func(c *Config) { c.Services = nil }, false},
		{"no Slices", func(c *Config) { c.Slices = nil }, false},
		{"no domain", func(c *Config) { c.Domain = "." }, false},
		{"bad domain", func(c *Config) { c.Domain = "a..b" }, false},
		{"no listen", func(c *Config) { c.Listen = nil }, false},
		{"listen without port", func(c *Config) { c.Listen = []string{"10.0.0.1"} }, false},
		{"listen by name", func(c *Config) { c.Listen = []string{"localhost:53"} }, false},
		{"upstream without port", func(c *Config) { c.Upstreams = []string{"192.0.2.1"} }, false},
		{"no upstreams", func(c *Config) { c.Upstreams = nil }, true},
		{"zero timeout", func(c *Config) { c.ForwardTimeout = 0 }, false},
		{"TTL too large", func(c *Config) { c.TTL = 3601 }, false},
		{"TTL 0", func(c *Config) { c.TTL = 0 }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.mod(&cfg)
			err := cfg.Validate()
			if tc.ok && err != nil {
				t.Fatalf("Validate = %v, want nil", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
			if _, nerr := New(cfg); (nerr == nil) != tc.ok {
				t.Fatalf("New error = %v, want error %v", nerr, !tc.ok)
			}
		})
	}
}

func TestDashed(t *testing.T) {
	for _, s := range []string{"10.244.1.5", "fd00::1", "2001:db8::a:b"} {
		ip := netip.MustParseAddr(s)
		got, ok := parseDashed(dashed(ip))
		if !ok || got != ip {
			t.Errorf("parseDashed(dashed(%v)) = %v, %v", ip, got, ok)
		}
	}
}
