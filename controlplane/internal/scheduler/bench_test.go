package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// BenchmarkSchedule measures one decision and its assumption, as the
// scheduling loop makes them, on clusters of the sizes that
// already run 6 pods per node (three controllers' worth each).
func BenchmarkSchedule(b *testing.B) {
	for _, nodes := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			c := NewCache()
			for i := range nodes {
				n := mkNode(fmt.Sprintf("node-%05d", i), "64", "256Gi", 1_000_000, func(n *corev1.Node) { n.Labels["zone"] = fmt.Sprintf("z%d", i%3) })
				if i%10 == 0 {
					n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
				}
				c.SetNode(n)
			}
			for i := range nodes * 6 {
				p := mkPod(fmt.Sprintf("old-%d", i), "100m", "128Mi", on(fmt.Sprintf("node-%05d", i%nodes)), ownedBy(fmt.Sprintf("rs-%d", i%3)), hostPortOf(int32(9000+i%2), ""))
				if err := c.AddPod(p); err != nil {
					b.Fatal(err)
				}
			}
			pods := make([]*PodInfo, 1000)
			for i := range pods {
				pi, err := NewPodInfo(mkPod(fmt.Sprintf("new-%d", i), "100m", "128Mi", ownedBy("rs-new")))
				if err != nil {
					b.Fatal(err)
				}
				pods[i] = pi
			}
			rnd := rand.New(rand.NewPCG(1, 2))
			start := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				pi := pods[i%len(pods)]
				c.Lock()
				res, err := Schedule(&c.snap, pi, Options{Start: start, Rand: rnd})
				if err != nil {
					c.Unlock()
					b.Fatal(err)
				}
				start = (start + res.Evaluated) % nodes
				c.AssumeLocked(pi, res.Node)
				c.Unlock()
			}
		})
	}
}
