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
//	err = d.Apply(ctx, res.NAT, res.Filter, res.NATChains, res.FilterChains) // at start: full write, stale chains removed
//	err = d.EnsureJumps()                                                   // at start and now and then
//	... on every change: d.Sync(ctx, res.NAT, ...) with the new Result: it
//	    writes only the chains that differ from the last write; call Apply
//	    now and then to repair drift ...
//	err = dataplane.FlushConntrackUDP(removedUDPAddrs)
//
// and, when Skiff is removed from a node, dataplane.Cleanup().
// ApplyPartial writes a hand-made partial payload (see Changes).
//
// Cost with 10,000 services × 10 endpoints (220,000 rules, iptables-nft,
// 2 busy shared cores): Apply 5-8 s; Sync of a one-endpoint change
// 0.2-0.3 s, most of it the kernel re-validating every rule reachable
// from the built-in chains on each commit (once per built-in chain that
// jumps in: PREROUTING and OUTPUT), whatever the commit's size; without
// the jumps the same restore takes about 30 ms.
//
// Each table is written with one `iptables-restore --noflush --wait`,
// which the kernel commits atomically, so a Service never has a moment
// without rules during an update. The iptables commands run in the
// network namespace of the calling OS thread.
package dataplane
