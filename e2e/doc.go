// Package e2e will own the tests that run Skiff as a user would: real skiff
// processes on loopback driven by kubectl and client-go, and the lab, where
// network namespaces on one machine act as hosts with their own containerd,
// iptables and CNI and faults are injected by killing processes and cutting
// links. Today it holds the layout test, which enforces the import rules of
// DESIGN.md and the package doc comments of STYLE.md for the whole module.
//
// Import rules: e2e may import any public package of the module (raftstore,
// controlplane, agent, netproxy) and third-party packages; no package outside
// e2e may import it, and nothing but cmd imports cmd. The store benchmark in
// e2e/storebench is a separate Go module with its own go.mod.
package e2e
