// Package agent is the Skiff worker, Skiff's kubelet: it joins the cluster
// with a join token (internal/join: gossip pool, certificates), registers
// its Node and keeps it current (internal/nodestatus), runs the node's Pods
// through containerd (internal/pods over internal/containers, with
// internal/volumes and internal/probe), gives them interfaces through the
// standard CNI plugins and routes to other nodes' pods (internal/network),
// and serves the logs/exec/attach/port-forward endpoint the API server
// calls (internal/stream, over internal/podlogs).
//
// Use: New(cfg), then Run(ctx). Containers outlive the agent; a restarted
// agent adopts them. agent/imagebuild, public, builds OCI image archives
// (the offline demo images of `skiff up`, the lab's test images).
//
// Import rules (DESIGN.md, enforced by e2e's layout test): agent may import
// controlplane's published client and membership packages and third-party
// packages, never raftstore, netproxy, e2e or cmd. Implementation packages go
// under agent/internal/.
package agent
