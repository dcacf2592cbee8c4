package apitest_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

// BenchmarkAPICreateConfigMap is the API server's cost per create of a
// 1 KiB ConfigMap on one master (no replication, no TLS), from 16
// concurrent protobuf clients: the CPU per create that `make bench`'s
// three-master figure multiplies.
func BenchmarkAPICreateConfigMap(b *testing.B) {
	cfg := rest.CopyConfig(apitest.Start(b))
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.QPS, cfg.Burst = -1, 0
	cs := kubernetes.NewForConfigOrDie(cfg)
	payload := strings.Repeat("x", 1024)
	var n atomic.Int64
	b.SetParallelism(8) // 16 clients on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", n.Add(1))}, Data: map[string]string{"payload": payload}}
			if _, err := cs.CoreV1().ConfigMaps("default").Create(b.Context(), cm, metav1.CreateOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
