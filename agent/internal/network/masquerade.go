package network

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// Skiff's iptables chains.
const (
	// PostroutingChain (table nat, jumped to from POSTROUTING) masquerades
	// pod traffic leaving the cluster CIDR.
	PostroutingChain = "SKIFF-POSTROUTING"
	// ForwardChain (table filter, jumped to first from FORWARD) accepts
	// forwarded traffic from and to the cluster CIDR, whatever FORWARD's
	// policy.
	ForwardChain = "SKIFF-FORWARD"
)

// chainRules is one of Skiff's chains: its table, its rules and the rule
// in the built-in chain that jumps to it.
type chainRules struct {
	Table, Chain string
	// From is the built-in chain jumping to Chain; First puts that jump
	// ahead of everything else in it.
	From  string
	First bool
	Rules [][]string
}

func jumpRule(chain string) []string {
	return []string{"-m", "comment", "--comment", "skiff pod network", "-j", chain}
}

// ruleSet returns Skiff's chains for the cluster and pod CIDRs, in
// iptables' own -S spelling so that a listing compares equal.
func ruleSet(cluster, pod netip.Prefix) []chainRules {
	nets := []string{cluster.Masked().String()}
	if !(cluster.Contains(pod.Addr()) && pod.Bits() >= cluster.Bits()) {
		nets = append(nets, pod.Masked().String()) // a pod CIDR outside the cluster CIDR: still this node's pods
	}
	nat := chainRules{Table: "nat", Chain: PostroutingChain, From: "POSTROUTING"}
	for _, d := range nets {
		// Pod to pod, on this node or another: never NATed.
		nat.Rules = append(nat.Rules, []string{"-d", d, "-j", "RETURN"})
	}
	for _, s := range nets {
		nat.Rules = append(nat.Rules, []string{"-s", s, "-j", "MASQUERADE"})
	}
	fwd := chainRules{Table: "filter", Chain: ForwardChain, From: "FORWARD", First: true}
	for _, s := range nets {
		fwd.Rules = append(fwd.Rules, []string{"-s", s, "-j", "ACCEPT"})
	}
	for _, d := range nets {
		fwd.Rules = append(fwd.Rules, []string{"-d", d, "-j", "ACCEPT"})
	}
	return []chainRules{nat, fwd}
}

// listing renders c's chain as `iptables -t <table> -S <chain>` prints it.
func (c chainRules) listing() []string {
	out := []string{"-N " + c.Chain}
	for _, r := range c.Rules {
		out = append(out, "-A "+c.Chain+" "+strings.Join(r, " "))
	}
	return out
}

// EnsureMasquerade turns on IPv4 forwarding (and
// net.bridge.bridge-nf-call-iptables when br_netfilter is loaded; a
// warning is logged when it is not) and makes Skiff's chains hold
// exactly their rules: in nat, SKIFF-POSTROUTING (from POSTROUTING)
// returns for traffic to the cluster CIDR and masquerades what the pods
// send elsewhere; in filter, SKIFF-FORWARD (first in FORWARD) accepts
// traffic from and to the cluster CIDR. A chain already right is not
// touched, so calling it again is cheap and never opens a gap.
func (n *Network) EnsureMasquerade() error {
	if err := n.ensureSysctls(); err != nil {
		return err
	}
	ipt, err := iptables.NewWithProtocol(iptables.ProtocolIPv4)
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	for _, c := range ruleSet(n.cfg.ClusterCIDR, n.cfg.PodCIDR) {
		if err := ensureChain(ipt, c); err != nil {
			return err
		}
	}
	return nil
}

func ensureChain(ipt *iptables.IPTables, c chainRules) error {
	exists, err := ipt.ChainExists(c.Table, c.Chain)
	if err != nil {
		return fmt.Errorf("network: %s/%s: %w", c.Table, c.Chain, err)
	}
	if !exists {
		if err := ipt.NewChain(c.Table, c.Chain); err != nil {
			return fmt.Errorf("network: creating %s/%s: %w", c.Table, c.Chain, err)
		}
	}
	have, err := ipt.List(c.Table, c.Chain)
	if err != nil {
		return fmt.Errorf("network: listing %s/%s: %w", c.Table, c.Chain, err)
	}
	if !slices.Equal(have, c.listing()) {
		// Appending to an emptied chain leaves a moment without the rules;
		// it only happens when they change (first start, new CIDRs).
		if err := ipt.ClearChain(c.Table, c.Chain); err != nil {
			return fmt.Errorf("network: flushing %s/%s: %w", c.Table, c.Chain, err)
		}
		for _, r := range c.Rules {
			if err := ipt.Append(c.Table, c.Chain, r...); err != nil {
				return fmt.Errorf("network: %s/%s: %w", c.Table, c.Chain, err)
			}
		}
	}
	if c.First {
		err = ipt.InsertUnique(c.Table, c.From, 1, jumpRule(c.Chain)...)
	} else {
		err = ipt.AppendUnique(c.Table, c.From, jumpRule(c.Chain)...)
	}
	if err != nil {
		return fmt.Errorf("network: jump from %s/%s to %s: %w", c.Table, c.From, c.Chain, err)
	}
	return nil
}

const (
	ipForwardPath    = "/proc/sys/net/ipv4/ip_forward"
	bridgeNFCallPath = "/proc/sys/net/bridge/bridge-nf-call-iptables"
)

// ensureSysctls turns on IPv4 forwarding, and makes bridged traffic go
// through iptables when br_netfilter is there (Service DNAT between two
// pods on the same bridge needs it to undo the NAT on the reply).
func (n *Network) ensureSysctls() error {
	if err := setSysctl(ipForwardPath); err != nil {
		return fmt.Errorf("network: enabling IPv4 forwarding: %w", err)
	}
	if _, err := os.Stat(bridgeNFCallPath); err != nil {
		n.log.Warn("br_netfilter is not loaded (modprobe br_netfilter): Service traffic between pods on one node may fail", "err", err)
		return nil
	}
	if err := setSysctl(bridgeNFCallPath); err != nil {
		return fmt.Errorf("network: enabling iptables on bridged traffic: %w", err)
	}
	return nil
}

// setSysctl writes 1 to path unless it already holds 1.
func setSysctl(path string) error {
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	return os.WriteFile(path, []byte("1\n"), 0o644)
}

// Cleanup removes what Skiff added to the node's network outside the pods:
// its iptables chains and the jumps to them, and every route marked
// RouteProtocol. The bridge, the pods' interfaces and the portmap
// plugin's rules are left (tear the pods down first). It is idempotent.
func Cleanup() error {
	var errs []error
	ipt, err := iptables.NewWithProtocol(iptables.ProtocolIPv4)
	if err != nil {
		errs = append(errs, fmt.Errorf("network: %w", err))
	} else {
		for _, c := range ruleSet(DefaultClusterCIDR, DefaultClusterCIDR) {
			// A jump needs its target chain, so no chain means no jump
			// (and checking for the jump would fail).
			exists, err := ipt.ChainExists(c.Table, c.Chain)
			if err == nil && exists {
				err = ipt.DeleteIfExists(c.Table, c.From, jumpRule(c.Chain)...)
				if err == nil {
					err = ipt.ClearAndDeleteChain(c.Table, c.Chain)
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("network: deleting %s/%s: %w", c.Table, c.Chain, err))
			}
		}
	}
	errs = append(errs, deleteRoutes())
	return errors.Join(errs...)
}
