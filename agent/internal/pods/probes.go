package pods

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-sh/skiff/agent/internal/containers"
)

// probeSet runs the probes of one container.
type probeSet struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (w *worker) ensureProbes(ctx context.Context, pod *corev1.Pod, c *corev1.Container, cur *containers.ContainerStatus) {
}

func (w *worker) stopProbesOf(id string) {}

func (w *worker) stopProbes() {}
