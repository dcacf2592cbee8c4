package dns

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/miekg/dns"
)

// forward relays a query for a name outside the cluster domain to the
// upstreams; SERVFAIL when none answers.
func (s *Server) forward(ctx context.Context, r *dns.Msg, proto string) *dns.Msg {
	select {
	case s.forwards <- struct{}{}:
		defer func() { <-s.forwards }()
	default:
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeRefused)
		return m
	}
	req := r.Copy()
	resp := s.exchange(ctx, req, proto)
	if resp == nil {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		return m
	}
	resp.Id = r.Id
	return resp
}

// exchange sends req to the upstreams in order, each bounded by
// ForwardTimeout, over proto ("udp": retried over TCP with the same
// upstream when the answer is truncated). It returns the first answer that
// is neither SERVFAIL nor REFUSED, else the last such answer, else nil.
func (s *Server) exchange(ctx context.Context, req *dns.Msg, proto string) *dns.Msg {
	var last *dns.Msg
	for _, up := range s.upstreams {
		resp, err := s.exchangeOne(ctx, req, up, proto)
		if err == nil && resp.Truncated && proto == "udp" {
			resp, err = s.exchangeOne(ctx, req, up, "tcp")
		}
		if err != nil {
			s.log.Debug("dns: upstream failed", "upstream", up, "proto", proto, "name", req.Question[0].Name, "err", err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if resp.Rcode != dns.RcodeServerFailure && resp.Rcode != dns.RcodeRefused {
			return resp
		}
		last = resp
	}
	return last
}

func (s *Server) exchangeOne(ctx context.Context, req *dns.Msg, upstream, proto string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ForwardTimeout)
	defer cancel()
	c := dns.Client{Net: proto, Timeout: s.cfg.ForwardTimeout}
	q := req.Copy()
	q.Id = dns.Id() // a fresh ID per upstream exchange
	resp, _, err := c.ExchangeContext(ctx, q, upstream)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// ParseResolvConf returns the nameservers of a resolv.conf file as
// "ip:53" addresses (IPv6 in brackets), in file order. A file without a
// usable nameserver line is ErrNoNameservers.
func ParseResolvConf(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dns: reading resolv.conf: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		ip, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue
		}
		out = append(out, net.JoinHostPort(ip.String(), "53"))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dns: reading resolv.conf %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoNameservers, path)
	}
	return out, nil
}
