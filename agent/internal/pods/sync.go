package pods

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/agent/internal/containers"
	"github.com/skiff-sh/skiff/agent/internal/network"
)

// minGrace is the least time a container gets to stop after SIGTERM,
// as the kubelet's minimum.
const minGrace = 2 * time.Second

// sync brings the pod's containers to what its spec and state say. It
// returns when to look again (0: the resync interval) and whether the pod
// is gone and cleaned up, which ends the worker.
func (w *worker) sync(ctx context.Context) (time.Duration, bool) {
	pod, err := w.m.pods.Pods(w.ns).Get(w.name)
	if apierrors.IsNotFound(err) || (err == nil && pod.UID != w.uid) {
		// Deleted from the API (forcefully, or after we confirmed): make
		// sure nothing of it is left.
		if err := w.cleanup(ctx, nil, minGrace); err != nil {
			w.m.log.Warn("pod cleanup failed", "pod", w.ns+"/"+w.name, "err", err)
			return 2 * time.Second, false
		}
		w.removeLogs()
		return 0, true
	}
	if err != nil {
		return time.Second, false
	}
	log := w.m.log.With("pod", w.ns+"/"+w.name)
	all, err := w.m.cfg.Runtime.Containers(ctx)
	if err != nil {
		log.Warn("listing containers failed", "err", err)
		return 2 * time.Second, false
	}
	mine := w.track(all)

	if pod.DeletionTimestamp != nil {
		grace := minGrace
		if pod.DeletionGracePeriodSeconds != nil {
			grace = max(time.Duration(*pod.DeletionGracePeriodSeconds)*time.Second, 0)
		}
		if err := w.cleanup(ctx, pod, grace); err != nil {
			log.Warn("stopping a deleted pod failed", "err", err)
			return 2 * time.Second, false
		}
		// Everything is released: let the API object go.
		zero := int64(0)
		err := w.m.cfg.Client.CoreV1().Pods(w.ns).Delete(ctx, w.name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &w.uid},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			log.Warn("confirming the pod's deletion failed", "err", err)
			return 2 * time.Second, false
		}
		return time.Second, false
	}

	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		if !w.terminated {
			if err := w.release(ctx, pod, mine); err != nil {
				log.Warn("releasing a finished pod failed", "err", err)
				return 2 * time.Second, false
			}
			w.terminated = true
		}
		return 0, false
	}

	next := w.runPod(ctx, pod, mine)
	// The status reflects what run did: look at the runtime again.
	if all, err := w.m.cfg.Runtime.Containers(ctx); err == nil {
		mine = w.track(all)
	}
	status := w.status(pod, mine)
	if err := w.m.updateStatus(ctx, pod, status); err != nil {
		log.Warn("pod status not written", "err", err)
		next = min(next, 2*time.Second)
	}
	if status.Phase == corev1.PodSucceeded || status.Phase == corev1.PodFailed {
		next = time.Millisecond // release its resources now
	}
	return next, false
}

// track returns the pod's containers among all, newest attempt first per
// name, and records their IDs for exit events.
func (w *worker) track(all []containers.ContainerStatus) []containers.ContainerStatus {
	var mine []containers.ContainerStatus
	for _, c := range all {
		if c.PodUID == string(w.uid) {
			mine = append(mine, c)
		}
	}
	sortNewestFirst(mine)
	w.m.mu.Lock()
	for _, c := range mine {
		w.m.byContainer[c.ID] = w.uid
	}
	w.m.mu.Unlock()
	return mine
}

// latest returns the newest attempt of the named container, and the one
// before it.
func latest(mine []containers.ContainerStatus, name string, init bool) (cur, prev *containers.ContainerStatus) {
	for i := range mine {
		if mine[i].Name != name || mine[i].Init != init {
			continue
		}
		if cur == nil {
			cur = &mine[i]
		} else if prev == nil {
			prev = &mine[i]
			break
		}
	}
	return cur, prev
}

// runPod does the next steps of a live pod: sandbox, network, volumes, init
// containers in order, then the app containers. It returns when to look
// again.
func (w *worker) runPod(ctx context.Context, pod *corev1.Pod, mine []containers.ContainerStatus) time.Duration {
	log := w.m.log.With("pod", w.ns+"/"+w.name)
	if w.sandbox == nil {
		sb, err := w.m.cfg.Runtime.CreateSandbox(ctx, containers.SandboxSpec{
			PodUID: string(w.uid), Namespace: w.ns, Name: w.name, Hostname: podHostname(pod), HostNetwork: pod.Spec.HostNetwork,
		})
		if err != nil {
			w.m.cfg.Recorder.Eventf(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
			return 5 * time.Second
		}
		w.sandbox = &sb
	}
	switch {
	case w.sandbox.HostNetwork:
		// The node's network: its address, no CNI, no hostPort mapping
		// (the containers bind the node's ports themselves).
		w.ip = w.m.cfg.NodeIP
	case !w.ip.IsValid():
		ip, err := w.m.cfg.Network.Setup(ctx, string(w.uid), w.ns, w.name, w.sandbox.NetNS, hostPorts(pod))
		if err != nil {
			w.m.cfg.Recorder.Eventf(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to set up the pod network: %v", err)
			return 5 * time.Second
		}
		w.ip = ip
	}
	paths, err := w.m.cfg.Volumes.Setup(ctx, pod)
	if err != nil {
		w.m.cfg.Recorder.Eventf(pod, corev1.EventTypeWarning, "FailedMount", "MountVolume.SetUp failed: %v", err)
		return 5 * time.Second
	}
	if err := w.writeEtcFiles(pod); err != nil {
		log.Warn("pod's /etc files not written", "err", err)
		return 5 * time.Second
	}

	next := time.Duration(0)
	soon := func(d time.Duration) {
		if d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	// Init containers, one at a time, in order, each to completion.
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cur, _ := latest(mine, c.Name, true)
		switch {
		case cur != nil && cur.State == containers.StateExited && cur.ExitCode == 0:
			continue
		case cur != nil && cur.State == containers.StateRunning:
			return next
		case cur != nil && cur.State == containers.StateExited:
			if pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
				return next // the pod has failed (status)
			}
			soon(w.restart(ctx, pod, c, true, cur, paths))
			return next
		default:
			soon(w.start(ctx, pod, c, true, cur, paths))
			return next
		}
	}
	// In order, as the kubelet: a sidecar listed first starts first.
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		cur, _ := latest(mine, c.Name, false)
		soon(w.step(ctx, pod, c, cur, paths))
	}
	return next
}

// step does what app container c needs next.
func (w *worker) step(ctx context.Context, pod *corev1.Pod, c *corev1.Container, cur *containers.ContainerStatus, paths map[string]string) time.Duration {
	switch {
	case cur == nil, cur.State == containers.StateCreated && cur.StartedAt.IsZero():
		return w.start(ctx, pod, c, false, cur, paths)
	case cur.State == containers.StateRunning:
		w.ensureProbes(ctx, pod, c, cur)
		w.mu.Lock()
		why, failed := w.liveFailed[cur.ID]
		w.mu.Unlock()
		if failed {
			w.m.cfg.Recorder.Eventf(pod, corev1.EventTypeNormal, "Killing", "Container %s %s, will be restarted", c.Name, why)
			w.stopProbesOf(cur.ID)
			w.stopContainer(ctx, pod, c, cur.ID, podGrace(pod))
			w.mu.Lock()
			delete(w.liveFailed, cur.ID)
			w.mu.Unlock()
			return time.Millisecond // restart decided with its exit status
		}
		if b := w.backoff[c.Name]; b != nil && w.m.cfg.Now().Sub(cur.StartedAt) > 10*time.Minute {
			delete(w.backoff, c.Name) // ran long enough: the back-off resets
		}
		return 0
	case cur.State == containers.StateExited:
		w.stopProbesOf(cur.ID)
		if !shouldRestart(pod.Spec.RestartPolicy, cur.ExitCode) {
			return 0
		}
		return w.restart(ctx, pod, c, false, cur, paths)
	}
	return time.Second // unknown: look again soon
}

// shouldRestart reports whether an exited container restarts under policy.
func shouldRestart(policy corev1.RestartPolicy, exitCode int32) bool {
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return exitCode != 0
	}
	return true
}

// restart starts the next attempt of an exited container once its
// back-off allows, which doubles with every restart.
func (w *worker) restart(ctx context.Context, pod *corev1.Pod, c *corev1.Container, init bool, cur *containers.ContainerStatus, paths map[string]string) time.Duration {
	now := w.m.cfg.Now()
	b := w.backoff[c.Name]
	if b == nil {
		// The first restart happens at once; the next ones wait.
		b = &backoff{}
		w.backoff[c.Name] = b
	}
	if wait := b.until.Sub(now); wait > 0 {
		w.waiting[c.Name] = waitingReason{"CrashLoopBackOff", fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", b.delay, c.Name, w.name, w.ns, w.uid)}
		return wait
	}
	d := w.start(ctx, pod, c, init, cur, paths)
	if b.delay == 0 {
		b.delay = w.m.cfg.BackoffBase
	} else {
		b.delay = min(2*b.delay, w.m.cfg.BackoffMax)
	}
	b.until = w.m.cfg.Now().Add(b.delay)
	return d
}

// start pulls c's image and creates and starts its next attempt.
func (w *worker) start(ctx context.Context, pod *corev1.Pod, c *corev1.Container, init bool, cur *containers.ContainerStatus, paths map[string]string) time.Duration {
	rec := w.m.cfg.Recorder
	attempt := 0
	if cur != nil {
		attempt = cur.Attempt + 1
		if cur.State == containers.StateCreated {
			// Created but never started (the agent stopped in between):
			// start that one.
			attempt = cur.Attempt
		}
	}
	img, err := w.pull(ctx, pod, c)
	if err != nil {
		return 5 * time.Second
	}
	var id string
	if cur != nil && cur.State == containers.StateCreated {
		id = cur.ID
	} else {
		spec, err := w.m.containerSpec(ctx, pod, c, init, attempt, img, paths, w.ip)
		if err != nil {
			w.waiting[c.Name] = waitingReason{"CreateContainerConfigError", err.Error()}
			rec.Eventf(pod, corev1.EventTypeWarning, "Failed", "Error: %v", err)
			return 5 * time.Second
		}
		id, err = w.m.cfg.Runtime.CreateContainer(ctx, *w.sandbox, spec)
		if err != nil {
			w.waiting[c.Name] = waitingReason{"CreateContainerError", err.Error()}
			rec.Eventf(pod, corev1.EventTypeWarning, "Failed", "Error: %v", err)
			return 5 * time.Second
		}
		w.m.mu.Lock()
		w.m.byContainer[id] = w.uid
		w.m.mu.Unlock()
		rec.Eventf(pod, corev1.EventTypeNormal, "Created", "Created container %s", c.Name)
	}
	if err := w.m.cfg.Runtime.StartContainer(ctx, id); err != nil {
		w.waiting[c.Name] = waitingReason{"RunContainerError", err.Error()}
		rec.Eventf(pod, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		return 5 * time.Second
	}
	delete(w.waiting, c.Name)
	rec.Eventf(pod, corev1.EventTypeNormal, "Started", "Started container %s", c.Name)
	w.pruneAttempts(ctx, c.Name, init, attempt)
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		if msg, err := w.m.runHook(ctx, pod, c, id, w.ip, c.Lifecycle.PostStart); err != nil {
			rec.Eventf(pod, corev1.EventTypeWarning, "FailedPostStartHook", "PostStartHook failed: %v %s", err, msg)
			w.stopProbesOf(id)
			w.stopContainer(ctx, pod, c, id, minGrace)
		}
	}
	return 0
}

// pull makes sure c's image is there as its imagePullPolicy says; a
// failure becomes c's waiting reason and an event.
func (w *worker) pull(ctx context.Context, pod *corev1.Pod, c *corev1.Container) (containers.Image, error) {
	rec := w.m.cfg.Recorder
	creds, err := w.m.pullCredentials(ctx, pod)
	if err != nil {
		rec.Eventf(pod, corev1.EventTypeWarning, "FailedToRetrieveImagePullSecret", "Unable to retrieve some image pull secrets; attempting to pull the image may not succeed: %v", err)
	}
	img, err := w.m.cfg.Runtime.EnsureImage(ctx, c.Image, c.ImagePullPolicy, creds)
	if err == nil {
		return img, nil
	}
	var ie *containers.ImageError
	if errors.As(err, &ie) {
		reason := ie.Reason
		if prev, ok := w.waiting[c.Name]; ok && reason == "ErrImagePull" && (prev.reason == "ErrImagePull" || prev.reason == "ImagePullBackOff") {
			reason = "ImagePullBackOff"
		}
		w.waiting[c.Name] = waitingReason{reason, ie.Message}
		if ie.Reason == "ErrImageNeverPull" {
			rec.Eventf(pod, corev1.EventTypeWarning, "ErrImageNeverPull", "%s", ie.Message)
		} else {
			rec.Eventf(pod, corev1.EventTypeWarning, "Failed", "Failed to pull image %q: %s", c.Image, ie.Message)
		}
		return img, err
	}
	w.waiting[c.Name] = waitingReason{"ErrImagePull", err.Error()}
	rec.Eventf(pod, corev1.EventTypeWarning, "Failed", "Failed to pull image %q: %v", c.Image, err)
	return img, err
}

// pruneAttempts removes attempts of a container older than the one
// before the current (`kubectl logs --previous` needs that one).
func (w *worker) pruneAttempts(ctx context.Context, name string, init bool, current int) {
	all, err := w.m.cfg.Runtime.Containers(ctx)
	if err != nil {
		return
	}
	for _, c := range all {
		if c.PodUID == string(w.uid) && c.Name == name && c.Init == init && c.Attempt < current-1 {
			if err := w.m.cfg.Runtime.RemoveContainer(ctx, c.ID); err == nil && c.LogPath != "" {
				os.Remove(c.LogPath)
			}
		}
	}
}

// stopContainer runs c's preStop hook, then stops it within grace.
func (w *worker) stopContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id string, grace time.Duration) {
	start := w.m.cfg.Now()
	if c != nil && c.Lifecycle != nil && c.Lifecycle.PreStop != nil && grace > 0 {
		hctx, cancel := context.WithTimeout(ctx, grace)
		if msg, err := w.m.runHook(hctx, pod, c, id, w.ip, c.Lifecycle.PreStop); err != nil {
			w.m.cfg.Recorder.Eventf(pod, corev1.EventTypeWarning, "FailedPreStopHook", "PreStopHook failed: %v %s", err, msg)
		}
		cancel()
	}
	left := max(grace-w.m.cfg.Now().Sub(start), minGrace)
	if grace == 0 {
		left = 0
	}
	if err := w.m.cfg.Runtime.StopContainer(ctx, id, left); err != nil {
		w.m.log.Warn("stopping container failed", "pod", w.ns+"/"+w.name, "container", id, "err", err)
	}
}

// killAll stops every running container of the pod, all at once, each
// within grace after its preStop hook.
func (w *worker) killAll(ctx context.Context, pod *corev1.Pod, mine []containers.ContainerStatus, grace time.Duration) {
	var wg sync.WaitGroup
	for _, cs := range mine {
		if cs.State != containers.StateRunning {
			continue
		}
		w.stopProbesOf(cs.ID)
		var spec *corev1.Container
		if pod != nil {
			spec = findContainer(pod, cs.Name, cs.Init)
			w.m.cfg.Recorder.Eventf(pod, corev1.EventTypeNormal, "Killing", "Stopping container %s", cs.Name)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.stopContainer(ctx, pod, spec, cs.ID, grace)
		}()
	}
	wg.Wait()
}

// release stops a finished pod's containers and frees its IP and
// sandbox; its containers and logs stay until the pod is deleted.
func (w *worker) release(ctx context.Context, pod *corev1.Pod, mine []containers.ContainerStatus) error {
	w.stopProbes()
	w.killAll(ctx, pod, mine, podGrace(pod))
	return w.teardownSandbox(ctx)
}

// cleanup stops and removes everything of the pod: containers, network,
// sandbox, volumes, per-pod files. pod is nil when the API object is gone.
func (w *worker) cleanup(ctx context.Context, pod *corev1.Pod, grace time.Duration) error {
	w.stopProbes()
	all, err := w.m.cfg.Runtime.Containers(ctx)
	if err != nil {
		return err
	}
	mine := w.track(all)
	w.killAll(ctx, pod, mine, grace)
	if pod != nil {
		if err := w.recordTerminal(ctx, pod); err != nil {
			return err
		}
	}
	var errs []error
	for _, c := range mine {
		if err := w.m.cfg.Runtime.RemoveContainer(ctx, c.ID); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, w.teardownSandbox(ctx))
	errs = append(errs, w.m.cfg.Volumes.Teardown(ctx, string(w.uid)))
	if err := os.RemoveAll(filepath.Join(w.m.cfg.PodsDir, string(w.uid))); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// recordTerminal writes a deleted pod's last status once its containers
// stopped, as the kubelet does: a terminal phase (Succeeded when every
// container exited 0, else Failed), so that what counts finished pods (a
// Job replacing only failed ones) sees how it ended. A pod already
// terminal keeps its phase.
func (w *worker) recordTerminal(ctx context.Context, pod *corev1.Pod) error {
	all, err := w.m.cfg.Runtime.Containers(ctx)
	if err != nil {
		return err
	}
	st := w.status(pod, w.track(all))
	if st.Phase != corev1.PodSucceeded && st.Phase != corev1.PodFailed {
		st.Phase = corev1.PodSucceeded
		for _, cs := range st.ContainerStatuses {
			if t := cs.State.Terminated; t == nil || t.ExitCode != 0 {
				st.Phase = corev1.PodFailed
			}
		}
	}
	err = w.m.updateStatus(ctx, pod, st)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// teardownSandbox frees the pod's IP and removes its namespaces. A pod on
// the node's network has no attachment: the node's namespace is never
// handed to the network's teardown.
func (w *worker) teardownSandbox(ctx context.Context) error {
	netns, hostNetwork := "", false
	if w.sandbox != nil {
		netns, hostNetwork = w.sandbox.NetNS, w.sandbox.HostNetwork
	} else if sbs, err := w.m.cfg.Runtime.Sandboxes(ctx); err == nil {
		for _, sb := range sbs {
			if sb.PodUID == string(w.uid) {
				netns, hostNetwork = sb.NetNS, sb.HostNetwork
			}
		}
	}
	if !hostNetwork {
		if err := w.m.cfg.Network.Teardown(ctx, string(w.uid), netns); err != nil {
			return err
		}
	}
	w.ip = netip.Addr{}
	if err := w.m.cfg.Runtime.RemoveSandbox(ctx, string(w.uid)); err != nil {
		return err
	}
	w.sandbox = nil
	return nil
}

// removeLogs removes the pod's log directory once the pod is gone.
func (w *worker) removeLogs() {
	os.RemoveAll(w.m.podLogDir(w.ns, w.name, string(w.uid)))
}

// findContainer returns the pod's container (or init container) named.
func findContainer(pod *corev1.Pod, name string, init bool) *corev1.Container {
	list := pod.Spec.Containers
	if init {
		list = pod.Spec.InitContainers
	}
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

// podGrace is the pod's terminationGracePeriodSeconds (30 s by default).
func podGrace(pod *corev1.Pod) time.Duration {
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// hostPorts returns the pod's hostPort mappings for the network.
func hostPorts(pod *corev1.Pod) []network.HostPort {
	var out []network.HostPort
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			proto := string(p.Protocol)
			if proto == "" {
				proto = "TCP"
			}
			out = append(out, network.HostPort{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: proto, HostIP: p.HostIP})
		}
	}
	return out
}

// podLogDir is where the pod's containers' logs go.
func (m *Manager) podLogDir(ns, name, uid string) string {
	return filepath.Join(m.cfg.LogDir, ns+"_"+name+"_"+uid)
}

// logPath is the log file of one attempt of a container.
func (m *Manager) logPath(pod *corev1.Pod, container string, attempt int) string {
	return filepath.Join(m.podLogDir(pod.Namespace, pod.Name, string(pod.UID)), container, strconv.Itoa(attempt)+".log")
}
