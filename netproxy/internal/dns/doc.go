// Package dns owns Skiff's cluster DNS: an authoritative server for the
// cluster domain (cluster.local) that answers from the current Services and
// EndpointSlices, and forwards every other name to the host's resolvers.
//
// Names and records follow the Kubernetes DNS-based service discovery
// specification as CoreDNS's kubernetes plugin answers it in the kubeadm
// default configuration ("pods insecure", TTL 5 s):
//
//	<svc>.<ns>.svc.<domain>              A/AAAA: the ClusterIPs; headless: every ready endpoint
//	                                     (all endpoints with publishNotReadyAddresses)
//	                                     SRV: one record per port
//	_<port>._<proto>.<svc>.<ns>.svc.<domain>  SRV for a named port; the target is the
//	                                     service name, or for a headless service
//	                                     <endpoint>.<svc>.<ns>.svc.<domain>, with the
//	                                     targets' addresses in the additional section
//	<endpoint>.<svc>.<ns>.svc.<domain>   A/AAAA: the endpoint whose hostname is <endpoint>,
//	                                     or whose address with dashes is <endpoint>
//	<a-b-c-d>.<ns>.pod.<domain>          A a.b.c.d for any well-formed address
//	ExternalName services                CNAME to the external name, followed (the
//	                                     target's records are appended, as CoreDNS does)
//	<domain>                             SOA and NS
//	dns-version.<domain>                 TXT "1.1.0"
//	<reversed ip>.in-addr.arpa / ip6.arpa PTR for a ClusterIP (the service name) or a ready
//	                                     endpoint (its endpoint name); other addresses
//	                                     are forwarded (kubeadm's "fallthrough")
//
// An unknown name in the cluster domain is NXDOMAIN and an existing name with
// no records of the asked type is NODATA, both with the zone's SOA in the
// authority section. Names are matched case-insensitively; answers keep the
// question's case. Names outside the cluster domain are forwarded to the
// upstream resolvers in order (UDP, then TCP when the answer is truncated,
// or TCP when the client asked over TCP), SERVFAIL if none answers; names in
// the cluster domain are never forwarded. At most MaxForwards queries are
// forwarded at once (beyond: REFUSED at once), and an upstream that is this
// server itself is dropped. There is no cache.
//
// Call sequence:
//
//	cfg := dns.DefaultConfig()
//	cfg.Services, cfg.Slices = ..., ...      // informer-backed lookups
//	cfg.Listen = []string{"10.244.1.1:53"}
//	cfg.Upstreams, err = dns.ParseResolvConf("/etc/resolv.conf")
//	srv, err := dns.New(cfg)
//	go srv.Run(ctx)                          // binds UDP and TCP on each Listen address
//	<-srv.Ready(); srv.Addrs()               // the bound addresses
//
// Run serves until ctx ends. Queries are served concurrently; the Config
// lookup functions are called from many goroutines at once and must be safe
// for that (informer listers are).
package dns
