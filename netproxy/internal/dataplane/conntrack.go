package dataplane

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// FlushConntrackUDP deletes the UDP conntrack entries whose original
// destination or reply source is one of ips: call it with the VIPs of
// removed UDP Service ports and the addresses of removed UDP endpoints,
// after the rules no longer lead there, so that a client's next datagram
// is NATed afresh instead of following a stale entry to a dead endpoint.
// It runs `conntrack -D` (conntrack-tools, from PATH) in the calling
// thread's network namespace; having nothing to delete is not an error.
func FlushConntrackUDP(ips []netip.Addr) error {
	bin, err := exec.LookPath("conntrack")
	if err != nil {
		return fmt.Errorf("dataplane: %w", err)
	}
	var errs []error
	for _, ip := range ips {
		family := "ipv4"
		if ip.Is6() && !ip.Is4In6() {
			family = "ipv6"
		}
		addr := ip.Unmap().String()
		for _, dir := range []string{"--orig-dst", "--reply-src"} {
			var stderr bytes.Buffer
			cmd := exec.Command(bin, "-D", "-f", family, "-p", "udp", dir, addr)
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() == 1 && strings.Contains(stderr.String(), "0 flow entries") {
				err = nil // nothing matched
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("dataplane: conntrack -D -p udp %s %s: %w: %s", dir, addr, err, strings.TrimSpace(stderr.String())))
			}
		}
	}
	return errors.Join(errs...)
}
