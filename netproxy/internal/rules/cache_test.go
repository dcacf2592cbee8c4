package rules

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// mutate returns prev after one to three random changes, made the way
// informers make them: a changed object is a new object; the others are
// the same pointers, in any order.
func mutate(r *rand.Rand, prev Input, step int) Input {
	in := prev
	in.Services, in.Slices = slices.Clone(prev.Services), slices.Clone(prev.Slices)
	for range 1 + r.IntN(3) {
		switch op := r.IntN(9); {
		case op == 0 && len(in.Services) > 0:
			i := r.IntN(len(in.Services))
			c := in.Services[i].DeepCopy()
			switch r.IntN(3) {
			case 0:
				if len(c.Spec.Ports) > 0 {
					c.Spec.Ports[0].Port++
				}
			case 1:
				c.Spec.Type = []corev1.ServiceType{corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort}[r.IntN(2)]
			case 2:
				c.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			}
			in.Services[i] = c
		case op == 1 && len(in.Slices) > 0:
			i := r.IntN(len(in.Slices))
			c := in.Slices[i].DeepCopy()
			if len(c.Endpoints) > 0 {
				e := &c.Endpoints[r.IntN(len(c.Endpoints))]
				switch r.IntN(3) {
				case 0:
					ready := e.Conditions.Ready != nil && !*e.Conditions.Ready
					e.Conditions.Ready = &ready
				case 1:
					e.Addresses = []string{fmt.Sprintf("10.244.%d.%d", r.IntN(3), 10+r.IntN(5))}
				case 2:
					node := []string{thisNode, "node-b", ""}[r.IntN(3)]
					e.NodeName = &node
				}
			}
			in.Slices[i] = c
		case op == 2 && len(in.Services) > 0:
			i := r.IntN(len(in.Services))
			in.Services = slices.Delete(in.Services, i, i+1)
		case op == 3 && len(in.Slices) > 0:
			i := r.IntN(len(in.Slices))
			in.Slices = slices.Delete(in.Slices, i, i+1)
		case op == 4:
			// Services and slices from another random input, renamed.
			fresh := randomInput(r)
			for _, s := range fresh.Services {
				s.Name = fmt.Sprintf("%s-%d", s.Name, step)
				in.Services = append(in.Services, s)
			}
			for _, s := range fresh.Slices {
				s.Name = fmt.Sprintf("%s-%d", s.Name, step)
				s.Labels[discoveryv1.LabelServiceName] += fmt.Sprintf("-%d", step)
				in.Slices = append(in.Slices, s)
			}
		case op == 5 && len(in.Slices) > 0:
			// A slice moves to another service.
			i := r.IntN(len(in.Slices))
			c := in.Slices[i].DeepCopy()
			c.Labels[discoveryv1.LabelServiceName] = fmt.Sprintf("svc%d", r.IntN(10))
			in.Slices[i] = c
		case op == 6:
			switch r.IntN(5) {
			case 0:
				in.PodCIDR = []netip.Prefix{{}, netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("10.244.0.0/24")}[r.IntN(3)]
			case 1:
				in.NodeIPs = [][]netip.Addr{nil, {netip.MustParseAddr("192.168.1.11")}}[r.IntN(2)]
			case 2:
				in.NodeName = []string{thisNode, "node-b"}[r.IntN(2)]
			case 3:
				in.MasqueradeRandomFully = !in.MasqueradeRandomFully
			case 4:
				if in.LocalDNS == nil {
					in.LocalDNS = &LocalDNS{VIP: netip.MustParseAddr("10.96.0.10"), Target: netip.MustParseAddrPort("10.244.1.1:53")}
				} else {
					in.LocalDNS = nil
				}
			}
		case op == 7 && len(in.Services) > 0:
			in.Services = append(in.Services, in.Services[r.IntN(len(in.Services))]) // listed twice
		default:
			r.Shuffle(len(in.Services), func(i, j int) { in.Services[i], in.Services[j] = in.Services[j], in.Services[i] })
			r.Shuffle(len(in.Slices), func(i, j int) { in.Slices[i], in.Slices[j] = in.Slices[j], in.Slices[i] })
		}
	}
	return in
}

// TestCacheMatchesCompute: through random sequences of changes, a Cache
// computes exactly what Compute does from scratch.
func TestCacheMatchesCompute(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 4))
	for seq := range 40 {
		var c Cache
		in := randomInput(r)
		var prev Result
		var prevText map[string][]string
		for step := range 25 {
			if step > 0 {
				in = mutate(r, in, step)
			}
			got, want := c.Compute(in), Compute(in)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("sequence %d, step %d: the cache computes\n%s%s%v\nwant\n%s%s%v", seq, step, got.NAT, got.Filter, got.NATChains, want.NAT, want.Filter, want.NATChains)
			}
			// The last result's table shares lines with this one: they
			// must not have changed under it.
			if prevText != nil && !reflect.DeepEqual(tableText(prev.NATTable), prevText) {
				t.Fatalf("sequence %d, step %d: computing changed the last result's NATTable", seq, step)
			}
			prev, prevText = got, tableText(got.NATTable)
		}
	}
}

// TestCacheRendersOnlyChanges: an unchanged input renders nothing again;
// one replaced EndpointSlice renders its service alone; a new node address
// renders everything.
func TestCacheRendersOnlyChanges(t *testing.T) {
	in := scale(300, 10)
	var c Cache
	c.Compute(in)
	if c.renders != 300 {
		t.Fatalf("first compute rendered %d services, want 300", c.renders)
	}
	in.Services, in.Slices = slices.Clone(in.Services), slices.Clone(in.Slices)
	slices.Reverse(in.Services)
	c.Compute(in)
	if c.renders != 300 {
		t.Errorf("the same objects in another order rendered %d services again", c.renders-300)
	}
	moved := in.Slices[7].DeepCopy()
	moved.Endpoints[0].Addresses = []string{"10.200.0.1"}
	in.Slices[7] = moved
	if got, want := c.Compute(in), Compute(in); !reflect.DeepEqual(got, want) {
		t.Fatal("the cache's result differs from Compute's")
	}
	if c.renders != 301 {
		t.Errorf("one changed slice rendered %d services, want 1", c.renders-300)
	}
	in.NodeIPs = []netip.Addr{netip.MustParseAddr("192.168.1.11")}
	c.Compute(in)
	if c.renders != 601 {
		t.Errorf("a new node address rendered %d services, want all 300", c.renders-301)
	}
}

// tableText is a copy of t's lines.
func tableText(t Table) map[string][]string {
	out := map[string][]string{}
	for c, lines := range t.Rules {
		out[c] = nil
		for _, l := range lines {
			out[c] = append(out[c], string(l))
		}
	}
	return out
}
