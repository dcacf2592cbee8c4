package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/skiff-sh/skiff/e2e/lab"
)

// TestServicesInLab is issue 6's acceptance on a lab of one master and two
// workers: ClusterIP load spreading from pods and nodes, NodePorts (and
// externalTrafficPolicy Local), internalTrafficPolicy Local, not-ready
// endpoints, services without endpoints refused at once, hairpin, cluster
// DNS (services, headless, forwarding), a rolling update without a failed
// request, and an agent restart that leaves the rules working and
// unchanged.
func TestServicesInLab(t *testing.T) {
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	al := startAgentLabWith(t, nil, []string{"--resolv-conf", resolv}, func(l *lab.Lab) {
		// The lab has no internet: an upstream resolver on the bridge
		// knows one outside name.
		addr := net.JoinHostPort(l.BridgeIP().String(), "53")
		mux := dns.NewServeMux()
		mux.HandleFunc("outside.example.", func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(r)
			if r.Question[0].Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: net.ParseIP("192.0.2.77")})
			}
			w.WriteMsg(m)
		})
		srv := &dns.Server{Addr: addr, Net: "udp", Handler: mux}
		started := make(chan error, 1)
		srv.NotifyStartedFunc = func() { started <- nil }
		go func() { started <- srv.ListenAndServe() }()
		if err := <-started; err != nil {
			t.Fatalf("fake upstream DNS on %s: %v", addr, err)
		}
		t.Cleanup(func() { srv.Shutdown() })
		if err := os.WriteFile(resolv, []byte("nameserver "+l.BridgeIP().String()+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	img := al.Images()
	w0, w1 := al.Worker(0), al.Worker(1)
	al.apply(fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: web
        image: %[1]s
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
        lifecycle:
          preStop:
            exec: {command: [sleep, "3"]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: solo, labels: {app: solo}}
spec:
  nodeName: w0
  containers: [{name: c, image: %[1]s}]
---
apiVersion: v1
kind: Service
metadata: {name: solo-local}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: solo}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: solo-internal}
spec:
  internalTrafficPolicy: Local
  selector: {app: solo}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: well, labels: {app: sickweb}}
spec:
  nodeName: w1
  containers: [{name: c, image: %[1]s}]
---
apiVersion: v1
kind: Pod
metadata: {name: sick, labels: {app: sickweb}}
spec:
  nodeName: w0
  containers:
  - name: c
    image: %[1]s
    readinessProbe:
      httpGet: {path: /status/500, port: 8080}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: sickweb}
spec:
  selector: {app: sickweb}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nothing-here}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: self, labels: {app: self}}
spec:
  nodeName: w1
  containers: [{name: c, image: %[1]s}]
---
apiVersion: v1
kind: Service
metadata: {name: self}
spec:
  selector: {app: self}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: cli0}
spec:
  nodeName: w0
  terminationGracePeriodSeconds: 0
  containers: [{name: c, image: %[2]s, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: cli1}
spec:
  nodeName: w1
  terminationGracePeriodSeconds: 0
  containers: [{name: c, image: %[2]s, command: [sleep, "3600"]}]
`, img.Echo, img.Busybox))
	al.mustKubectl("rollout", "status", "-n", al.ns, "deployment/web", "--timeout=120s")
	for _, p := range []string{"solo", "well", "self", "cli0", "cli1"} {
		al.waitRunning(p, time.Minute)
	}
	field := func(kind, name, jsonpath string) string {
		t.Helper()
		return al.mustKubectl("get", kind, "-n", al.ns, name, "-o", "jsonpath="+jsonpath)
	}
	vip := field("service", "web", "{.spec.clusterIP}")
	nodePort := field("service", "web-np", "{.spec.ports[0].nodePort}")
	localPort := field("service", "solo-local", "{.spec.ports[0].nodePort}")
	execIn := func(pod string, script string) (string, error) {
		return al.kubectl("exec", "-n", al.ns, pod, "--", "sh", "-c", script)
	}
	// The endpoints reach every node's rules.
	al.waitFor(30*time.Second, "the web VIP answering from both workers' pods", func() error {
		for _, c := range []string{"cli0", "cli1"} {
			if out, err := execIn(c, "timeout 3 wget -q -O - http://"+vip+"/"); err != nil || !strings.HasPrefix(out, "hostname=web-") {
				return fmt.Errorf("%s: %q %v", c, out, err)
			}
		}
		return nil
	})

	t.Run("pods reach the API as their service account through the kubernetes service", func(t *testing.T) {
		// The echoserver asks as client-go's in-cluster configuration does:
		// the mounted token and CA, $KUBERNETES_SERVICE_HOST:PORT (10.96.0.1:443).
		for _, p := range []string{"solo", "well"} {
			ip, err := al.podField(p, "{.status.podIP}")
			if err != nil {
				t.Fatal(err)
			}
			al.waitFor(30*time.Second, p+" asking the API who it is", func() error {
				out, err := execIn("cli1", "timeout 5 wget -q -O - http://"+ip+":8080/whoami")
				if want := "system:serviceaccount:" + al.ns + ":default"; err != nil || out != want {
					return fmt.Errorf("got %q, %v; want %s", out, err, want)
				}
				return nil
			})
			if out, err := execIn("cli1", "timeout 5 wget -q -O - http://"+ip+":8080/env/KUBERNETES_SERVICE_HOST"); err != nil || out != "10.96.0.1" {
				t.Fatalf("%s: KUBERNETES_SERVICE_HOST = %q, %v", p, out, err)
			}
		}
		if out := al.mustKubectl("exec", "-n", al.ns, "solo", "--", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/namespace"); out != al.ns {
			t.Fatalf("the mounted namespace file: %q, want %s", out, al.ns)
		}
	})

	t.Run("ClusterIP spreads over the endpoints, from pods and nodes", func(t *testing.T) {
		re := regexp.MustCompile(`hostname=(web-\S+)`)
		for _, c := range []string{"cli0", "cli1"} {
			out, err := execIn(c, "for i in $(seq 300); do timeout 3 wget -q -O - http://"+vip+"/; done")
			if err != nil {
				t.Fatalf("%s: %v\n%s", c, err, out)
			}
			counts := map[string]int{}
			for _, m := range re.FindAllStringSubmatch(out, -1) {
				counts[m[1]]++
			}
			total := 0
			for _, n := range counts {
				total += n
			}
			if total != 300 || len(counts) != 3 {
				t.Fatalf("%s: %d answers from %d endpoints: %v", c, total, len(counts), counts)
			}
			for ep, n := range counts {
				if n < 60 {
					t.Fatalf("%s: endpoint %s got %d of 300 (< 20%%): %v", c, ep, n, counts)
				}
			}
		}
		// The nodes (the workers: masters run no proxy).
		for _, h := range []*lab.Host{w0, w1} {
			out, err := al.Exec(t.Context(), h, "busybox", "timeout", "3", "busybox", "wget", "-q", "-O", "-", "http://"+vip+"/")
			if err != nil || !strings.HasPrefix(out, "hostname=web-") {
				t.Fatalf("from node %s: %q %v", h.Name, out, err)
			}
		}
	})

	t.Run("NodePort on every node, Local only where an endpoint is", func(t *testing.T) {
		for _, h := range []*lab.Host{w0, w1} {
			if out, err := execIn("cli1", "timeout 3 wget -q -O - http://"+h.IP.String()+":"+nodePort+"/"); err != nil || !strings.HasPrefix(out, "hostname=web-") {
				t.Fatalf("NodePort on %s: %q %v", h.Name, out, err)
			}
			// From outside the cluster: the master's host.
			if out, err := al.Exec(t.Context(), al.Master(0), "busybox", "timeout", "3", "busybox", "wget", "-q", "-O", "-", "http://"+h.IP.String()+":"+nodePort+"/"); err != nil || !strings.HasPrefix(out, "hostname=web-") {
				t.Fatalf("NodePort on %s from the master's host: %q %v", h.Name, out, err)
			}
		}
		out, err := al.Exec(t.Context(), al.Master(0), "busybox", "timeout", "3", "busybox", "wget", "-q", "-O", "-", "http://"+w0.IP.String()+":"+localPort+"/")
		if err != nil || strings.TrimSpace(out) != "hostname=solo" {
			t.Fatalf("Local NodePort on w0 (which has the endpoint): %q %v", out, err)
		}
		if out, err := al.Exec(t.Context(), al.Master(0), "busybox", "timeout", "3", "busybox", "wget", "-q", "-O", "-", "http://"+w1.IP.String()+":"+localPort+"/"); err == nil {
			t.Fatalf("Local NodePort on w1 (no endpoint there) answered: %q", out)
		}
	})

	t.Run("internalTrafficPolicy Local only reaches this node's endpoint", func(t *testing.T) {
		ip := field("service", "solo-internal", "{.spec.clusterIP}")
		get := "timeout 3 wget -q -O - http://" + ip + "/"
		// w0 has the endpoint: its pods and itself are answered.
		al.waitFor(30*time.Second, "solo-internal answering cli0 on w0", func() error {
			if out, err := execIn("cli0", get); err != nil || strings.TrimSpace(out) != "hostname=solo" {
				return fmt.Errorf("%q %v", out, err)
			}
			return nil
		})
		if out, err := al.Exec(t.Context(), w0, "busybox", "timeout", "3", "busybox", "wget", "-q", "-O", "-", "http://"+ip+"/"); err != nil || strings.TrimSpace(out) != "hostname=solo" {
			t.Fatalf("from node w0: %q %v", out, err)
		}
		// w1 has none: once its proxy has the service, the cluster IP
		// goes nowhere from there (no fallback to w0's endpoint).
		al.waitFor(30*time.Second, "w1's proxy dropping solo-internal", func() error {
			out, err := al.Exec(t.Context(), w1, "iptables-save", "-t", "filter")
			if err != nil || !strings.Contains(out, "solo-internal has no local endpoints") {
				return fmt.Errorf("no DROP rule for solo-internal on w1 (%v)", err)
			}
			return nil
		})
		if out, err := execIn("cli1", get); err == nil {
			t.Fatalf("cli1 on w1 reached solo-internal: %q", out)
		}
		if out, err := al.Exec(t.Context(), w1, "busybox", "timeout", "3", "busybox", "wget", "-q", "-O", "-", "http://"+ip+"/"); err == nil {
			t.Fatalf("node w1 reached solo-internal: %q", out)
		}
	})

	t.Run("a not-ready endpoint gets no traffic; no endpoints is refused at once", func(t *testing.T) {
		out, err := execIn("cli0", "for i in $(seq 50); do timeout 3 wget -q -O - http://sickweb/; done")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if n := strings.Count(out, "hostname=well"); n != 50 || strings.Contains(out, "hostname=sick") {
			t.Fatalf("answers: %d from well of 50; output %q", n, out)
		}
		emptyIP := field("service", "empty", "{.spec.clusterIP}")
		start := time.Now()
		out, err = execIn("cli0", "timeout 5 wget -q -O - http://"+emptyIP+"/")
		if err == nil || !strings.Contains(out, "refused") {
			t.Fatalf("a service without endpoints: %q %v, want connection refused", out, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("refusal took %v, want at once", d)
		}
	})

	t.Run("hairpin: a pod reaches itself through its service", func(t *testing.T) {
		// Its VIP ("self" alone would be the pod's own name in /etc/hosts).
		selfIP := field("service", "self", "{.spec.clusterIP}")
		if out, err := al.kubectl("exec", "-n", al.ns, "self", "--", "timeout", "3", "wget", "-q", "-O", "-", "http://"+selfIP+"/"); err != nil || strings.TrimSpace(out) != "hostname=self" {
			t.Fatalf("%q %v", out, err)
		}
	})

	t.Run("cluster DNS", func(t *testing.T) {
		// Through the C library's resolver (search path, ndots:5) as
		// applications resolve.
		for _, name := range []string{"web", "web." + al.ns, "web." + al.ns + ".svc.cluster.local"} {
			out, err := execIn("cli1", "timeout 3 wget -q -O - http://"+name+"/")
			if err != nil || !strings.HasPrefix(out, "hostname=web-") {
				t.Fatalf("GET http://%s/: %q %v", name, out, err)
			}
		}
		// busybox nslookup asks the cluster DNS directly (and exits 1 for
		// search-list expansions that do not exist: judge by the answer).
		if out, _ := execIn("cli1", "nslookup web."+al.ns+".svc.cluster.local"); !strings.Contains(out, vip) {
			t.Fatalf("nslookup of the full name: %q, want %s", out, vip)
		}
		podIPs := strings.Fields(al.mustKubectl("get", "pods", "-n", al.ns, "-l", "app=web", "-o", "jsonpath={.items[*].status.podIP}"))
		out, err := execIn("cli0", "nslookup web-headless")
		if !strings.Contains(out, "Name:") {
			t.Fatalf("nslookup web-headless: %v %s", err, out)
		}
		for _, ip := range podIPs {
			if !strings.Contains(out, ip) {
				t.Fatalf("headless answer %q lacks pod %s (pods %v)", out, ip, podIPs)
			}
		}
		out, err = execIn("cli0", "nslookup outside.example")
		if !strings.Contains(out, "192.0.2.77") {
			t.Fatalf("forwarded name: %q %v", out, err)
		}
	})

	t.Run("rolling update behind the service without a failed request", func(t *testing.T) {
		type result struct {
			out string
			err error
		}
		done := make(chan result, 1)
		go func() {
			out, err := execIn("cli1", `rm -f /tmp/sent; end=$(( $(date +%s) + 30 )); ok=0; fail=0; while [ $(date +%s) -lt $end ]; do if timeout 4 wget -q -O /dev/null http://web/; then ok=$((ok+1)); else fail=$((fail+1)); fi; echo $((ok+fail)) > /tmp/sent; done; echo "ok=$ok fail=$fail"`)
			done <- result{out, err}
		}()
		// The rollout starts once the client is sending.
		al.waitFor(30*time.Second, "the client loop sending requests", func() error {
			out, err := execIn("cli1", "cat /tmp/sent")
			var n int
			if _, serr := fmt.Sscan(strings.TrimSpace(out), &n); err != nil || serr != nil || n < 20 {
				return fmt.Errorf("sent %q %v", out, err)
			}
			return nil
		})
		al.mustKubectl("set", "env", "-n", al.ns, "deployment/web", "ROLL=2")
		al.mustKubectl("rollout", "status", "-n", al.ns, "deployment/web", "--timeout=120s")
		r := <-done
		if r.err != nil {
			t.Fatalf("client loop: %v %s", r.err, r.out)
		}
		var ok, fail int
		if _, err := fmt.Sscanf(strings.TrimSpace(r.out), "ok=%d fail=%d", &ok, &fail); err != nil {
			t.Fatalf("client output %q", r.out)
		}
		if fail != 0 || ok < 50 {
			t.Fatalf("during the rollout: %d ok, %d failed requests", ok, fail)
		}
		t.Logf("rolling update: %d requests, none failed", ok)
	})

	t.Run("agent restart keeps the rules working and unchanged", func(t *testing.T) {
		rules := func() string {
			t.Helper()
			var lines []string
			for _, table := range []string{"nat", "filter"} {
				out, err := al.Exec(t.Context(), w0, "iptables-save", "-t", table)
				if err != nil {
					t.Fatal(err, out)
				}
				for _, l := range strings.Split(out, "\n") {
					if strings.Contains(l, "SKP-") {
						lines = append(lines, table+": "+l)
					}
				}
			}
			sort.Strings(lines)
			return strings.Join(lines, "\n")
		}
		before := rules()
		synced := strings.Count(readFile(al.LogPath("w0-agent")), "service rules in place")
		if err := al.KillAgent(0); err != nil {
			t.Fatal(err)
		}
		// From w0 itself: exec into its pods needs its agent.
		viaW0 := func() (string, error) {
			return al.Exec(t.Context(), w0, "busybox", "timeout", "3", "busybox", "wget", "-q", "-O", "-", "http://"+vip+"/")
		}
		if out, err := viaW0(); err != nil || !strings.HasPrefix(out, "hostname=web-") {
			t.Fatalf("with the agent down: %q %v", out, err)
		}
		if err := al.StartAgent(t.Context(), 0); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		for {
			out, err := viaW0()
			if err != nil || !strings.HasPrefix(out, "hostname=web-") {
				t.Fatalf("while the agent restarts: %q %v", out, err)
			}
			if strings.Count(readFile(al.LogPath("w0-agent")), "service rules in place") > synced {
				break
			}
			if ctx.Err() != nil {
				t.Fatal("the restarted agent did not sync its service rules within 60s")
			}
		}
		if after := rules(); after != before {
			t.Fatalf("rules changed across the agent restart:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})

	t.Run("skiff agent --cleanup-iptables removes every Skiff rule", func(t *testing.T) {
		if err := al.KillAgent(1); err != nil {
			t.Fatal(err)
		}
		if out, err := al.Exec(t.Context(), w1, skiffBinary(t), "agent", "--cleanup-iptables"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		for _, table := range []string{"nat", "filter"} {
			out, err := al.Exec(t.Context(), w1, "iptables-save", "-t", table)
			if err != nil {
				t.Fatal(err, out)
			}
			if strings.Contains(out, "SKP-") || strings.Contains(out, "SKIFF-") {
				t.Fatalf("%s table after cleanup:\n%s", table, out)
			}
		}
	})
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
