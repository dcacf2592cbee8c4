package rules

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const (
	tcp  = corev1.ProtocolTCP
	udp  = corev1.ProtocolUDP
	sctp = corev1.ProtocolSCTP
)

type goldenCase struct {
	name string // testdata/<name>.golden
	what string // first line of the golden file
	in   Input
	// services and endpoints are the counts Result must report.
	services, endpoints int
}

func goldenCases() []goldenCase {
	httpPorts := []corev1.ServicePort{port("http", tcp, 80, 8080)}
	httpSlice := []discoveryv1.EndpointPort{slicePort("http", tcp, 8080)}
	with := func(mod func(*Input), svcs []*corev1.Service, slices ...*discoveryv1.EndpointSlice) Input {
		in := baseInput()
		in.Services, in.Slices = svcs, slices
		if mod != nil {
			mod(&in)
		}
		return in
	}
	web := func(opts ...svcOpt) []*corev1.Service {
		return []*corev1.Service{service("default", "web", "10.96.0.20", httpPorts, opts...)}
	}
	webNP := func(opts ...svcOpt) []*corev1.Service {
		return []*corev1.Service{service("default", "web", "10.96.0.20",
			[]corev1.ServicePort{nodePort("http", tcp, 80, 8080, 30080)}, append([]svcOpt{withType(corev1.ServiceTypeNodePort)}, opts...)...)}
	}
	withServiceCIDR := func(in *Input) { in.ServiceCIDR = netip.MustParsePrefix("10.96.0.0/12") }
	twoNodes := endpointSlice("default", "web", "web-1", httpSlice,
		ep("10.244.1.5", "node-a"), ep("10.244.2.7", "node-b"))
	remoteOnly := endpointSlice("default", "web", "web-1", httpSlice, ep("10.244.2.7", "node-b"), ep("10.244.3.9", "node-c"))

	return []goldenCase{
		{name: "empty", what: "no services: only the fixed chains",
			in: with(nil, nil)},
		{name: "clusterip-1", what: "ClusterIP, one endpoint (unnamed port)",
			in: with(nil, []*corev1.Service{service("default", "kubernetes", "10.96.0.1", []corev1.ServicePort{port("", tcp, 443, 6443)})},
				endpointSlice("default", "kubernetes", "kubernetes", []discoveryv1.EndpointPort{slicePort("", tcp, 6443)}, ep("192.168.1.10", ""))),
			services: 1, endpoints: 1},
		{name: "clusterip-3", what: "ClusterIP, three endpoints in two slices, spread 1/3, 1/2, rest",
			in: with(nil, web(),
				endpointSlice("default", "web", "web-2", httpSlice, ep("10.244.2.7", "node-b")),
				endpointSlice("default", "web", "web-1", httpSlice, ep("10.244.3.9", "node-c"), ep("10.244.1.5", "node-a"))),
			services: 1, endpoints: 3},
		{name: "not-ready", what: "ready=false is skipped, ready unset counts as ready; a slice of another service or namespace is ignored",
			in: with(nil, web(),
				endpointSlice("default", "web", "web-1", httpSlice,
					ep("10.244.1.5", "node-a", notReady()), ep("10.244.2.7", "node-b", readyUnknown()), ep("10.244.3.9", "node-c")),
				endpointSlice("default", "other", "other-1", httpSlice, ep("10.244.1.99", "node-a")),
				endpointSlice("prod", "web", "web-1", httpSlice, ep("10.244.1.98", "node-a"))),
			services: 1, endpoints: 2},
		{name: "no-endpoints", what: "no ready endpoints: no nat rules, filter REJECT on the cluster IP",
			in: with(nil, web(),
				endpointSlice("default", "web", "web-1", httpSlice, ep("10.244.1.5", "node-a", notReady()))),
			services: 1},
		{name: "terminating", what: "all endpoints terminating: the serving terminating ones are used, the non-serving one is not",
			in: with(nil, web(),
				endpointSlice("default", "web", "web-1", httpSlice,
					ep("10.244.1.5", "node-a", terminating()),
					ep("10.244.2.7", "node-b", func(e *discoveryv1.Endpoint) {
						e.Conditions = discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(false), Terminating: ptr(true)}
					}))),
			services: 1, endpoints: 1},
		{name: "named-ports", what: "two named ports matched to slice ports by name and protocol (slice port order differs); duplicate endpoints across slices once",
			in: with(nil, []*corev1.Service{service("default", "web", "10.96.0.20",
				[]corev1.ServicePort{port("metrics", tcp, 9090, 9100), port("http", tcp, 80, 8080), port("dns", udp, 53, 5353)})},
				endpointSlice("default", "web", "web-1",
					[]discoveryv1.EndpointPort{slicePort("metrics", tcp, 9100), slicePort("dns", tcp, 5353), slicePort("http", tcp, 8080)},
					ep("10.244.1.5", "node-a"), ep("10.244.2.7", "node-b")),
				endpointSlice("default", "web", "web-2",
					[]discoveryv1.EndpointPort{slicePort("http", tcp, 8080), slicePort("metrics", tcp, 9100)},
					ep("10.244.2.7", "node-b"))),
			// dns/UDP has no UDP slice port: rejected.
			services: 3, endpoints: 4},
		{name: "nodeport-cluster", what: "NodePort, externalTrafficPolicy Cluster: masquerade and all endpoints",
			in: with(nil, webNP(), twoNodes), services: 1, endpoints: 2},
		{name: "nodeport-local", what: "NodePort, externalTrafficPolicy Local: external clients only to node-a's endpoint, unmasqueraded; pods and the node itself to all",
			in: with(nil, webNP(withLocalPolicy()), twoNodes), services: 1, endpoints: 2},
		{name: "nodeport-local-none", what: "NodePort, Local, no endpoint on this node: filter DROP for the NodePort, cluster IP still works",
			in: with(nil, webNP(withLocalPolicy()), remoteOnly), services: 1, endpoints: 2},
		{name: "nodeport-no-endpoints", what: "NodePort without endpoints: REJECT on the cluster IP and the NodePort",
			in: with(nil, webNP()), services: 1},
		{name: "nodeport-nodeips", what: "NodePort answering only on the given node IPs (duplicates and IPv6 ignored)",
			in: with(func(in *Input) {
				in.NodeIPs = []netip.Addr{netip.MustParseAddr("192.168.1.11"), netip.MustParseAddr("10.244.1.1"), netip.MustParseAddr("192.168.1.11"), netip.MustParseAddr("fd00::1")}
			}, append(webNP(), service("default", "empty", "10.96.0.21", []corev1.ServicePort{nodePort("", tcp, 80, 80, 30081)}, withType(corev1.ServiceTypeNodePort))), twoNodes),
			services: 2, endpoints: 2},
		{name: "affinity", what: "sessionAffinity ClientIP with a 600 s timeout",
			in: with(nil, web(withAffinity(600)), twoNodes), services: 1, endpoints: 2},
		{name: "affinity-default", what: "sessionAffinity ClientIP without a timeout: 10800 s, also in the Local chain",
			in: with(nil, webNP(withAffinity(0), withLocalPolicy()), twoNodes), services: 1, endpoints: 2},
		{name: "external-ips", what: "externalIPs (Cluster policy), sorted, IPv6 ignored",
			in: with(nil, web(withExternalIPs("203.0.113.9", "203.0.113.5", "2001:db8::1")), twoNodes), services: 1, endpoints: 2},
		{name: "external-ips-local-none", what: "externalIPs with policy Local and no local endpoint: DROP; another without endpoints: REJECT",
			in: with(nil, append(web(withExternalIPs("203.0.113.5"), withLocalPolicy()),
				service("default", "gone", "10.96.0.21", httpPorts, withExternalIPs("203.0.113.6"))), remoteOnly),
			services: 2, endpoints: 2},
		{name: "headless", what: "headless and ExternalName services: no rules",
			in: with(nil, []*corev1.Service{
				service("default", "db", corev1.ClusterIPNone, httpPorts),
				service("default", "ext", "", nil, withType(corev1.ServiceTypeExternalName)),
			}, endpointSlice("default", "db", "db-1", httpSlice, ep("10.244.1.5", "node-a")))},
		{name: "udp-sctp", what: "UDP and SCTP ports",
			in: with(nil, []*corev1.Service{service("kube-system", "syslog", "10.96.0.30",
				[]corev1.ServicePort{port("syslog", udp, 514, 1514), port("sig", sctp, 3868, 3868)})},
				endpointSlice("kube-system", "syslog", "syslog-1",
					[]discoveryv1.EndpointPort{slicePort("syslog", udp, 1514), slicePort("sig", sctp, 3868)}, ep("10.244.1.5", "node-a"))),
			services: 2, endpoints: 2},
		{name: "local-dns", what: "node-local DNS redirect first in SKP-SERVICES, before the DNS service's own rules; random-fully masquerade",
			in: with(func(in *Input) {
				in.LocalDNS = &LocalDNS{VIP: netip.MustParseAddr("10.96.0.10"), Target: netip.MustParseAddrPort("10.244.1.1:53")}
				in.MasqueradeRandomFully = true
			}, []*corev1.Service{service("kube-system", "kube-dns", "10.96.0.10",
				[]corev1.ServicePort{port("dns", udp, 53, 53), port("dns-tcp", tcp, 53, 53)})},
				endpointSlice("kube-system", "kube-dns", "kube-dns-1",
					[]discoveryv1.EndpointPort{slicePort("dns", udp, 53), slicePort("dns-tcp", tcp, 53)}, ep("10.244.1.1", "node-a"))),
			services: 2, endpoints: 2},
		{name: "two-services", what: "two services in two namespaces, one selectorless with a manual slice, sorted by namespace/name",
			in: with(nil, []*corev1.Service{
				service("prod", "api", "10.96.0.41", []corev1.ServicePort{port("", tcp, 8080, 8080)}),
				service("default", "legacy", "10.96.0.40", []corev1.ServicePort{port("pg", tcp, 5432, 5432)}, withoutSelector()),
			},
				endpointSlice("prod", "api", "api-x", []discoveryv1.EndpointPort{slicePort("", tcp, 8080)}, ep("10.244.2.7", "node-b")),
				endpointSlice("default", "legacy", "legacy-manual", []discoveryv1.EndpointPort{slicePort("pg", tcp, 5432)}, ep("192.168.1.50", ""))),
			services: 2, endpoints: 2},
		{name: "internal-local", what: "internalTrafficPolicy Local: the cluster IP leads to node-a's endpoint only, outsiders masqueraded there",
			in: with(nil, web(withInternalLocal()), twoNodes), services: 1, endpoints: 1},
		{name: "internal-local-none", what: "internalTrafficPolicy Local, no endpoint on this node: filter DROP for the cluster IP, no nat rules",
			in: with(nil, web(withInternalLocal()), remoteOnly), services: 1},
		{name: "internal-local-nodeport", what: "internalTrafficPolicy Local with a NodePort (policy Cluster): the cluster IP to node-a's endpoint, the NodePort to all",
			in: with(nil, webNP(withInternalLocal()), twoNodes), services: 1, endpoints: 2},
		{name: "internal-local-nodeport-none", what: "internalTrafficPolicy and externalTrafficPolicy Local, no endpoint here: DROP for the cluster IP and the NodePort; pods and the node reach the NodePort through the SVC chain",
			in: with(nil, webNP(withInternalLocal(), withLocalPolicy()), remoteOnly), services: 1, endpoints: 2},
		{name: "service-cidr", what: "with the service CIDR: cluster IP outsiders masqueraded by one conntrack rule in SKP-POSTROUTING (accepted in SKP-FORWARD), not in the SVC chain; the NodePort as before",
			in: with(withServiceCIDR, webNP(), twoNodes), services: 1, endpoints: 2},
		{name: "service-cidr-internal-local", what: "with the service CIDR, internalTrafficPolicy Local: no masquerade rule in the SVL chain either",
			in: with(withServiceCIDR, web(withInternalLocal()), twoNodes), services: 1, endpoints: 1},
		{name: "service-cidr-outside", what: "with the service CIDR, a cluster IP outside it keeps its own masquerade rule",
			in: with(withServiceCIDR, []*corev1.Service{
				service("default", "web", "10.96.0.20", httpPorts),
				service("default", "odd", "172.30.0.5", httpPorts),
			}, twoNodes, endpointSlice("default", "odd", "odd-1", httpSlice, ep("10.244.2.8", "node-b"))),
			services: 2, endpoints: 3},
		{name: "service-cidr-fallback", what: "with the service CIDR holding a node address: a masquerade rule per cluster IP, no conntrack rule (a Local NodePort keeps its clients' addresses)",
			in: with(func(in *Input) {
				withServiceCIDR(in)
				in.NodeIPs = []netip.Addr{netip.MustParseAddr("10.100.0.7")}
			}, webNP(withLocalPolicy()), twoNodes), services: 1, endpoints: 2},
		{name: "service-cidr-local-dns", what: "with the service CIDR and the node-local DNS redirect: the conntrack rule leaves the redirect out",
			in: with(func(in *Input) {
				withServiceCIDR(in)
				in.LocalDNS = &LocalDNS{VIP: netip.MustParseAddr("10.96.0.10"), Target: netip.MustParseAddrPort("10.244.1.1:53")}
			}, web(), twoNodes), services: 1, endpoints: 2},
		{name: "no-cluster-cidr", what: "without a cluster CIDR: no VIP masquerade rule, no pod shortcut in the Local EXT chain",
			in:       with(func(in *Input) { in.ClusterCIDR = netip.Prefix{} }, webNP(withLocalPolicy()), twoNodes),
			services: 1, endpoints: 2},
	}
}

func render(r Result) []byte {
	var b bytes.Buffer
	b.Write(r.NAT)
	b.Write(r.Filter)
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			res := Compute(tc.in)
			got := append([]byte("# "+tc.what+"\n"), render(res)...)
			checkGolden(t, tc.name+".golden", got)
			if res.Services != tc.services || res.Endpoints != tc.endpoints {
				t.Errorf("counts: got %d services, %d endpoints; want %d, %d", res.Services, res.Endpoints, tc.services, tc.endpoints)
			}
		})
	}
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}
