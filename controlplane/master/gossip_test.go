package master

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
	"github.com/skiff-sh/skiff/controlplane/membership"
	"github.com/skiff-sh/skiff/raftstore"
)

// TestWorkerDeathThroughGossip: a worker that is a member of the masters'
// gossip pool (with the key the first master created) and registered its
// Node gets a pod CIDR; when it stops, its Node is Ready=Unknown and
// tainted unreachable within seconds, far inside the node monitor grace
// period (40 s), because gossip says it died.
func TestWorkerDeathThroughGossip(t *testing.T) {
	dataDir, _, store := startMasterStore(t)
	ctx := t.Context()
	key, _, err := store.Get(ctx, gossipKeyKey, raftstore.ReadOptions{})
	if err != nil || key == nil || len(key.Value) != membership.KeySize {
		t.Fatalf("gossip key in the store: %v %v", key, err)
	}
	var seed string
	apitest.WaitFor(t, 20*time.Second, "the master to announce its gossip address", func() error {
		lr, err := store.List(ctx, gossipMastersPrefix, raftstore.ListOptions{})
		if err != nil {
			return err
		}
		if len(lr.KVs) != 1 || !strings.HasPrefix(string(lr.KVs[0].Value), "127.0.0.1:") {
			return fmt.Errorf("got %v", lr.KVs)
		}
		seed = string(lr.KVs[0].Value)
		return nil
	})

	cfg, err := clientcmd.BuildConfigFromFlags("", KubeconfigPath(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	now := metav1.Now()
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "gossip-worker"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The node IPAM controller writes the new Node too (its pod CIDR): on a
	// conflict, read it again and retry, as a kubelet does.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := cs.CoreV1().Nodes().Get(ctx, "gossip-worker", metav1.GetOptions{})
		if err != nil {
			return err
		}
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now}}
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	wcfg := membership.DefaultConfig()
	wcfg.Name, wcfg.BindAddr, wcfg.Key, wcfg.Logger = "gossip-worker", "127.0.0.1:0", key.Value, slog.New(slog.DiscardHandler)
	wcfg.Meta = membership.Meta{Worker: true, NodeIP: "127.0.0.1"}
	wcfg.Peers = func(context.Context) ([]string, error) { return []string{seed}, nil }
	worker, err := membership.New(wcfg)
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(context.Background())
	wdone := make(chan error, 1)
	go func() { wdone <- worker.Run(wctx) }()
	var workerErr error
	stop := sync.OnceFunc(func() { stopWorker(); workerErr = <-wdone })
	t.Cleanup(func() {
		stop()
		if workerErr != nil {
			t.Errorf("worker Run: %v", workerErr)
		}
	})
	apitest.WaitFor(t, 20*time.Second, "the worker to see the master and get a pod CIDR", func() error {
		m, ok := worker.Member(store.NodeID())
		if !ok || !m.Alive || !m.Meta.Master || !strings.HasPrefix(m.Meta.API, "https://") {
			return fmt.Errorf("worker sees %+v", worker.Members())
		}
		n, err := cs.CoreV1().Nodes().Get(ctx, "gossip-worker", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !strings.HasPrefix(n.Spec.PodCIDR, "10.244.") {
			return fmt.Errorf("pod CIDR %q", n.Spec.PodCIDR)
		}
		return nil
	})

	stop()
	stopped := time.Now()
	apitest.WaitFor(t, 20*time.Second, "the node to be unreachable", func() error {
		n, err := cs.CoreV1().Nodes().Get(ctx, "gossip-worker", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionUnknown {
				for _, taint := range n.Spec.Taints {
					if taint.Key == "node.kubernetes.io/unreachable" && taint.Effect == corev1.TaintEffectNoExecute {
						return nil
					}
				}
				return fmt.Errorf("Unknown, no taint yet: %v", n.Spec.Taints)
			}
		}
		return fmt.Errorf("conditions %v", n.Status.Conditions)
	})
	t.Logf("worker stopped → node Ready=Unknown and tainted after %v", time.Since(stopped))
}
