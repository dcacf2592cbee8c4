package pods

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-sh/skiff/agent/internal/containers"
	"github.com/skiff-sh/skiff/agent/internal/probe"
)

// probeSet runs the probes of one started container.
type probeSet struct {
	w      *probe.Worker
	cancel context.CancelFunc
	done   chan struct{}
}

// ensureProbes starts the probes of a running container that has any and
// has none running yet. Results land in the worker's maps and wake it.
func (w *worker) ensureProbes(ctx context.Context, pod *corev1.Pod, c *corev1.Container, cur *containers.ContainerStatus) {
	if c.LivenessProbe == nil && c.ReadinessProbe == nil && c.StartupProbe == nil {
		return
	}
	if _, ok := w.probes[cur.ID]; ok {
		return
	}
	id := cur.ID
	rt := w.m.cfg.Runtime
	cfg := probe.DefaultConfig()
	cfg.Container, cfg.StartedAt, cfg.Logger = c, cur.StartedAt, w.m.log
	cfg.Target = probe.Target{
		PodIP: w.ip.String(),
		Exec: func(ctx context.Context, cmd []string) (int, []byte, error) {
			var out outputBuffer
			code, err := rt.Exec(ctx, id, cmd, containers.Streams{Stdout: &out, Stderr: &out})
			return code, out.Bytes(), err
		},
	}
	name := c.Name
	cfg.OnUpdate = func(u probe.Update) {
		if u.Probe.Status == probe.Failure {
			w.m.cfg.Recorder.Eventf(pod, corev1.EventTypeWarning, "Unhealthy", "%s probe failed: %s", u.Kind, u.Probe.Message)
		}
		if !u.Changed {
			return
		}
		ok := u.Result.Status == probe.Success
		w.mu.Lock()
		switch u.Kind {
		case probe.Readiness:
			w.readiness[id] = ok
		case probe.Startup:
			w.started[id] = ok
			if u.Result.Status == probe.Failure {
				w.liveFailed[id] = "failed startup probe"
			}
		case probe.Liveness:
			if u.Result.Status == probe.Failure {
				w.liveFailed[id] = "failed liveness probe"
			}
		}
		w.mu.Unlock()
		w.m.log.Debug("probe result changed", "pod", w.ns+"/"+w.name, "container", name, "probe", u.Kind, "result", u.Result.Status)
		w.trigger()
	}
	pw, err := probe.New(cfg)
	if err != nil {
		w.m.log.Warn("probes not started", "pod", w.ns+"/"+w.name, "container", name, "err", err)
		return
	}
	pctx, cancel := context.WithCancel(ctx)
	ps := &probeSet{w: pw, cancel: cancel, done: make(chan struct{})}
	w.probes[id] = ps
	go func() {
		defer close(ps.done)
		pw.Run(pctx)
	}()
}

// stopProbesOf stops the probes of one container and forgets its results.
func (w *worker) stopProbesOf(id string) {
	if ps, ok := w.probes[id]; ok {
		ps.cancel()
		<-ps.done
		delete(w.probes, id)
	}
	w.mu.Lock()
	delete(w.readiness, id)
	delete(w.started, id)
	delete(w.liveFailed, id)
	w.mu.Unlock()
}

// stopProbes stops every probe of the pod.
func (w *worker) stopProbes() {
	for id := range w.probes {
		w.stopProbesOf(id)
	}
}
