// Package controlplane owns everything a Skiff master runs above the
// replicated store: the Kubernetes-compatible API server (internal/apiserver,
// with per-kind rules in internal/strategy and server-side apply in
// internal/fieldmanager), the object registry that maps API objects onto
// raftstore keys and revisions (internal/registry), authentication
// (internal/pki, internal/authn), the leadership runner that starts
// leader-only work after a Raft barrier and stops it when leadership is lost
// (internal/leadership), the controllers (today the garbage collector,
// internal/gc, the namespace controller, internal/nsfinalizer, and the
// service account controller, internal/defaultsa), and the
// master wiring (master). The scheduler, the workload controllers and the
// gossip observer are to come.
//
// Import rules (DESIGN.md, enforced by e2e's layout test): controlplane may
// import raftstore and third-party packages, never agent, netproxy, e2e or cmd.
// Implementation packages go under controlplane/internal/; the client and
// membership packages that agent and netproxy use are published outside it.
package controlplane
