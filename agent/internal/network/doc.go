// Package network owns a worker's pod networking: each pod's interface
// (through libcni and the standard CNI plugins: bridge with host-local IPAM,
// portmap for hostPort, loopback), the routes to the other nodes' pod CIDRs,
// and the iptables rules that masquerade pod traffic leaving the cluster.
//
// Call sequence (the agent):
//
//	n, err := network.New(cfg)       // writes the conflist, creates the bridge
//	n.EnsureMasquerade()             // once at start, again whenever wanted (idempotent)
//	n.SyncRoutes(routes)             // whenever the set of Nodes changes
//	ip, err := n.Setup(ctx, uid, ns, name, netnsPath, ports) // per pod, idempotent
//	ip, ok := n.PodIP(uid)           // adoption after an agent restart
//	n.Teardown(ctx, uid, netnsPath)  // per pod, before its netns is removed; idempotent
//	network.Cleanup()                // `--cleanup`: Skiff's chains, rules and routes
//
// State that outlives the agent process lives in the caller's directories:
// the host-local allocations in Config.IPAMDir and libcni's result cache in
// Config.CacheDir, so a restarted agent finds each pod's IP and a Teardown
// after a restart frees the right address.
//
// Every function acts on the network namespace of the calling OS thread
// (plugins are exec'd from it, netlink and iptables too): the host's, unless
// a test locked its goroutine into another one.
package network
