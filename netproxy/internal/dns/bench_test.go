package dns

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
)

// BenchmarkServiceA measures service A lookups over UDP, one query in
// flight per client (b.RunParallel: GOMAXPROCS clients), against 10,000
// services, with an indexed Service lookup (as the lead's listers) and by
// scanning Services.
func BenchmarkServiceA(b *testing.B) {
	c := &cluster{}
	index := map[string]*corev1.Service{}
	for i := range 10000 {
		svc := clusterIPService(fmt.Sprintf("ns%d", i%100), fmt.Sprintf("svc%d", i),
			[]string{fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)}, corev1.ServicePort{Name: "http", Port: 80})
		c.add(svc)
		index[svc.Namespace+"/"+svc.Name] = svc
	}
	for _, mode := range []string{"indexed", "scan"} {
		b.Run(mode, func(b *testing.B) {
			addr := startServer(b, c, func(cfg *Config) {
				if mode == "indexed" {
					cfg.Service = func(ns, name string) *corev1.Service { return index[ns+"/"+name] }
				}
			})
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				conn, err := net.Dial("udp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				co := &dns.Conn{Conn: conn}
				defer co.Close()
				m := new(dns.Msg)
				m.SetQuestion("svc9999.ns99.svc.cluster.local.", dns.TypeA)
				for pb.Next() {
					m.Id = dns.Id()
					if err := co.WriteMsg(m); err != nil {
						b.Error(err)
						return
					}
					resp, err := co.ReadMsg()
					if err != nil || len(resp.Answer) != 1 {
						b.Errorf("answer %v, err %v", resp, err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "queries/s")
		})
	}
}
