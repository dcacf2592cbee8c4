package rules

import (
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// BenchmarkCompute10k computes the rules for 10,000 services with 10
// endpoints each (one in ten a NodePort, one in ten with affinity).
func BenchmarkCompute10k(b *testing.B) {
	in := scale(10000, 10)
	b.ReportAllocs()
	var res Result
	for b.Loop() {
		res = Compute(in)
	}
	b.ReportMetric(float64(len(res.NAT)+len(res.Filter)), "payload-bytes")
	b.ReportMetric(float64(len(res.NATChains)), "nat-chains")
}

// BenchmarkCompute1k is the same for 1,000 services.
func BenchmarkCompute1k(b *testing.B) {
	in := scale(1000, 10)
	b.ReportAllocs()
	for b.Loop() {
		Compute(in)
	}
}

// BenchmarkCacheOneChange10k is what the proxy pays for one changed
// EndpointSlice among 10,000 services: a Cache renders that service again
// and reuses the others' rules.
func BenchmarkCacheOneChange10k(b *testing.B) {
	in := scale(10000, 10)
	var c Cache
	c.Compute(in)
	orig := in.Slices[0]
	moved := orig.DeepCopy()
	moved.Endpoints[0].Addresses = []string{"10.200.0.1"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		in.Slices[0] = []*discoveryv1.EndpointSlice{orig, moved}[i%2]
		c.Compute(in)
	}
}
