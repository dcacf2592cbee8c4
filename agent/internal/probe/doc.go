// Package probe runs containers' liveness, readiness and startup probes the
// way the kubelet does: one check (exec, httpGet, tcpSocket, grpc) with
// Check, and the per-container state machine (initial delay, period,
// timeout, success and failure thresholds, the startup probe gating the
// other two) with a Worker.
//
// Call sequence, per running container (one Worker per container start):
//
//	w, _ := probe.New(probe.Config{Container: &c, Target: probe.Target{PodIP: ip, Exec: execFn},
//		StartedAt: started, OnUpdate: func(u probe.Update) { ... }})
//	go w.Run(ctx)          // until the container stops or is restarted: cancel ctx
//	w.Started(), w.Ready() // read by the pod status loop at any time
//
// A liveness or startup result of Failure (failureThreshold consecutive
// failures) means the container must be restarted; the Worker stops
// probing that kind and waits for its context to end.
package probe
