// Package netproxy will own Service networking on every node: computing the
// iptables rules for Service virtual IPs and NodePorts as a pure function,
// applying them idempotently through one dataplane adapter, and cluster DNS.
// Nothing is implemented yet; it arrives in a later milestone.
//
// Import rules (DESIGN.md, enforced by e2e's layout test): netproxy may import
// controlplane's published client and third-party packages, never agent,
// raftstore, e2e or cmd. Implementation packages go under netproxy/internal/.
package netproxy
