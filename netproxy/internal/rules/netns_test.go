package rules

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests load the payloads into a real kernel, always inside a fresh
// network namespace of their own, never the host's.

func requireIPTables(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, iptables)")
	}
	for _, bin := range []string{"ip", "iptables", "iptables-restore", "iptables-save"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s missing: %v", bin, err)
		}
	}
}

// newNetns creates a network namespace with a unique name, deleted at
// cleanup even when the test fails.
func newNetns(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "skprules" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	return name
}

func inNetns(t *testing.T, ns string, stdin []byte, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s\ninput:\n%s", strings.Join(args, " "), err, out, stdin)
	}
	return string(out)
}

// savedRules returns, per chain, the rules iptables-save prints for table.
func savedRules(t *testing.T, ns, table string) map[string][]string {
	t.Helper()
	out := inNetns(t, ns, nil, "iptables-save", "-t", table)
	rules := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "-A ") {
			chain := strings.Fields(l)[1]
			rules[chain] = append(rules[chain], normalize(l))
		}
	}
	return rules
}

var probabilityRE = regexp.MustCompile(`--probability ([0-9.]+)`)

// normalize spells a rule the way iptables-save does where it differs
// from what Compute writes: MARK's shorthands and the probability digits.
func normalize(rule string) string {
	rule = strings.Replace(rule, "-j MARK --or-mark 0x4000", "-j MARK --set-xmark 0x4000/0x4000", 1)
	rule = strings.Replace(rule, "-j MARK --xor-mark 0x4000", "-j MARK --set-xmark 0x4000/0x0", 1)
	return probabilityRE.ReplaceAllStringFunc(rule, func(s string) string {
		f, err := strconv.ParseFloat(strings.TrimPrefix(s, "--probability "), 64)
		if err != nil {
			return s
		}
		return fmt.Sprintf("--probability %.8f", f)
	})
}

// TestPayloadsLoad applies every golden input, random inputs and a large
// one, one after the other, with iptables-restore --noflush inside a fresh
// namespace, and checks that after each the kernel holds exactly the
// payload's rules in every chain the payload declares (so a later payload
// replaces an earlier one's chains).
func TestPayloadsLoad(t *testing.T) {
	requireIPTables(t)
	ns := newNetns(t)
	type named struct {
		name string
		in   Input
	}
	var inputs []named
	for _, tc := range goldenCases() {
		inputs = append(inputs, named{"golden/" + tc.name, tc.in})
	}
	r := mrand.New(mrand.NewPCG(6, 4))
	for i := range 15 {
		inputs = append(inputs, named{fmt.Sprintf("random/%d", i), randomInput(r)})
	}
	inputs = append(inputs, named{"scale-1000x10", scale(1000, 10)}, named{"golden/empty-again", baseInput()})

	for _, in := range inputs {
		res := Compute(in.in)
		for _, tb := range []struct {
			table   string
			payload []byte
			chains  []string
		}{{"nat", res.NAT, res.NATChains}, {"filter", res.Filter, res.FilterChains}} {
			start := time.Now()
			inNetns(t, ns, tb.payload, "iptables-restore", "--noflush", "--wait")
			took := time.Since(start)
			want := map[string][]string{}
			for _, rl := range parsePayload(t, tb.payload).rules {
				want[rl.chain] = append(want[rl.chain], normalize(rl.text))
			}
			got := savedRules(t, ns, tb.table)
			for _, c := range tb.chains {
				if !slices.Equal(got[c], want[c]) {
					t.Errorf("%s %s chain %s in the kernel:\n%s\nwant:\n%s", in.name, tb.table, c,
						strings.Join(got[c], "\n"), strings.Join(want[c], "\n"))
				}
			}
			if strings.HasPrefix(in.name, "scale") {
				t.Logf("%s %s: %d bytes, %d chains restored in %v", in.name, tb.table, len(tb.payload), len(tb.chains), took)
			}
		}
	}
	// The test with --test as well: the parser accepts the largest payload
	// without committing.
	res := Compute(scale(100, 3))
	inNetns(t, ns, res.NAT, "iptables-restore", "--noflush", "--test")
	inNetns(t, ns, res.Filter, "iptables-restore", "--noflush", "--test")
}

// TestPayloadRejectedWhenBroken makes sure the load test can fail: a
// payload that jumps to an undeclared chain is refused by the kernel side.
func TestPayloadRejectedWhenBroken(t *testing.T) {
	requireIPTables(t)
	ns := newNetns(t)
	bad := []byte("*nat\n:SKP-SERVICES - [0:0]\n-A SKP-SERVICES -j SKP-SVC-NOSUCHCHAIN0000\nCOMMIT\n")
	cmd := exec.Command("ip", "netns", "exec", ns, "iptables-restore", "--noflush")
	cmd.Stdin = bytes.NewReader(bad)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("iptables-restore accepted a jump to an undeclared chain: %s", out)
	}
}

func TestRandomFullySupported(t *testing.T) {
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables missing")
	}
	out, _ := exec.Command("iptables", "-j", "MASQUERADE", "--help").CombinedOutput()
	want := strings.Contains(string(out), "--random-fully")
	if got := RandomFullySupported(t.Context(), "iptables"); got != want {
		t.Errorf("RandomFullySupported: got %v, want %v", got, want)
	}
	if RandomFullySupported(t.Context(), "/nonexistent/iptables") {
		t.Error("RandomFullySupported: true for a missing binary")
	}
}
