package dataplane

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// The tests write their own payloads, in the shape netproxy/internal/rules
// produces (per service port: SKP-SERVICES matches VIP:port and jumps to
// an SKP-SVC chain whose statistic rules jump to SKP-SEP chains that
// DNAT; no endpoints: a REJECT in filter's SKP-SERVICES), so that the
// dataplane is tested on its own.

// svc is one service port.
type svc struct {
	name string // namespace/name:port
	vip  netip.AddrPort
	udp  bool
	eps  []netip.AddrPort
}

// rule is one rule of a chain, as iptables arguments.
type rule struct {
	table, chain string
	args         []string
}

// ruleSet is what genRules returns: chains per table (sorted) and rules.
type ruleSet struct {
	natChains, filterChains []string
	rules                   []rule
}

func chainHash(kind string, parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, ":")))
	return kind + strings.ToUpper(hex.EncodeToString(sum[:8]))
}

func (s svc) proto() string {
	if s.udp {
		return "udp"
	}
	return "tcp"
}

func (s svc) svcChain() string { return chainHash("SKP-SVC-", s.name, s.proto()) }
func (s svc) sepChain(ep netip.AddrPort) string {
	return chainHash("SKP-SEP-", s.name, s.proto(), ep.String())
}

// genRules computes the rules for svcs.
func genRules(svcs []svc) ruleSet {
	var rs ruleSet
	nat := func(chain string, args ...string) {
		rs.rules = append(rs.rules, rule{"nat", chain, args})
	}
	filter := func(chain string, args ...string) {
		rs.rules = append(rs.rules, rule{"filter", chain, args})
	}
	rs.natChains = []string{"SKP-SERVICES", "SKP-POSTROUTING", "SKP-MARK-MASQ"}
	rs.filterChains = []string{"SKP-SERVICES", "SKP-EXTERNAL", "SKP-FORWARD"}
	nat("SKP-POSTROUTING", "-m", "mark", "!", "--mark", "0x4000/0x4000", "-j", "RETURN")
	nat("SKP-POSTROUTING", "-j", "MARK", "--xor-mark", "0x4000")
	nat("SKP-POSTROUTING", "-j", "MASQUERADE")
	nat("SKP-MARK-MASQ", "-j", "MARK", "--or-mark", "0x4000")
	filter("SKP-FORWARD", "-m", "mark", "--mark", "0x4000/0x4000", "-j", "ACCEPT")
	for _, s := range svcs {
		match := []string{"-d", s.vip.Addr().String() + "/32", "-p", s.proto(), "-m", s.proto(), "--dport", fmt.Sprint(s.vip.Port())}
		comment := []string{"-m", "comment", "--comment", `"` + s.name + ` cluster IP"`}
		if len(s.eps) == 0 {
			filter("SKP-SERVICES", slices.Concat(match, comment, []string{"-j", "REJECT", "--reject-with", "icmp-port-unreachable"})...)
			continue
		}
		sc := s.svcChain()
		rs.natChains = append(rs.natChains, sc)
		nat("SKP-SERVICES", slices.Concat(match, comment, []string{"-j", sc})...)
		for i, ep := range s.eps {
			sep := s.sepChain(ep)
			rs.natChains = append(rs.natChains, sep)
			if n := len(s.eps) - i; n > 1 {
				nat(sc, "-m", "statistic", "--mode", "random", "--probability", fmt.Sprintf("%.10f", 1/float64(n)), "-j", sep)
			} else {
				nat(sc, "-j", sep)
			}
			nat(sep, "-s", ep.Addr().String()+"/32", "-j", "SKP-MARK-MASQ")
			nat(sep, "-p", s.proto(), "-m", s.proto(), "-j", "DNAT", "--to-destination", ep.String())
		}
	}
	slices.Sort(rs.natChains)
	slices.Sort(rs.filterChains)
	return rs
}

// payloads renders rs as iptables-restore input, one per table.
func (rs ruleSet) payloads() (nat, filter []byte) {
	return rs.payload("nat", rs.natChains), rs.payload("filter", rs.filterChains)
}

func (rs ruleSet) payload(table string, chains []string) []byte {
	var b bytes.Buffer
	b.WriteString("*" + table + "\n")
	for _, c := range chains {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	for _, r := range rs.rules {
		if r.table == table {
			b.WriteString("-A " + r.chain + " " + strings.Join(r.args, " ") + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

// bulk returns n service ports, 10.96.0.0/12 VIPs port 80, each with eps
// endpoints in 10.128.0.0/10 port 8080.
func bulk(n, eps int) []svc {
	svcs := make([]svc, n)
	for i := range svcs {
		s := svc{name: fmt.Sprintf("ns%d/svc%d:http", i%50, i), vip: netip.AddrPortFrom(addrAt("10.96.0.0", i+1), 80)}
		for j := range eps {
			s.eps = append(s.eps, netip.AddrPortFrom(addrAt("10.128.0.0", i*eps+j+1), 8080))
		}
		svcs[i] = s
	}
	return svcs
}

func addrAt(base string, off int) netip.Addr {
	b := netip.MustParseAddr(base).As4()
	v := binary.BigEndian.Uint32(b[:]) + uint32(off)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}
