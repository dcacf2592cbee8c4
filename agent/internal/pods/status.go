package pods

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/agent/internal/containers"
)

// status computes the pod's status from its containers as they are now.
func (w *worker) status(pod *corev1.Pod, mine []containers.ContainerStatus) corev1.PodStatus {
	st := *pod.Status.DeepCopy()
	now := metav1.NewTime(w.m.cfg.Now())
	if st.StartTime == nil {
		st.StartTime = &now
	}
	st.HostIP = w.m.cfg.NodeIP.String()
	st.HostIPs = []corev1.HostIP{{IP: st.HostIP}}
	if w.ip.IsValid() {
		st.PodIP = w.ip.String()
		st.PodIPs = []corev1.PodIP{{IP: st.PodIP}}
	}
	initDone := true
	initFailed := false
	st.InitContainerStatuses = nil
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cs := w.containerStatus(pod, c, true, mine, !initDone)
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
		switch {
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0:
		case cs.State.Terminated != nil || (cs.LastTerminationState.Terminated != nil && cs.State.Waiting != nil):
			initFailed = true
			initDone = false
		default:
			initDone = false
		}
	}
	st.ContainerStatuses = nil
	allReady := true
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		cs := w.containerStatus(pod, c, false, mine, !initDone)
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		allReady = allReady && cs.Ready
	}
	st.Phase = phase(pod, &st, initDone, initFailed)
	if st.Phase == corev1.PodFailed || st.Phase == corev1.PodSucceeded {
		allReady = false
	}
	cond := func(t corev1.PodConditionType, ok bool, reason, msg string) {
		s := corev1.ConditionFalse
		if ok {
			s, reason, msg = corev1.ConditionTrue, "", ""
		}
		setCondition(&st, corev1.PodCondition{Type: t, Status: s, Reason: reason, Message: msg, LastTransitionTime: now})
	}
	cond(corev1.PodReadyToStartContainers, w.ip.IsValid() && st.Phase != corev1.PodSucceeded && st.Phase != corev1.PodFailed, "", "")
	notInit := fmt.Sprintf("containers with incomplete status: %v", incomplete(st.InitContainerStatuses))
	if st.Phase == corev1.PodSucceeded {
		cond(corev1.PodInitialized, true, "PodCompleted", "")
	} else {
		cond(corev1.PodInitialized, initDone, "ContainersNotInitialized", notInit)
	}
	unready := fmt.Sprintf("containers with unready status: %v", unreadyNames(st.ContainerStatuses))
	reason := "ContainersNotReady"
	if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		reason = "PodCompleted"
		unready = ""
	}
	cond(corev1.ContainersReady, allReady, reason, unready)
	gates := true
	for _, g := range pod.Spec.ReadinessGates {
		ok := false
		for _, c := range st.Conditions {
			ok = ok || (c.Type == g.ConditionType && c.Status == corev1.ConditionTrue)
		}
		gates = gates && ok
	}
	if allReady && !gates {
		cond(corev1.PodReady, false, "ReadinessGatesNotReady", "corresponding condition of pod readiness gate is not ready")
	} else {
		cond(corev1.PodReady, allReady && gates, reason, unready)
	}
	return st
}

// containerStatus is one container's status; pending is set while the
// pod's init containers have not all succeeded.
func (w *worker) containerStatus(pod *corev1.Pod, c *corev1.Container, init bool, mine []containers.ContainerStatus, pending bool) corev1.ContainerStatus {
	cur, prev := latest(mine, c.Name, init)
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image}
	f := false
	cs.Started = &f
	if cur == nil {
		reason := "ContainerCreating"
		if pending && !init {
			reason = "PodInitializing"
		}
		var msg string
		if wr, ok := w.waiting[c.Name]; ok {
			reason, msg = wr.reason, wr.message
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: msg}
		return cs
	}
	cs.ContainerID = "containerd://" + cur.ID
	cs.ImageID = cur.Image.RepoDigest
	if cs.ImageID == "" {
		cs.ImageID = cur.Image.ID
	}
	cs.RestartCount = int32(cur.Attempt)
	if prev != nil && prev.State == containers.StateExited {
		cs.LastTerminationState.Terminated = terminated(prev)
	}
	switch cur.State {
	case containers.StateRunning:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(cur.StartedAt)}
		w.mu.Lock()
		started := c.StartupProbe == nil || w.started[cur.ID]
		ready := started && (c.ReadinessProbe == nil || w.readiness[cur.ID])
		w.mu.Unlock()
		cs.Started, cs.Ready = &started, ready
	case containers.StateExited:
		term := terminated(cur)
		if wr, ok := w.waiting[c.Name]; ok && wr.reason == "CrashLoopBackOff" && shouldRestart(pod.Spec.RestartPolicy, cur.ExitCode) {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: wr.reason, Message: wr.message}
			cs.LastTerminationState.Terminated = term
		} else {
			cs.State.Terminated = term
		}
	default:
		reason := "ContainerCreating"
		var msg string
		if wr, ok := w.waiting[c.Name]; ok {
			reason, msg = wr.reason, wr.message
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: msg}
	}
	return cs
}

func terminated(c *containers.ContainerStatus) *corev1.ContainerStateTerminated {
	reason := c.Reason
	if reason == "" {
		reason = "Error"
		if c.ExitCode == 0 {
			reason = "Completed"
		}
	}
	return &corev1.ContainerStateTerminated{
		ExitCode: c.ExitCode, Reason: reason,
		StartedAt: metav1.NewTime(c.StartedAt), FinishedAt: metav1.NewTime(c.FinishedAt),
		ContainerID: "containerd://" + c.ID,
	}
}

// phase is the pod phase the kubelet derives from its containers.
func phase(pod *corev1.Pod, st *corev1.PodStatus, initDone, initFailed bool) corev1.PodPhase {
	policy := pod.Spec.RestartPolicy
	if !initDone {
		if initFailed && policy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodPending
	}
	var running, waiting, stopped, succeeded int
	for _, cs := range st.ContainerStatuses {
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil && cs.LastTerminationState.Terminated != nil:
			stopped++
		default:
			waiting++
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped > 0:
		switch {
		case policy == corev1.RestartPolicyAlways:
			return corev1.PodRunning
		case stopped == succeeded:
			return corev1.PodSucceeded
		case policy == corev1.RestartPolicyOnFailure:
			return corev1.PodRunning
		}
		return corev1.PodFailed
	}
	return corev1.PodPending
}

// setCondition sets c in st, keeping the transition time when the status
// did not change.
func setCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type != c.Type {
			continue
		}
		if st.Conditions[i].Status == c.Status {
			c.LastTransitionTime = st.Conditions[i].LastTransitionTime
		}
		st.Conditions[i] = c
		return
	}
	st.Conditions = append(st.Conditions, c)
}

func incomplete(list []corev1.ContainerStatus) []string {
	var out []string
	for _, cs := range list {
		if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
			out = append(out, cs.Name)
		}
	}
	return out
}

func unreadyNames(list []corev1.ContainerStatus) []string {
	var out []string
	for _, cs := range list {
		if !cs.Ready {
			out = append(out, cs.Name)
		}
	}
	return out
}

// updateStatus writes status when it differs from the pod's, retrying on
// a conflict with the latest object.
func (m *Manager) updateStatus(ctx context.Context, pod *corev1.Pod, status corev1.PodStatus) error {
	if equality.Semantic.DeepEqual(pod.Status, status) {
		return nil
	}
	pods := m.cfg.Client.CoreV1().Pods(pod.Namespace)
	p := pod.DeepCopy()
	p.Status = status
	_, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if !apierrors.IsConflict(err) {
		return err
	}
	cur, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if cur.UID != pod.UID {
		return nil
	}
	// Keep conditions others own (readiness gates, DisruptionTarget).
	for _, c := range cur.Status.Conditions {
		found := false
		for _, s := range status.Conditions {
			found = found || s.Type == c.Type
		}
		if !found {
			status.Conditions = append(status.Conditions, c)
		}
	}
	cur.Status = status
	_, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	return err
}
