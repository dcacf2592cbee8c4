package dataplane

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// JumpComment marks the jump rules netproxy puts in the built-in chains.
const JumpComment = "skiff service proxy"

// jump is a rule in a built-in chain that leads into one of netproxy's.
type jump struct {
	table, from, to string
	newOnly         bool // only packets opening a connection (-m conntrack --ctstate NEW)
}

func (j jump) spec() []string {
	var s []string
	if j.newOnly {
		s = append(s, "-m", "conntrack", "--ctstate", "NEW")
	}
	return append(s, "-m", "comment", "--comment", JumpComment, "-j", j.to)
}

// jumps lists the jump rules in the order they end up in each built-in
// chain (EnsureJumps inserts them in reverse, each at position 1). In
// FORWARD the rejects of SKP-SERVICES come before SKP-FORWARD's accepts.
var jumps = []jump{
	{TableNAT, "PREROUTING", "SKP-SERVICES", false},
	{TableNAT, "OUTPUT", "SKP-SERVICES", false},
	{TableNAT, "POSTROUTING", "SKP-POSTROUTING", false},
	{TableFilter, "INPUT", "SKP-SERVICES", true},
	{TableFilter, "INPUT", "SKP-EXTERNAL", true},
	{TableFilter, "FORWARD", "SKP-SERVICES", true},
	{TableFilter, "FORWARD", "SKP-FORWARD", false},
	{TableFilter, "OUTPUT", "SKP-SERVICES", true},
}

// EnsureJumps makes every jump from a built-in chain to netproxy's chains
// exist exactly once: nat PREROUTING and OUTPUT → SKP-SERVICES,
// POSTROUTING → SKP-POSTROUTING; filter INPUT, FORWARD and OUTPUT →
// SKP-SERVICES and INPUT → SKP-EXTERNAL (new connections only), FORWARD →
// SKP-FORWARD. A missing jump is inserted at the top of its chain (an
// existing one is left where it is); a missing target chain is created
// empty (Apply fills it). Calling it again changes nothing. It runs one
// iptables process per jump, each of which reads the whole table (about
// 0.2 s each with 10,000 services): call it at start and now and then,
// not on every sync.
func (d *Dataplane) EnsureJumps() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	ipt, err := iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Path(d.cfg.IPTables))
	if err != nil {
		return fmt.Errorf("dataplane: %w", err)
	}
	created := map[string]bool{}
	for _, j := range slices.Backward(jumps) {
		// A chain the last write left there needs no check: each iptables
		// call in a table of 200,000 rules takes about 0.2 s.
		if key := j.table + "/" + j.to; !created[key] && !d.known[j.table][j.to] {
			exists, err := ipt.ChainExists(j.table, j.to)
			if err != nil {
				return fmt.Errorf("dataplane: checking chain %s/%s: %w", j.table, j.to, err)
			}
			if !exists {
				if err := ipt.NewChain(j.table, j.to); err != nil {
					return fmt.Errorf("dataplane: creating chain %s/%s: %w", j.table, j.to, err)
				}
				if known := d.known[j.table]; known != nil {
					known[j.to] = true
				}
			}
			created[key] = true
		}
		exists, err := ipt.Exists(j.table, j.from, j.spec()...)
		if err != nil {
			return fmt.Errorf("dataplane: checking jump %s/%s → %s: %w", j.table, j.from, j.to, err)
		}
		if exists {
			continue
		}
		if err := ipt.Insert(j.table, j.from, 1, j.spec()...); err != nil {
			return fmt.Errorf("dataplane: inserting jump %s/%s → %s: %w", j.table, j.from, j.to, err)
		}
		d.log.Info("inserted jump", "table", j.table, "chain", j.from, "target", j.to)
	}
	return nil
}

var builtinChains = []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// Cleanup removes every SKP- chain in the nat and filter tables and every
// rule in a built-in chain that jumps to one, with one atomic
// iptables-restore per table (iptables and iptables-restore from PATH, in
// the calling thread's network namespace). Other chains and
// rules are left; a rule in a non-built-in, non-SKP chain that jumps to an
// SKP- chain makes it fail for that table. Calling it again is a no-op. A
// Dataplane used before Cleanup must not be used after it.
func Cleanup() error {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		return err
	}
	ctx := context.Background()
	var errs []error
	for _, table := range []string{TableNAT, TableFilter} {
		if err := cleanupTable(ctx, cfg.IPTables, cfg.IPTablesRestore, table); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func cleanupTable(ctx context.Context, bin, restoreBin, table string) error {
	out, err := listTable(ctx, bin, table)
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	var chains, rules []string
	for line := range strings.Lines(string(out)) {
		line = strings.TrimRight(line, "\n")
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "-N" && strings.HasPrefix(f[1], ChainPrefix):
			chains = append(chains, f[1])
		case len(f) > 2 && f[0] == "-A" && slices.Contains(builtinChains, f[1]):
			for i := 2; i+1 < len(f); i++ {
				if (f[i] == "-j" || f[i] == "-g") && strings.HasPrefix(f[i+1], ChainPrefix) {
					rules = append(rules, line)
					break
				}
			}
		}
	}
	if len(chains) == 0 && len(rules) == 0 {
		return nil
	}
	slices.Sort(chains)
	if err := restore(ctx, restoreBin, table, deletion(table, rules, chains)); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	return nil
}
