// Package controlplane will own everything a Skiff master runs above the
// replicated store: the Kubernetes-compatible API server, the object registry
// that maps API objects onto raftstore keys and revisions, the scheduler, the
// controllers, the leadership runner that starts leader-only work after a Raft
// barrier and stops it when leadership is lost, and the gossip observer on
// masters. Nothing is implemented yet; it arrives in a later milestone.
//
// Import rules (DESIGN.md, enforced by e2e's layout test): controlplane may
// import raftstore and third-party packages, never agent, netproxy, e2e or cmd.
// Implementation packages go under controlplane/internal/; the client and
// membership packages that agent and netproxy use are published outside it.
package controlplane
