// Package storetest runs real raftstore nodes for the tests of the packages
// built on the store: a bootstrapped single node on an ephemeral loopback
// port, with Raft timeouts short enough for tests, stopped when the test ends.
//
//	s := storetest.Start(t, "")   // data in t.TempDir()
//	rev, err := s.Create(ctx, "/k", v)
package storetest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/raftstore"
)

// Config returns the configuration Start uses for a node keeping its data
// in dataDir.
func Config(dataDir string) raftstore.Config {
	cfg := raftstore.DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.BindAddr, cfg.Bootstrap = "solo", dataDir, "127.0.0.1:0", true
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	cfg.RequestTimeout = 5 * time.Second
	cfg.CompactInterval = 0
	cfg.Logger = slog.New(slog.DiscardHandler)
	return cfg
}

// Start runs a bootstrapped single-node store with its data in dataDir
// (t.TempDir() when empty) until the test ends, and fails the test if the
// store's Run returns an error. The store may still be electing itself when
// Start returns: its operations wait for a leader.
func Start(t testing.TB, dataDir string) *raftstore.Store {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	s, err := raftstore.New(Config(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("raftstore Run: %v", err)
		}
	})
	return s
}
