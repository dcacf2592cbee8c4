// Package dataplane owns the kernel side of netproxy: it writes the
// iptables rule sets that netproxy/internal/rules computes, keeps the
// jumps from the built-in chains to netproxy's chains, removes chains an
// earlier rule set used and this one does not, removes everything at
// cleanup, and flushes stale UDP conntrack entries.
//
// netproxy owns every chain whose name starts with "SKP-" in the nat and
// filter tables, and nothing else: no other chain or rule is ever touched,
// apart from the jump rules in the built-in chains that lead into
// netproxy's chains.
//
// Intended call sequence (one Dataplane per node, one goroutine using it):
//
//	d, err := dataplane.New(cfg)
//	res := rules.Compute(input)
//	err = d.Apply(ctx, res.NAT, res.Filter, res.NATChains, res.FilterChains)
//	err = d.EnsureJumps()
//	... on every change: Apply again (or ApplyPartial with only the
//	    changed chains when latency matters; a later Apply removes what
//	    ApplyPartial left behind) ...
//	err = dataplane.FlushConntrackUDP(removedUDPAddrs)
//
// and, when Skiff is removed from a node, dataplane.Cleanup().
//
// Each table is written with one `iptables-restore --noflush --wait`,
// which the kernel commits atomically, so a Service never has a moment
// without rules during an update. The iptables commands run in the
// network namespace of the calling OS thread.
package dataplane
