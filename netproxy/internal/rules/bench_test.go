package rules

import "testing"

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
