package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/coreos/go-iptables/iptables"
)

// lockPath serializes the choice of ID and subnet between labs.
const lockPath = "/run/skiff-lab.lock"

// allocate picks a free ID and /24 and creates the bridge with the /24's
// first address, under a machine-wide lock so that labs starting at once
// choose different ones, and adds the root namespace's FORWARD accept rule
// for traffic between the lab's hosts (bridged traffic passes iptables when
// br_netfilter is loaded).
func (l *Lab) allocate() error {
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lab: locking %s: %w", lockPath, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	used := map[byte]bool{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			if b := p.Addr().As4(); b[0] == 10 && b[1] == 99 {
				used[b[2]] = true
			}
		}
	}
	for range 100 {
		var r [3]byte
		rand.Read(r[:])
		id := hex.EncodeToString(r[:2])
		third := r[2]
		if used[third] || linkExists("sk"+id+"br") || nsExists("sk"+id+"-") {
			continue
		}
		l.id, l.bridge = id, "sk"+id+"br"
		l.subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, third, 0}), 24)
		l.gw = netip.AddrFrom4([4]byte{10, 99, third, 1})
		break
	}
	if l.id == "" {
		return fmt.Errorf("lab: no free ID and subnet in 10.99.0.0/16")
	}
	l.st = &state{ID: l.id, Subnet: l.subnet.String(), Bridge: l.bridge, Detached: l.cfg.Detach}
	l.st.Owner.Pid = os.Getpid()
	l.st.Owner.Start, _ = startTime(os.Getpid())
	l.st.Owner.Cmd = strings.Join(os.Args, " ")
	if err := l.record(func(*state) {}); err != nil {
		return err
	}
	steps := [][]string{
		{"link", "add", l.bridge, "type", "bridge"},
		{"addr", "add", netip.PrefixFrom(l.gw, 24).String(), "dev", l.bridge},
		{"link", "set", l.bridge, "up"},
	}
	for _, s := range steps {
		if _, err := run(context.Background(), "ip", s...); err != nil {
			return fmt.Errorf("lab: bridge: %w", err)
		}
	}
	ipt, err := iptables.New()
	if err != nil {
		return fmt.Errorf("lab: iptables: %w", err)
	}
	r := rule{Table: "filter", Chain: "FORWARD", Spec: []string{"-i", l.bridge, "-o", l.bridge, "-m", "comment", "--comment", "skiff lab " + l.id, "-j", "ACCEPT"}}
	if err := l.record(func(s *state) { s.Rules = append(s.Rules, r) }); err != nil {
		return err
	}
	if err := ipt.Insert(r.Table, r.Chain, 1, r.Spec...); err != nil {
		return fmt.Errorf("lab: iptables -I FORWARD: %w", err)
	}
	return nil
}

// nsExists reports whether a named network namespace starts with prefix.
func nsExists(prefix string) bool {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			return true
		}
	}
	return false
}

// addHost creates h's namespace and its link to the bridge: eth0 with h.IP,
// loopback up, a default route via the bridge, IP forwarding on (workers
// route their pods' traffic).
func (l *Lab) addHost(ctx context.Context, h *Host) error {
	if err := os.MkdirAll(h.Dir, 0o755); err != nil {
		return err
	}
	if err := l.record(func(s *state) { s.NetNS = append(s.NetNS, h.NetNS); s.Links = append(s.Links, h.Veth) }); err != nil {
		return err
	}
	peer := h.Veth + "p"
	steps := [][]string{
		{"netns", "add", h.NetNS},
		{"link", "add", h.Veth, "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "netns", h.NetNS},
		{"-n", h.NetNS, "link", "set", peer, "name", "eth0"},
		{"-n", h.NetNS, "addr", "add", netip.PrefixFrom(h.IP, 24).String(), "dev", "eth0"},
		{"-n", h.NetNS, "link", "set", "eth0", "up"},
		{"-n", h.NetNS, "link", "set", "lo", "up"},
		{"-n", h.NetNS, "route", "add", "default", "via", l.gw.String()},
		{"link", "set", h.Veth, "master", l.bridge},
		{"link", "set", h.Veth, "up"},
	}
	for _, s := range steps {
		if _, err := run(ctx, "ip", s...); err != nil {
			return fmt.Errorf("lab: host %s: %w", h.Name, err)
		}
	}
	if h.Role == RoleWorker {
		if _, err := l.Exec(ctx, h, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
			return fmt.Errorf("lab: host %s: %w", h.Name, err)
		}
	}
	return nil
}

// Command returns a command that runs name with args inside h's network
// namespace (nsenter --net; the mount namespace is the caller's).
func (l *Lab) Command(ctx context.Context, h *Host, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + h.NetNSPath, "--", name}, args...)...)
}

// Exec runs name with args inside h's network namespace and returns its
// combined output; a non-zero exit is an error carrying the output.
func (l *Lab) Exec(ctx context.Context, h *Host, name string, args ...string) (string, error) {
	out, err := l.Command(ctx, h, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("lab: %s: %s %s: %w: %s", h.Name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// CutLinks takes h off the network: its link to the bridge goes down, so
// nothing reaches it or leaves it (processes keep running).
func (l *Lab) CutLinks(h *Host) error {
	if _, err := run(context.Background(), "ip", "link", "set", h.Veth, "down"); err != nil {
		return fmt.Errorf("lab: cut %s: %w", h.Name, err)
	}
	return nil
}

// RestoreLinks undoes CutLinks.
func (l *Lab) RestoreLinks(h *Host) error {
	if _, err := run(context.Background(), "ip", "link", "set", h.Veth, "up"); err != nil {
		return fmt.Errorf("lab: restore %s: %w", h.Name, err)
	}
	return nil
}

// Partition drops every packet between hosts a and b (both directions),
// with iptables rules inside a's namespace (gone with it); Heal removes them.
func (l *Lab) Partition(a, b *Host) error {
	for _, r := range partitionRules(b) {
		if _, err := l.Exec(context.Background(), a, "iptables", append([]string{"-w", "-I"}, r...)...); err != nil {
			return err
		}
	}
	return nil
}

// Heal removes the rules of Partition(a, b).
func (l *Lab) Heal(a, b *Host) error {
	for _, r := range partitionRules(b) {
		if _, err := l.Exec(context.Background(), a, "iptables", append([]string{"-w", "-D"}, r...)...); err != nil {
			return err
		}
	}
	return nil
}

func partitionRules(b *Host) [][]string {
	c := []string{"-m", "comment", "--comment", "skiff lab partition", "-j", "DROP"}
	return [][]string{
		append([]string{"INPUT", "-s", b.IP.String()}, c...),
		append([]string{"OUTPUT", "-d", b.IP.String()}, c...),
		append([]string{"FORWARD", "-s", b.IP.String()}, c...),
		append([]string{"FORWARD", "-d", b.IP.String()}, c...),
	}
}
