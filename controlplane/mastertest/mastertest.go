// Package mastertest runs real masters in-process (a raftstore node with
// test timings and a master.Master on loopback ports) for the tests of
// packages that may not import raftstore, such as the agent's. Nothing
// outside tests should import it.
//
//	ms := mastertest.StartCluster(t, 3)    // or []*Master{mastertest.Start(t)}
//	tok := ms[0].JoinToken(t, time.Hour)    // `skiff token create --join`
//	ms[0].GossipAddr, ms[0].URL             // where workers join, the API
//	cs := ms[0].Client(t)                   // the admin's clientset
//	ms[1].Stop()                            // a master dies (idempotent)
//
// Every master stops when the test ends.
package mastertest

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-sh/skiff/controlplane/master"
	"github.com/skiff-sh/skiff/raftstore"
	"github.com/skiff-sh/skiff/raftstore/storetest"
)

// Master is one running master.
type Master struct {
	// Name is the master's node ID (its gossip member name).
	Name string
	// URL is the Kubernetes API, https://127.0.0.1:port.
	URL string
	// GossipAddr is the master's gossip address, 127.0.0.1:port.
	GossipAddr string
	DataDir    string
	Kubeconfig string

	store *raftstore.Store
	stop  func()
}

// startTimeout bounds how long a master may take to serve.
const startTimeout = 30 * time.Second

// Start runs a single-master cluster until the test ends.
func Start(t testing.TB) *Master {
	t.Helper()
	return StartCluster(t, 1)[0]
}

// StartCluster runs a cluster of n masters until the test ends: the first
// bootstraps the store, the others join it; every one serves the API and
// is a member of the gossip pool. It returns once all serve and have
// announced their gossip addresses.
func StartCluster(t testing.TB, n int) []*Master {
	t.Helper()
	var ms []*Master
	for i := range n {
		name := fmt.Sprintf("m%d", i+1)
		dataDir := t.TempDir()
		cfg := storetest.Config(dataDir)
		cfg.NodeID = name
		if i > 0 {
			cfg.Bootstrap, cfg.Join = false, []string{ms[0].store.Addr()}
		}
		ms = append(ms, start(t, name, dataDir, cfg))
	}
	for _, m := range ms {
		waitFor(t, startTimeout, "master "+m.Name+" to announce its gossip address", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			addrs, err := master.GossipAddrs(ctx, m.store)
			if err != nil {
				return err
			}
			if len(addrs) != n {
				return fmt.Errorf("got gossip addresses %v, want %d", addrs, n)
			}
			return nil
		})
	}
	return ms
}

// start runs one store and master with cfg.
func start(t testing.TB, name, dataDir string, cfg raftstore.Config) *Master {
	t.Helper()
	store, err := raftstore.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	storeDone := make(chan error, 1)
	go func() { storeDone <- store.Run(ctx) }()
	ready := make(chan string, 1)
	mcfg := master.DefaultConfig()
	mcfg.Store, mcfg.DataDir, mcfg.APIAddr, mcfg.GossipAddr = store, dataDir, "127.0.0.1:0", "127.0.0.1:0"
	mcfg.Logger = slog.New(slog.DiscardHandler)
	mcfg.OnReady = func(url, _ string) { ready <- url }
	mst, err := master.New(mcfg)
	if err != nil {
		cancel()
		<-storeDone
		t.Fatal(err)
	}
	masterDone := make(chan error, 1)
	go func() { masterDone <- mst.Run(ctx) }()
	m := &Master{Name: name, DataDir: dataDir, Kubeconfig: master.KubeconfigPath(dataDir), store: store}
	m.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-masterDone; err != nil {
			t.Errorf("master %s Run: %v", name, err)
		}
		if err := <-storeDone; err != nil {
			t.Errorf("store %s Run: %v", name, err)
		}
	})
	t.Cleanup(m.stop)
	select {
	case m.URL = <-ready:
	case err := <-masterDone:
		t.Fatalf("master %s stopped before serving: %v", name, err)
	case <-time.After(startTimeout):
		t.Fatalf("master %s did not serve within %v", name, startTimeout)
	}
	waitFor(t, startTimeout, "master "+name+"'s gossip address", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Where master.GossipAddrs reads (controlplane/master/gossip.go).
		kv, _, err := store.Get(ctx, "/skiff/gossip/masters/"+name, raftstore.ReadOptions{})
		if err != nil {
			return err
		}
		if kv == nil {
			return fmt.Errorf("not announced yet")
		}
		m.GossipAddr = string(kv.Value)
		return nil
	})
	return m
}

// Stop stops the master and its store node, and waits for them. It may be
// called more than once.
func (m *Master) Stop() { m.stop() }

// JoinToken returns a new join token valid for ttl, as `skiff token create
// --join` prints it.
func (m *Master) JoinToken(t testing.TB, ttl time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, _, err := master.CreateJoinToken(ctx, m.store, ttl, "mastertest")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Token returns a new bearer token for user in groups, valid for an hour.
func (m *Master) Token(t testing.TB, user string, groups ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, _, err := master.CreateToken(ctx, m.store, master.TokenSpec{User: user, Groups: groups, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// RESTConfig returns the admin's client configuration for this master.
func (m *Master) RESTConfig(t testing.TB) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Client returns the admin's clientset for this master.
func (m *Master) Client(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(m.RESTConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// waitFor polls cond until it returns nil, and fails the test with its last
// error after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond) // between polls
	}
}
