package pods

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-sh/skiff/agent/internal/containers"
)

var everything = labels.Everything()

// worker syncs one pod. Its fields without a comment are owned by its
// goroutine; mu guards the probe results that probe goroutines write.
type worker struct {
	m        *Manager
	uid      types.UID
	ns, name string
	wakeCh   chan struct{}
	done     chan struct{}

	// backoff is per container name: when its next restart may happen.
	backoff map[string]*backoff
	// waiting is per container name: why it is not running yet (image
	// pull failures, config errors), for its status.
	waiting map[string]waitingReason
	sandbox *containers.Sandbox
	ip      netip.Addr
	// terminated is set once a finished pod's resources are released.
	terminated bool
	// probes are the probe runners of the current containers, by
	// container ID.
	probes map[string]*probeSet

	mu sync.Mutex
	// readiness, started and liveFailed are probe results by container ID.
	readiness  map[string]bool
	started    map[string]bool
	liveFailed map[string]string
}

type waitingReason struct{ reason, message string }

type backoff struct {
	delay time.Duration
	until time.Time
}

func newWorker(m *Manager, uid types.UID, ns, name string) *worker {
	return &worker{
		m: m, uid: uid, ns: ns, name: name,
		wakeCh: make(chan struct{}, 1), done: make(chan struct{}),
		backoff: map[string]*backoff{}, waiting: map[string]waitingReason{},
		probes:    map[string]*probeSet{},
		readiness: map[string]bool{}, started: map[string]bool{}, liveFailed: map[string]string{},
	}
}

// trigger asks for a sync; it never blocks.
func (w *worker) trigger() {
	select {
	case w.wakeCh <- struct{}{}:
	default:
	}
}

// run syncs the pod whenever triggered, and again when a sync asks for a
// later look, until the pod is gone or ctx ends.
func (w *worker) run(ctx context.Context) {
	defer close(w.done)
	defer w.stopProbes()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wakeCh:
		case <-timer.C:
		}
		next, gone := w.sync(ctx)
		if gone {
			w.m.forget(w.uid)
			return
		}
		if next <= 0 {
			next = w.m.cfg.ResyncInterval
		}
		timer.Reset(next)
	}
}
