// Package pods is the agent's pod lifecycle, the heart of its kubelet: it
// watches the Pods bound to its node and turns each into a sandbox (the
// namespaces the pod's containers share), a network interface, volumes
// and containers, restarts them as the pod's restartPolicy says (with
// exponential back-off), runs their probes and hooks, stops them
// gracefully, and reports the pod's true status to the API.
//
// Use: New(cfg), then Run(ctx). Each pod has one worker goroutine that
// syncs it whenever something about it changes (the Pod object, a
// container exit, a probe result, a back-off expiring) — syncs of one pod
// never overlap. Everything a sync does is computed from the runtime's
// current state, so a restarted agent adopts the containers it finds
// (same containers, same IPs) and cleans up what belongs to pods that are
// gone. Manager also serves the agent's stream endpoint (logs, exec,
// attach, port-forward) through LogPath, Exec, Attach and PodNetNS.
package pods

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-sh/skiff/agent/internal/containers"
	"github.com/skiff-sh/skiff/agent/internal/network"
)

// Runtime runs sandboxes and containers (containers.Runtime).
type Runtime interface {
	EnsureImage(ctx context.Context, ref string, policy corev1.PullPolicy, creds containers.Credentials) (containers.Image, error)
	CreateSandbox(ctx context.Context, spec containers.SandboxSpec) (containers.Sandbox, error)
	Sandboxes(ctx context.Context) ([]containers.Sandbox, error)
	RemoveSandbox(ctx context.Context, podUID string) error
	CreateContainer(ctx context.Context, sb containers.Sandbox, spec containers.ContainerSpec) (string, error)
	StartContainer(ctx context.Context, id string) error
	StopContainer(ctx context.Context, id string, grace time.Duration) error
	RemoveContainer(ctx context.Context, id string) error
	Containers(ctx context.Context) ([]containers.ContainerStatus, error)
	Exec(ctx context.Context, id string, cmd []string, s containers.Streams) (int, error)
	Attach(ctx context.Context, id string, s containers.Streams) error
	Exits() <-chan string
}

// Network gives pods their interface (network.Network).
type Network interface {
	Setup(ctx context.Context, podUID, namespace, name, netnsPath string, ports []network.HostPort) (netip.Addr, error)
	Teardown(ctx context.Context, podUID, netnsPath string) error
}

// Volumes prepares pods' volumes on the host.
type Volumes interface {
	// Setup prepares every volume of pod and returns their host paths by
	// volume name.
	Setup(ctx context.Context, pod *corev1.Pod) (map[string]string, error)
	// Mounts returns the bind mounts of container c for the paths Setup
	// returned.
	Mounts(pod *corev1.Pod, c *corev1.Container, paths map[string]string, env map[string]string) ([]containers.Mount, error)
	// Refresh projects configMap, secret and downwardAPI volumes again.
	Refresh(ctx context.Context, pod *corev1.Pod) error
	// Teardown removes the volumes of the pod with podUID.
	Teardown(ctx context.Context, podUID string) error
}

// Config configures a Manager.
type Config struct {
	Client   kubernetes.Interface
	NodeName string
	// NodeIP is status.hostIP of the node's pods.
	NodeIP  netip.Addr
	Runtime Runtime
	Network Network
	Volumes Volumes
	// Recorder records the pods' events (source component "kubelet").
	Recorder record.EventRecorder
	// LogDir holds containers' logs: LogDir/<ns>_<pod>_<uid>/<container>/<attempt>.log.
	LogDir string
	// PodsDir holds per-pod files: PodsDir/<uid>/etc-hosts, resolv.conf.
	PodsDir string
	// ClusterDNS are the nameservers of ClusterFirst pods, ClusterDomain
	// their search domain's base; with no ClusterDNS, ClusterFirst pods
	// get the host's resolv.conf, as the kubelet does.
	ClusterDNS    []string
	ClusterDomain string
	// HostResolvConf is the host's resolver configuration.
	HostResolvConf string
	// HostHostsFile is the host's /etc/hosts, which pods on the node's
	// network get.
	HostHostsFile string
	// BackoffBase and BackoffMax bound the restart back-off of crashing
	// containers (10 s doubling up to 5 min on the kubelet).
	BackoffBase, BackoffMax time.Duration
	// ResyncInterval is how often every pod is synced even when nothing
	// changed (volumes refreshed, status checked).
	ResyncInterval time.Duration
	Logger         *slog.Logger
	Now            func() time.Time
}

// DefaultConfig returns a Config without Client, NodeName, NodeIP,
// Runtime, Network, Volumes, Recorder and directories.
func DefaultConfig() Config {
	return Config{
		ClusterDomain: "cluster.local", HostResolvConf: "/etc/resolv.conf", HostHostsFile: "/etc/hosts",
		BackoffBase: 10 * time.Second, BackoffMax: 5 * time.Minute,
		ResyncInterval: 30 * time.Second,
		Logger:         slog.Default(), Now: time.Now,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Runtime == nil || c.Network == nil || c.Volumes == nil || c.Recorder == nil:
		return errors.New("pods: config: Client, Runtime, Network, Volumes and Recorder are required")
	case c.Logger == nil || c.Now == nil:
		return errors.New("pods: config: Logger and Now are required")
	case c.NodeName == "" || !c.NodeIP.IsValid():
		return errors.New("pods: config: NodeName and NodeIP are required")
	case c.LogDir == "" || c.PodsDir == "":
		return errors.New("pods: config: LogDir and PodsDir are required")
	case c.BackoffBase <= 0 || c.BackoffMax < c.BackoffBase || c.ResyncInterval <= 0:
		return errors.New("pods: config: BackoffBase, BackoffMax and ResyncInterval must be positive, BackoffMax ≥ BackoffBase")
	}
	return nil
}

// Manager runs the pods of one node.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	pods   listerscorev1.PodLister
	synced cache.InformerSynced
	// services (every namespace's) give containers their service
	// variables.
	services       listerscorev1.ServiceLister
	servicesSynced cache.InformerSynced

	mu      sync.Mutex
	workers map[types.UID]*worker
	// byContainer maps runtime container IDs to their pod, for exits.
	byContainer map[string]types.UID
	// ready is closed once the informer has synced.
	ready chan struct{}
}

// New returns a Manager for cfg.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Manager{
		cfg: cfg, log: cfg.Logger,
		workers: map[types.UID]*worker{}, byContainer: map[string]types.UID{},
		ready: make(chan struct{}),
	}, nil
}

// Run runs the node's pods until ctx ends, then returns once every worker
// has stopped. Containers keep running when the agent stops: a restarted
// agent adopts them.
func (m *Manager) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(m.cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", m.cfg.NodeName).String()
		}))
	inf := factory.Core().V1().Pods()
	m.pods, m.synced = inf.Lister(), inf.Informer().HasSynced
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { m.podChanged(ctx, obj) },
		UpdateFunc: func(_, obj any) { m.podChanged(ctx, obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			m.podChanged(ctx, obj)
		},
	}); err != nil {
		return fmt.Errorf("pods: %w", err)
	}
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		// No worker starts once ctx is done (wake checks). Wait for them
		// without holding mu: a worker mid-sync takes it to record its
		// containers (track), and waiting under it deadlocked.
		m.mu.Lock()
		workers := make([]*worker, 0, len(m.workers))
		for _, w := range m.workers {
			workers = append(workers, w)
		}
		m.mu.Unlock()
		for _, w := range workers {
			<-w.done
		}
	}()
	svcFactory := informers.NewSharedInformerFactory(m.cfg.Client, 0)
	svcInf := svcFactory.Core().V1().Services()
	m.services, m.servicesSynced = svcInf.Lister(), svcInf.Informer().HasSynced
	svcFactory.Start(ctx.Done())
	defer svcFactory.Shutdown()
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	// The services too: a container created before they are known would
	// fail its environment (errServicesNotSynced) and wait for a retry.
	if !cache.WaitForCacheSync(ctx.Done(), m.synced, m.servicesSynced) {
		return nil
	}
	close(m.ready)
	wg.Add(2)
	go func() { defer wg.Done(); m.watchExits(ctx) }()
	go func() { defer wg.Done(); m.housekeeping(ctx) }()
	<-ctx.Done()
	return nil
}

// podChanged wakes the pod's worker, starting one for a pod new to us.
func (m *Manager) podChanged(ctx context.Context, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	m.wake(ctx, pod.UID, pod.Namespace, pod.Name)
}

// wake triggers a sync of the pod with uid, starting its worker when it
// has none.
func (m *Manager) wake(ctx context.Context, uid types.UID, ns, name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.workers[uid]
	if !ok {
		if ctx.Err() != nil {
			return
		}
		w = newWorker(m, uid, ns, name)
		m.workers[uid] = w
		go w.run(ctx)
	}
	w.trigger()
}

// forget drops the worker of a pod whose everything has been cleaned up.
func (m *Manager) forget(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.workers, uid)
	for id, u := range m.byContainer {
		if u == uid {
			delete(m.byContainer, id)
		}
	}
}

// watchExits wakes the worker of a pod whose container exited.
func (m *Manager) watchExits(ctx context.Context) {
	exits := m.cfg.Runtime.Exits()
	for {
		select {
		case <-ctx.Done():
			return
		case id, ok := <-exits:
			if !ok {
				return
			}
			m.mu.Lock()
			uid, known := m.byContainer[id]
			w := m.workers[uid]
			m.mu.Unlock()
			if known && w != nil {
				w.trigger()
			}
		}
	}
}

// housekeeping removes, now and then, what belongs to pods that are gone
// (deleted while the agent was down, or forcefully), and resyncs every
// pod.
func (m *Manager) housekeeping(ctx context.Context) {
	t := time.NewTicker(m.cfg.ResyncInterval)
	defer t.Stop()
	for {
		m.cleanupOrphans(ctx)
		pods, _ := m.pods.List(everything)
		for _, p := range pods {
			m.wake(ctx, p.UID, p.Namespace, p.Name)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Ready is closed once the manager knows the node's pods.
func (m *Manager) Ready() <-chan struct{} { return m.ready }
