package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ChainPrefix starts the name of every chain netproxy owns.
const ChainPrefix = "SKP-"

// The tables netproxy writes.
const (
	TableNAT    = "nat"
	TableFilter = "filter"
)

var (
	// ErrBadTable is returned by Chains for a table other than nat and filter.
	ErrBadTable = errors.New("dataplane: table is neither nat nor filter")
	// ErrBadPayload is returned by Apply and ApplyPartial when a payload is
	// not empty and does not start with the "*<table>" line of the table it
	// is passed as, or names a chain outside netproxy's prefix in a chain
	// list.
	ErrBadPayload = errors.New("dataplane: malformed payload")
	// ErrRestore is wrapped by every RestoreError: iptables-restore refused
	// a payload. The table it was meant for is unchanged.
	ErrRestore = errors.New("dataplane: iptables-restore failed")
)

// RestoreError is an iptables-restore run that failed. Line is the
// payload line iptables-restore complained about (1-based; 0 when its
// message names none) and Text that line.
type RestoreError struct {
	Table  string
	Line   int
	Text   string
	Stderr string
	Err    error
}

func (e *RestoreError) Error() string {
	msg := fmt.Sprintf("dataplane: iptables-restore of table %s: %v: %s", e.Table, e.Err, strings.TrimSpace(e.Stderr))
	if e.Line > 0 {
		msg += fmt.Sprintf(" (line %d: %q)", e.Line, e.Text)
	}
	return msg
}

// Unwrap returns ErrRestore and the exec error.
func (e *RestoreError) Unwrap() []error { return []error{ErrRestore, e.Err} }

// Config configures a Dataplane.
type Config struct {
	// IPTablesRestore is the iptables-restore binary (a name looked up in
	// PATH, or a path). Default "iptables-restore".
	IPTablesRestore string
	// IPTables is the iptables binary (same backend as IPTablesRestore)
	// go-iptables runs to list chains and for the jump rules. Default
	// "iptables".
	IPTables string
	Logger   *slog.Logger
}

// DefaultConfig returns the binaries found in PATH and slog's default
// logger.
func DefaultConfig() Config {
	return Config{
		IPTablesRestore: "iptables-restore",
		IPTables:        "iptables",
		Logger:          slog.Default(),
	}
}

// Validate fills unset fields with their defaults and checks that the
// binaries exist.
func (c *Config) Validate() error {
	def := DefaultConfig()
	if c.IPTablesRestore == "" {
		c.IPTablesRestore = def.IPTablesRestore
	}
	if c.IPTables == "" {
		c.IPTables = def.IPTables
	}
	if c.Logger == nil {
		c.Logger = def.Logger
	}
	for _, bin := range []*string{&c.IPTablesRestore, &c.IPTables} {
		p, err := exec.LookPath(*bin)
		if err != nil {
			return fmt.Errorf("dataplane: %w", err)
		}
		*bin = p
	}
	return nil
}

// Dataplane writes rule sets into the kernel. Its methods may be called
// from several goroutines (they are serialised), but the iptables
// commands run in the network namespace of the calling OS thread, so a
// Dataplane is meant for one namespace: the node's.
type Dataplane struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	// known holds, per table, the SKP- chains in the kernel after the last
	// successful write; a missing table means "unknown: list the kernel's".
	// It saves listing 100,000 chains on every sync.
	known map[string]map[string]bool
	// last holds, per table, the rule set the kernel holds after the last
	// Apply or Sync (raw payload, parsed lazily), for Sync's diff; a
	// missing table means "unknown: Sync writes everything".
	last map[string]*lastRules
}

// lastRules is a table's last written payload; parsed is filled on first
// use.
type lastRules struct {
	raw    []byte
	parsed *parsedTable
}

// New validates cfg and returns a Dataplane. It runs nothing.
func New(cfg Config) (*Dataplane, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Dataplane{cfg: cfg, log: cfg.Logger, known: map[string]map[string]bool{}, last: map[string]*lastRules{}}, nil
}

// jumpTargets are the chains the built-in chains jump to (EnsureJumps).
// They are never deleted as stale, since the jumps reference them.
var jumpTargets = map[string][]string{
	TableNAT:    {"SKP-SERVICES", "SKP-POSTROUTING"},
	TableFilter: {"SKP-SERVICES", "SKP-EXTERNAL", "SKP-FORWARD"},
}

// Apply makes nat and filter hold exactly the given rule sets: each
// payload (complete `iptables-restore --noflush` input for its table,
// "*nat\n:SKP-X - [0:0]\n-A SKP-X ...\nCOMMIT\n"; empty means no rules)
// is written by one iptables-restore, nat first, each an atomic commit.
// Then the SKP- chains of each table that are not in natChains /
// filterChains (which must list every chain the payload declares) are
// flushed and deleted by a second restore per table; the chains the
// built-in chains jump to are kept. Non-SKP chains and rules are never
// touched. The first call lists the kernel's chains (iptables -S);
// later ones remember what they wrote. Apply keeps a reference to the
// payloads (for Sync): the caller must not modify them afterwards.
func (d *Dataplane) Apply(ctx context.Context, nat, filter []byte, natChains, filterChains []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.apply(ctx, nat, nil, filter, natChains, filterChains)
}

// Table is a nat payload grouped by chain, as Sync reads a payload: the
// chains it declares, in order, and each declared chain's "-A" lines in
// payload order, without their newline (an entry for every declared
// chain, nil when it has no rules). netproxy/internal/rules writes it
// beside the payload (rules.Result.NATTable), sharing the line slices of
// unchanged services between results.
type Table struct {
	Chains []string
	Rules  map[string][][]byte
}

// parsed returns t as Sync's parsed form of nat, or nil when t cannot
// be nat read by chain: a chain declared twice, a rule of a chain not
// declared, a chain not netproxy's, or not one payload line per
// declaration and rule besides "*nat" and "COMMIT" (the shape
// netproxy/internal/rules writes; comments or blank lines make nat read).
// It costs about 1 ms at 10,000 services (counting nat's lines with
// bytes.Count of "\n", a quarter of counting its "-A" lines).
func (t Table) parsed(nat []byte) *parsedTable {
	if len(t.Rules) != len(t.Chains) {
		return nil
	}
	seen := make(map[string]bool, len(t.Chains))
	lines := 2 + len(t.Chains)
	for _, c := range t.Chains {
		rs, ok := t.Rules[c]
		if !ok || seen[c] || !strings.HasPrefix(c, ChainPrefix) {
			return nil
		}
		seen[c] = true
		lines += len(rs)
	}
	if lines != bytes.Count(nat, []byte("\n")) {
		return nil
	}
	return &parsedTable{table: TableNAT, order: t.Chains, rules: t.Rules}
}

// parsedOrWarn is t.parsed(nat), logging a table that does not fit nat
// (then nat is read instead, as Apply and Sync do).
func (d *Dataplane) parsedOrWarn(t Table, nat []byte) *parsedTable {
	p := t.parsed(nat)
	if p == nil {
		d.log.Error("the nat rules given by chain do not match the payload; reading the payload instead",
			"chains", len(t.Chains), "bytes", len(nat))
	}
	return p
}

// ApplyTable is Apply with the nat payload also given grouped by chain
// (natTable, which must be nat read by chain): the next SyncTable or Sync
// compares with it without reading nat. A table that does not fit nat is
// logged and ignored.
func (d *Dataplane) ApplyTable(ctx context.Context, nat []byte, natTable Table, filter []byte, natChains, filterChains []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.apply(ctx, nat, d.parsedOrWarn(natTable, nat), filter, natChains, filterChains)
}

// apply is Apply; natParsed, when not nil, is nat already parsed.
func (d *Dataplane) apply(ctx context.Context, nat []byte, natParsed *parsedTable, filter []byte, natChains, filterChains []string) error {
	start := time.Now()
	for _, t := range []struct {
		table   string
		payload []byte
		chains  []string
	}{{TableNAT, nat, natChains}, {TableFilter, filter, filterChains}} {
		if err := checkPayload(t.table, t.payload); err != nil {
			return err
		}
		for _, c := range t.chains {
			if !strings.HasPrefix(c, ChainPrefix) {
				return fmt.Errorf("%w: chain %q in the %s list is not an %s chain", ErrBadPayload, c, t.table, ChainPrefix)
			}
		}
		before := d.known[t.table]
		if before == nil {
			have, err := d.chains(ctx, t.table)
			if err != nil {
				return err
			}
			before = setOf(have)
		}
		delete(d.last, t.table)
		if err := d.restore(ctx, t.table, t.payload); err != nil {
			delete(d.known, t.table)
			return err
		}
		d.last[t.table] = &lastRules{raw: t.payload}
		if t.table == TableNAT {
			d.last[t.table].parsed = natParsed
		}
		now := setOf(t.chains)
		for _, c := range jumpTargets[t.table] {
			if before[c] {
				now[c] = true
			}
		}
		var stale []string
		for c := range before {
			if !now[c] {
				stale = append(stale, c)
			}
		}
		if len(stale) > 0 {
			slices.Sort(stale)
			if err := d.restore(ctx, t.table, deletion(t.table, nil, stale)); err != nil {
				delete(d.known, t.table)
				return fmt.Errorf("deleting %d stale chains: %w", len(stale), err)
			}
			d.log.Debug("deleted stale chains", "table", t.table, "chains", len(stale))
		}
		d.known[t.table] = now
	}
	d.log.Debug("applied rules", "natChains", len(natChains), "filterChains", len(filterChains),
		"bytes", len(nat)+len(filter), "took", time.Since(start))
	return nil
}

// ApplyPartial writes payloads that declare only the chains that changed
// (nat first, then filter; each atomic; an empty payload skips its
// table). Chains the payloads do not declare are left as they are, and
// nothing is deleted unless the payload itself says so: it may end with
// "-X SKP-..." lines for chains it also declares (iptables-nft deletes
// only a chain emptied earlier in the same transaction) and no longer
// references. Chains left unreferenced are removed by the next Apply.
// The chains a payload declares and deletes are remembered for Apply's
// stale-chain removal.
func (d *Dataplane) ApplyPartial(ctx context.Context, nat, filter []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, t := range []struct {
		table   string
		payload []byte
	}{{TableNAT, nat}, {TableFilter, filter}} {
		if len(t.payload) == 0 {
			continue
		}
		if err := checkPayload(t.table, t.payload); err != nil {
			return err
		}
		delete(d.last, t.table) // the kernel now holds a rule set Sync cannot know
		if err := d.restore(ctx, t.table, t.payload); err != nil {
			delete(d.known, t.table)
			return err
		}
		if known := d.known[t.table]; known != nil {
			declared, deleted := scanChains(t.payload)
			for _, c := range declared {
				known[c] = true
			}
			for _, c := range deleted {
				delete(known, c)
			}
		}
	}
	return nil
}

// Sync makes the tables hold the given rule sets, like Apply, but writes
// only what differs from the rule set of the last Apply or Sync: the
// chains whose rules changed or that are new, and the deletion of the
// chains no longer declared, in one atomic iptables-restore per table
// (see Changes); an unchanged table is not touched at all. When there is
// no last rule set to compare with (first call, after an error or an
// ApplyPartial) or a payload has a shape Changes does not read, it falls
// back to Apply. A change of one service among 10,000 takes one small
// restore instead of rewriting 200,000 rules.
//
// Sync trusts that nobody else changed netproxy's chains since the last
// write; call Apply now and then (and at start) to repair drift. Like
// Apply, it keeps references to the payloads.
func (d *Dataplane) Sync(ctx context.Context, nat, filter []byte, natChains, filterChains []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sync(ctx, nat, nil, filter, natChains, filterChains)
}

// SyncTable is Sync with the nat payload also given grouped by chain
// (natTable, which must be nat read by chain): it compares the rule sets
// chain by chain without reading nat, and a chain whose lines are the
// last call's very slices costs next to nothing. At 10,000 services that
// saves about 20 ms a change. A table that does not fit nat is logged and
// ignored (nat is read, as by Sync).
func (d *Dataplane) SyncTable(ctx context.Context, nat []byte, natTable Table, filter []byte, natChains, filterChains []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sync(ctx, nat, d.parsedOrWarn(natTable, nat), filter, natChains, filterChains)
}

// sync is Sync; natParsed, when not nil, is nat already parsed.
func (d *Dataplane) sync(ctx context.Context, nat []byte, natParsed *parsedTable, filter []byte, natChains, filterChains []string) error {
	type change struct {
		table   string
		partial []byte
		parsed  parsedTable
	}
	var changes []change
	for _, t := range []struct {
		table   string
		payload []byte
	}{{TableNAT, nat}, {TableFilter, filter}} {
		last := d.last[t.table]
		if last == nil || len(t.payload) == 0 {
			return d.apply(ctx, nat, natParsed, filter, natChains, filterChains)
		}
		given := t.table == TableNAT && natParsed != nil
		if !given && bytes.Equal(last.raw, t.payload) {
			continue
		}
		if err := checkPayload(t.table, t.payload); err != nil {
			return err
		}
		if last.parsed == nil {
			p, err := parseTable(last.raw)
			if err != nil {
				return d.apply(ctx, nat, natParsed, filter, natChains, filterChains)
			}
			last.parsed = &p
		}
		var p parsedTable
		if given {
			p = *natParsed
		} else {
			var err error
			if p, err = parseTable(t.payload); err != nil || p.table != t.table {
				return d.apply(ctx, nat, natParsed, filter, natChains, filterChains)
			}
		}
		changes = append(changes, change{t.table, diffTables(*last.parsed, p), p})
	}
	for _, c := range changes {
		if c.partial != nil {
			delete(d.last, c.table)
			if err := d.restore(ctx, c.table, c.partial); err != nil {
				delete(d.known, c.table)
				return err
			}
			if known := d.known[c.table]; known != nil {
				declared, deleted := scanChains(c.partial)
				for _, n := range declared {
					known[n] = true
				}
				for _, n := range deleted {
					delete(known, n)
				}
			}
		}
		raw := nat
		if c.table == TableFilter {
			raw = filter
		}
		d.last[c.table] = &lastRules{raw: raw, parsed: &c.parsed}
		d.log.Debug("synced rules", "table", c.table, "bytes", len(c.partial))
	}
	return nil
}

// Chains returns the SKP- chains present in table (nat or filter), sorted.
func (d *Dataplane) Chains(table string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.chains(context.Background(), table)
}

func (d *Dataplane) chains(ctx context.Context, table string) ([]string, error) {
	return listChains(ctx, d.cfg.IPTables, table)
}

// listChains returns the SKP- chains of table, sorted.
func listChains(ctx context.Context, bin, table string) ([]string, error) {
	out, err := listTable(ctx, bin, table)
	if err != nil {
		return nil, err
	}
	var ours []string
	for line := range strings.Lines(string(out)) {
		if c, ok := strings.CutPrefix(strings.TrimSpace(line), "-N "); ok && strings.HasPrefix(c, ChainPrefix) {
			ours = append(ours, c)
		}
	}
	slices.Sort(ours)
	return ours, nil
}

// listTable returns `iptables -t table -S`: "-P" lines for the built-in
// chains, "-N" lines for the others, then the "-A" rule lines (the same
// text as iptables-save's). It reads that table only, unlike iptables-save
// -t with the nf_tables backend, which reads every table: 0.4 s for the
// filter table's few rules when nat holds 120,000.
func listTable(ctx context.Context, bin, table string) ([]byte, error) {
	if table != TableNAT && table != TableFilter {
		return nil, fmt.Errorf("%w: %q", ErrBadTable, table)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-w", "-t", table, "-S")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("dataplane: iptables -t %s -S: %w: %s", table, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// scanChains returns the SKP- chains a restore payload (or iptables-save
// output) declares (":SKP-X - [0:0]") and deletes ("-X SKP-X").
func scanChains(payload []byte) (declared, deleted []string) {
	sc := bufio.NewScanner(bytes.NewReader(payload))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.HasPrefix(line, []byte(":"+ChainPrefix)):
			if name, _, _ := bytes.Cut(line[1:], []byte(" ")); len(name) > 0 {
				declared = append(declared, string(name))
			}
		case bytes.HasPrefix(line, []byte("-X "+ChainPrefix)):
			deleted = append(deleted, strings.TrimSpace(string(line[3:])))
		}
	}
	return declared, deleted
}

func setOf(chains []string) map[string]bool {
	s := make(map[string]bool, len(chains))
	for _, c := range chains {
		s[c] = true
	}
	return s
}

func checkPayload(table string, payload []byte) error {
	if len(payload) == 0 {
		return nil
	}
	if !bytes.HasPrefix(payload, []byte("*"+table+"\n")) {
		first, _, _ := bytes.Cut(payload, []byte("\n"))
		return fmt.Errorf("%w: the %s payload starts with %q, want %q", ErrBadPayload, table, first, "*"+table)
	}
	return nil
}

// deletion is a restore payload that deletes the rules (iptables-save
// "-A" lines, turned into "-D") and then flushes and deletes the chains.
// Every chain is flushed before any is deleted, since the chains may jump
// to one another.
func deletion(table string, rules, chains []string) []byte {
	var b bytes.Buffer
	b.WriteString("*" + table + "\n")
	for _, r := range rules {
		b.WriteString("-D " + strings.TrimPrefix(r, "-A ") + "\n")
	}
	for _, c := range chains {
		b.WriteString("-F " + c + "\n")
	}
	for _, c := range chains {
		b.WriteString("-X " + c + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

// restore writes payload into table with one iptables-restore.
func (d *Dataplane) restore(ctx context.Context, table string, payload []byte) error {
	if len(payload) == 0 {
		return nil
	}
	return restore(ctx, d.cfg.IPTablesRestore, table, payload)
}

var errorLine = regexp.MustCompile(`(?:line:? )(\d+)`)

func restore(ctx context.Context, bin, table string, payload []byte) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "--noflush", "--wait")
	cmd.Stdin = bytes.NewReader(payload)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		re := &RestoreError{Table: table, Stderr: stderr.String(), Err: err}
		if m := errorLine.FindStringSubmatch(re.Stderr); m != nil {
			re.Line, _ = strconv.Atoi(m[1])
			re.Text = payloadLine(payload, re.Line)
		}
		return re
	}
	return nil
}

// payloadLine returns line n (1-based) of payload.
func payloadLine(payload []byte, n int) string {
	for i := 1; len(payload) > 0; i++ {
		line, rest, _ := bytes.Cut(payload, []byte("\n"))
		if i == n {
			return string(line)
		}
		payload = rest
	}
	return ""
}
