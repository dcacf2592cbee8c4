// Package e2e owns the tests that run Skiff as a user would: real skiff
// processes on loopback driven by the real kubectl and client-go (kill -9
// of the leader and of every master, kubectl against followers and through
// a leader restart, informers through a leader kill and a compaction that
// forces a re-list, conflicts and read-your-writes across masters, bad
// requests), and the layout test, which enforces the import rules of
// DESIGN.md and the package doc comments of STYLE.md for the whole module.
// The lab (e2e/lab, `make lab`) runs network namespaces on one machine as
// hosts with their own containerd, iptables and CNI, masters and agents as
// real skiff processes and a real registry; agent_test.go and
// nodeloss_test.go run the agent's and the node lifecycle's acceptance
// there, up_test.go runs `skiff up` in a network namespace of its own.
//
// Import rules: e2e may import any public package of the module (raftstore,
// controlplane, agent, netproxy) and third-party packages; no package outside
// e2e may import it, and nothing but cmd imports cmd. The store benchmark in
// e2e/storebench is a separate Go module with its own go.mod.
package e2e
