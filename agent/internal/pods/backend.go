package pods

import (
	"context"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-sh/skiff/agent/internal/containers"
)

// The methods below serve the agent's stream endpoint (logs, exec,
// attach, port-forward). Their errors are Kubernetes API errors, which
// the endpoint passes on.

var podsResource = schema.GroupResource{Resource: "pods"}

// lookup returns the pod and the newest (or, with previous, the one
// before) attempt of its container.
func (m *Manager) lookup(ctx context.Context, ns, name, container string, previous bool) (*corev1.Pod, *containers.ContainerStatus, error) {
	select {
	case <-m.ready:
	default:
		return nil, nil, apierrors.NewServiceUnavailable("the agent is starting")
	}
	pod, err := m.pods.Pods(ns).Get(name)
	if err != nil {
		return nil, nil, apierrors.NewNotFound(podsResource, name)
	}
	init := findContainer(pod, container, false) == nil
	if init && findContainer(pod, container, true) == nil {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", container, name))
	}
	all, err := m.cfg.Runtime.Containers(ctx)
	if err != nil {
		return nil, nil, apierrors.NewInternalError(err)
	}
	var mine []containers.ContainerStatus
	for _, c := range all {
		if c.PodUID == string(pod.UID) {
			mine = append(mine, c)
		}
	}
	sortNewestFirst(mine)
	cur, prev := latest(mine, container, init)
	if previous {
		if prev == nil {
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("previous terminated container %q in pod %q not found", container, name))
		}
		return pod, prev, nil
	}
	if cur == nil {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q is waiting to start: ContainerCreating", container, name))
	}
	return pod, cur, nil
}

// LogPath returns the log file of a container of a pod on this node.
func (m *Manager) LogPath(namespace, pod, container string, previous bool) (string, error) {
	_, c, err := m.lookup(context.Background(), namespace, pod, container, previous)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(c.LogPath); err != nil {
		return "", apierrors.NewNotFound(podsResource, pod)
	}
	return c.LogPath, nil
}

// Exec runs cmd in a running container of a pod on this node.
func (m *Manager) Exec(ctx context.Context, namespace, pod, container string, cmd []string, s containers.Streams) (int, error) {
	_, c, err := m.lookup(ctx, namespace, pod, container, false)
	if err != nil {
		return 0, err
	}
	if c.State != containers.StateRunning {
		return 0, apierrors.NewBadRequest(fmt.Sprintf("container %s is not running", container))
	}
	return m.cfg.Runtime.Exec(ctx, c.ID, cmd, s)
}

// Attach attaches to the main process of a running container.
func (m *Manager) Attach(ctx context.Context, namespace, pod, container string, s containers.Streams) error {
	_, c, err := m.lookup(ctx, namespace, pod, container, false)
	if err != nil {
		return err
	}
	if c.State != containers.StateRunning {
		return apierrors.NewBadRequest(fmt.Sprintf("container %s is not running", container))
	}
	return m.cfg.Runtime.Attach(ctx, c.ID, s)
}

// PodNetNS returns the network namespace of a pod on this node.
func (m *Manager) PodNetNS(namespace, name string) (string, error) {
	pod, err := m.pods.Pods(namespace).Get(name)
	if err != nil {
		return "", apierrors.NewNotFound(podsResource, name)
	}
	sbs, err := m.cfg.Runtime.Sandboxes(context.Background())
	if err != nil {
		return "", apierrors.NewInternalError(err)
	}
	for _, sb := range sbs {
		if sb.PodUID == string(pod.UID) {
			return sb.NetNS, nil
		}
	}
	return "", apierrors.NewBadRequest(fmt.Sprintf("pod %s has no network yet", name))
}

// CheckContainer fails for a container that does not exist or does not
// run, before an exec or attach is upgraded.
func (m *Manager) CheckContainer(namespace, pod, container string) error {
	_, c, err := m.lookup(context.Background(), namespace, pod, container, false)
	if err != nil {
		return err
	}
	if c.State != containers.StateRunning {
		return apierrors.NewBadRequest(fmt.Sprintf("container %s is not running", container))
	}
	return nil
}

// LogActive reports whether the container writing the log at path still
// runs, so that `logs -f` ends once it has exited.
func (m *Manager) LogActive(namespace, pod, container, path string) bool {
	all, err := m.cfg.Runtime.Containers(context.Background())
	if err != nil {
		return true
	}
	for _, c := range all {
		if c.LogPath == path {
			return c.State == containers.StateRunning || c.State == containers.StateCreated
		}
	}
	return false
}
