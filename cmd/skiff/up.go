package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/skiff-sh/skiff/agent"
	"github.com/skiff-sh/skiff/agent/imagebuild"
	"github.com/skiff-sh/skiff/controlplane/master"
	"github.com/skiff-sh/skiff/raftstore"
)

// DemoImage is the image `skiff up` imports at start, so a first
// deployment works offline: busybox's httpd serving a page on port 8080.
const DemoImage = "skiff.local/demo:1"

// BusyboxImage is the plain busybox image `skiff up` imports at start.
const BusyboxImage = "skiff.local/busybox:1"

// demoImages returns the images `skiff up` preloads.
func demoImages() ([]imagebuild.Spec, error) {
	bb, err := imagebuild.Busybox(BusyboxImage)
	if err != nil {
		return nil, err
	}
	demo := bb
	demo.Name = DemoImage
	demo.Files = append(append([]imagebuild.File(nil), bb.Files...),
		imagebuild.File{Path: "/www/index.html", Mode: 0o644, Data: []byte("<h1>Hello from Skiff</h1>\n")})
	demo.Cmd = []string{"httpd", "-f", "-v", "-p", "8080", "-h", "/www"}
	demo.ExposedPorts = []string{"8080/tcp"}
	return []imagebuild.Spec{bb, demo}, nil
}

// runUpAgent runs the agent of `skiff up` once the master serves: it joins
// through the master's gossip member with a join token the master creates,
// like any worker.
func runUpAgent(ctx context.Context, store *raftstore.Store, f *agentFlags, dataDir string, ready <-chan struct{}, logger *slog.Logger) error {
	select {
	case <-ready:
	case <-ctx.Done():
		return nil
	}
	var gossip []string
	deadline := time.Now().Add(time.Minute)
	for len(gossip) == 0 {
		var err error
		if gossip, err = master.GossipAddrs(ctx, store); err != nil || len(gossip) == 0 {
			if time.Now().After(deadline) {
				return fmt.Errorf("the master announced no gossip address: %v", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	cfg, err := f.config(logger.With("component", "agent"))
	if err != nil {
		return err
	}
	cfg.DataDir = filepath.Join(dataDir, "agent")
	cfg.Join, cfg.GossipAddr = gossip[0], "127.0.0.1:0"
	if cfg.Preload, err = demoImages(); err != nil {
		logger.Warn("no offline demo images", "err", err)
	}
	// A joined agent keeps its credentials: a token only for the first
	// start, or when they need renewing.
	for _, withToken := range []bool{!agent.Joined(cfg.DataDir), true} {
		if withToken {
			if cfg.Token, _, err = master.CreateJoinToken(ctx, store, time.Hour, "the agent of skiff up"); err != nil {
				return fmt.Errorf("join token for the local agent: %w", err)
			}
		}
		a, err := agent.New(cfg)
		if err != nil {
			return err
		}
		if err = a.Run(ctx); !errors.Is(err, agent.ErrTokenRequired) || withToken {
			return err
		}
	}
	return nil
}
