package apiserver

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestServiceAllocation(t *testing.T) {
	ts := startServer(t)
	svcs := ts.URL + "/api/v1/namespaces/default/services"
	var a corev1.Service
	mustDo(t, 201, "POST", svcs, "application/json", `{"metadata":{"name":"a"},"spec":{"ports":[{"port":80}]}}`, &a)
	ip, err := netip.ParseAddr(a.Spec.ClusterIP)
	if err != nil || !DefaultServiceCIDR.Contains(ip) || len(a.Spec.ClusterIPs) != 1 || a.Spec.ClusterIPs[0] != a.Spec.ClusterIP ||
		len(a.Spec.IPFamilies) != 1 || a.Spec.IPFamilies[0] != corev1.IPv4Protocol || a.Spec.IPFamilyPolicy == nil || *a.Spec.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack {
		t.Fatalf("got clusterIP %q clusterIPs %v families %v policy %v, want an IPv4 of %s, single stack", a.Spec.ClusterIP, a.Spec.ClusterIPs, a.Spec.IPFamilies, a.Spec.IPFamilyPolicy, DefaultServiceCIDR)
	}
	if a.Spec.Ports[0].NodePort != 0 {
		t.Errorf("a ClusterIP service got node port %d", a.Spec.Ports[0].NodePort)
	}

	var np corev1.Service
	mustDo(t, 201, "POST", svcs, "application/json", `{"metadata":{"name":"np"},"spec":{"type":"NodePort","ports":[{"name":"tcp","port":53,"protocol":"TCP"},{"name":"udp","port":53,"protocol":"UDP"},{"name":"web","port":80,"nodePort":30080}]}}`, &np)
	if p := np.Spec.Ports; p[0].NodePort < 30000 || p[0].NodePort > 32767 || p[1].NodePort < 30000 || p[1].NodePort == p[0].NodePort || p[2].NodePort != 30080 {
		t.Fatalf("got node ports %d %d %d, want two allocated in 30000-32767 and 30080", p[0].NodePort, p[1].NodePort, p[2].NodePort)
	}

	tests := []struct{ name, body, want string }{
		{"taken IP", fmt.Sprintf(`{"metadata":{"name":"b"},"spec":{"clusterIP":%q,"ports":[{"port":80}]}}`, a.Spec.ClusterIP),
			fmt.Sprintf(`spec.clusterIPs: Invalid value: [\"%s\"]: failed to allocate IP %s: provided IP is already allocated`, a.Spec.ClusterIP, a.Spec.ClusterIP)},
		{"IP out of range", `{"metadata":{"name":"b"},"spec":{"clusterIP":"1.2.3.4","ports":[{"port":80}]}}`,
			`failed to allocate IP 1.2.3.4: the provided IP (1.2.3.4) is not in the valid range. The range of valid IPs is 10.96.0.0/12`},
		{"bad IP", `{"metadata":{"name":"b"},"spec":{"clusterIP":"abc","ports":[{"port":80}]}}`, `spec.clusterIPs[0]: Invalid value: \"abc\": must be a valid IP address`},
		{"taken node port", `{"metadata":{"name":"b"},"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":30080}]}}`,
			`spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated`},
		{"node port out of range", `{"metadata":{"name":"b"},"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":80}]}}`,
			`spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767`},
	}
	for _, tt := range tests {
		code, _, body := do(t, "POST", svcs, "application/json", tt.body)
		if code != 422 || !strings.Contains(string(body), tt.want) {
			t.Errorf("%s: got %d %s, want 422 with %s", tt.name, code, body, tt.want)
		}
	}

	// An update without the allocated values keeps them (kubectl replace, apply).
	var upd corev1.Service
	mustDo(t, 200, "PUT", svcs+"/np", "application/json", `{"metadata":{"name":"np"},"spec":{"type":"NodePort","ports":[{"name":"tcp","port":53,"protocol":"TCP"},{"name":"udp","port":53,"protocol":"UDP"},{"name":"web","port":80}]}}`, &upd)
	if upd.Spec.ClusterIP != np.Spec.ClusterIP || upd.Spec.Ports[0].NodePort != np.Spec.Ports[0].NodePort || upd.Spec.Ports[2].NodePort != 30080 {
		t.Errorf("update without allocated values: got %s %v, want %s %v kept", upd.Spec.ClusterIP, upd.Spec.Ports, np.Spec.ClusterIP, np.Spec.Ports)
	}
	// Turning it into a ClusterIP service releases its node ports; deleting
	// a service releases its IP.
	mustDo(t, 200, "PATCH", svcs+"/np", "application/merge-patch+json", `{"spec":{"type":"ClusterIP","ports":[{"name":"web","port":80}]}}`, nil)
	mustDo(t, 201, "POST", svcs, "application/json", `{"metadata":{"name":"c"},"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":30080}]}}`, nil)
	mustDo(t, 200, "DELETE", svcs+"/a", "", "", nil)
	mustDo(t, 201, "POST", svcs, "application/json", fmt.Sprintf(`{"metadata":{"name":"d"},"spec":{"clusterIP":%q,"ports":[{"port":80}]}}`, a.Spec.ClusterIP), nil)
	// Headless and ExternalName services hold no IP.
	var headless corev1.Service
	mustDo(t, 201, "POST", svcs, "application/json", `{"metadata":{"name":"h"},"spec":{"clusterIP":"None","ports":[{"port":80}]}}`, &headless)
	if headless.Spec.ClusterIP != "None" || len(headless.Spec.ClusterIPs) != 1 || headless.Spec.ClusterIPs[0] != "None" {
		t.Errorf("headless: got %q %v", headless.Spec.ClusterIP, headless.Spec.ClusterIPs)
	}
	// Dry runs allocate nothing that stays.
	var dry corev1.Service
	mustDo(t, 201, "POST", svcs+"?dryRun=All", "application/json", `{"metadata":{"name":"e"},"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":30090}]}}`, &dry)
	mustDo(t, 201, "POST", svcs, "application/json", `{"metadata":{"name":"f"},"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":30090}]}}`, nil)
}

// TestServiceAllocationConcurrent fills small ranges with concurrent
// creates through two API servers over one store: every create succeeds
// with its own IP and node port until the ranges are full.
func TestServiceAllocationConcurrent(t *testing.T) {
	small := func(c *Config) {
		c.ServiceCIDR = netip.MustParsePrefix("10.100.0.0/27") // 30 usable addresses
		c.NodePorts = PortRange{Base: 31000, Size: 30}
	}
	first, ts := startAPIServerWith(t, small)
	cfg := first.cfg
	second, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts2 := httptest.NewServer(second.Handler())
	t.Cleanup(ts2.Close)

	const n = 30
	var wg sync.WaitGroup
	results := make([]corev1.Service, n)
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := ts.URL
			if i%2 == 1 {
				url = ts2.URL
			}
			req, _ := http.NewRequestWithContext(t.Context(), "POST", url+"/api/v1/namespaces/default/services", strings.NewReader(
				fmt.Sprintf(`{"metadata":{"name":"s%d"},"spec":{"type":"NodePort","ports":[{"port":80}]}}`, i)))
			req.Header.Set("Content-Type", "application/json")
			code, _, body := doReq(t, req)
			codes[i] = code
			if code == 201 {
				decode(t, body, &results[i])
			}
		}()
	}
	wg.Wait()
	ips, ports := map[string]string{}, map[int32]string{}
	for i, svc := range results {
		if codes[i] != 201 {
			t.Fatalf("create s%d: got %d", i, codes[i])
		}
		if other, dup := ips[svc.Spec.ClusterIP]; dup {
			t.Errorf("%s and %s both got %s", other, svc.Name, svc.Spec.ClusterIP)
		}
		if other, dup := ports[svc.Spec.Ports[0].NodePort]; dup {
			t.Errorf("%s and %s both got node port %d", other, svc.Name, svc.Spec.Ports[0].NodePort)
		}
		ips[svc.Spec.ClusterIP], ports[svc.Spec.Ports[0].NodePort] = svc.Name, svc.Name
	}
	code, _, body := do(t, "POST", ts.URL+"/api/v1/namespaces/default/services", "application/json", `{"metadata":{"name":"full"},"spec":{"ports":[{"port":80}]}}`)
	if code != 500 || !strings.Contains(string(body), "range is full") {
		t.Errorf("create in a full range: got %d %s, want 500 range is full", code, body)
	}
}

// doReq sends req; safe in any goroutine (it reports with t.Error).
func doReq(t *testing.T, req *http.Request) (int, http.Header, []byte) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, nil, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err)
	}
	return resp.StatusCode, resp.Header, body
}

func decode(t *testing.T, body []byte, out any) {
	if err := json.Unmarshal(body, out); err != nil {
		t.Errorf("decoding %s: %v", body, err)
	}
}
