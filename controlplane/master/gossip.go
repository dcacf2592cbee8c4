package master

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/skiff-sh/skiff/controlplane/membership"
	"github.com/skiff-sh/skiff/raftstore"
)

// Keys of the gossip pool's shared state in the store: its encryption key,
// and each master's gossip address (by node ID), which the masters join
// and agents will be told.
const (
	gossipKeyKey        = "/skiff/gossip/key"
	gossipMastersPrefix = "/skiff/gossip/masters/"
)

// gossipPool returns this master's member of the gossip pool, not yet
// running: the pool key comes from the store (the first master creates it)
// and the peers are the other masters' addresses kept there.
func (m *Master) gossipPool(ctx context.Context, apiURL string) (*membership.Pool, error) {
	key, err := m.sharedValue(ctx, gossipKeyKey, func() ([]byte, error) {
		k := make([]byte, membership.KeySize)
		_, err := rand.Read(k)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("master: gossip key: %w", err)
	}
	cfg := membership.DefaultConfig()
	cfg.Name, cfg.BindAddr, cfg.Key, cfg.Logger = m.cfg.Store.NodeID(), m.cfg.GossipAddr, key, m.log
	cfg.Meta = membership.Meta{Master: true, API: apiURL}
	if host, port, err := net.SplitHostPort(m.cfg.GossipAddr); err == nil {
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			if port == "0" {
				return nil, fmt.Errorf("master: gossip address %s: a listener on every address needs a fixed port to advertise", m.cfg.GossipAddr)
			}
			cfg.AdvertiseAddr = net.JoinHostPort(m.cfg.AdvertiseHost, port)
		}
	}
	cfg.Peers = m.gossipPeers
	return membership.New(cfg)
}

// gossipPeers returns the gossip addresses of the other masters.
func (m *Master) gossipPeers(ctx context.Context) ([]string, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	lr, err := m.cfg.Store.List(rctx, gossipMastersPrefix, raftstore.ListOptions{})
	if err != nil {
		return nil, err
	}
	var peers []string
	for _, kv := range lr.KVs {
		if strings.TrimPrefix(kv.Key, gossipMastersPrefix) != m.cfg.Store.NodeID() {
			peers = append(peers, string(kv.Value))
		}
	}
	return peers, nil
}

// announceGossip keeps this master's gossip address in the store, once the
// pool listens, so that the others (and later agents) can join it. A
// restarted master on the same address writes nothing.
func (m *Master) announceGossip(ctx context.Context, pool *membership.Pool) error {
	addr, err := pool.Addr(ctx)
	if err != nil {
		return err
	}
	k := gossipMastersPrefix + m.cfg.Store.NodeID()
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		kv, _, err := m.cfg.Store.Get(rctx, k, raftstore.ReadOptions{})
		if err == nil && (kv == nil || string(kv.Value) != addr) {
			_, _, err = m.cfg.Store.Put(rctx, k, []byte(addr))
		}
		cancel()
		if err == nil {
			return nil
		}
		m.log.Debug("gossip: announcing this master's address", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
	}
}

// sharedValue returns the value at key, creating it with gen when no
// master has yet. Store errors that pass (no leader yet, a read timing out
// while this master catches up, another master creating it first) are
// retried until ctx ends.
func (m *Master) sharedValue(ctx context.Context, key string, gen func() ([]byte, error)) ([]byte, error) {
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		v, err := m.loadOrCreate(ctx, key, gen)
		if err == nil {
			return v, nil
		}
		retry := errors.Is(err, raftstore.ErrNoLeader) || errors.Is(err, raftstore.ErrUnknownOutcome) ||
			errors.Is(err, raftstore.ErrKeyExists) || (errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil)
		if !retry {
			return nil, err
		}
		m.log.Debug("waiting for the store", "key", key, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
	}
}

func (m *Master) loadOrCreate(ctx context.Context, key string, gen func() ([]byte, error)) ([]byte, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	kv, _, err := m.cfg.Store.Get(rctx, key, raftstore.ReadOptions{})
	if err != nil {
		return nil, err
	}
	if kv != nil {
		return kv.Value, nil
	}
	v, err := gen()
	if err != nil {
		return nil, err
	}
	if _, err := m.cfg.Store.Create(rctx, key, v); err != nil {
		return nil, err // ErrKeyExists: another master won; read theirs
	}
	return v, nil
}
