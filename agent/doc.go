// Package agent will own the Skiff worker: joining the gossip pool, registering
// its Node, running the node's Pods through a runtime interface (containerd is
// one implementation), volumes, pod networking through the standard CNI
// plugins, and the logs/exec/port-forward endpoint the API server calls.
// Nothing is implemented yet; it arrives in a later milestone.
//
// Import rules (DESIGN.md, enforced by e2e's layout test): agent may import
// controlplane's published client and membership packages and third-party
// packages, never raftstore, netproxy, e2e or cmd. Implementation packages go
// under agent/internal/.
package agent
