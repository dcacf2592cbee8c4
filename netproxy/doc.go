// Package netproxy is Service networking on every node, Skiff's kube-proxy
// and node-local cluster DNS: it watches Services and EndpointSlices and
// keeps the node's iptables rules equal to a pure function of them
// (internal/rules), applied atomically with iptables-restore
// (internal/dataplane), and answers cluster DNS (internal/dns) on the
// pods' bridge address, where the cluster DNS Service's address
// (10.96.0.10) leads on each node.
//
// Use: New(cfg), then Run(ctx). Changes are debounced (MinSyncInterval)
// but a lone change is applied at once. Rules stay when Run returns, so
// Services keep working while the agent restarts; Cleanup removes them.
//
// Import rules (DESIGN.md, enforced by e2e's layout test): netproxy may import
// controlplane's published client and third-party packages, never agent,
// raftstore, e2e or cmd. Implementation packages go under netproxy/internal/.
package netproxy
