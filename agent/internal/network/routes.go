package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteProtocol marks the routes Skiff installs (`ip route ... proto 90`,
// 0x5a, unassigned in iproute2's rt_protos): SyncRoutes and Cleanup only
// ever change or delete routes carrying it.
const RouteProtocol netlink.RouteProtocol = 0x5a

// NodeRoute is another node's pod CIDR and the address it is reached at.
type NodeRoute struct {
	PodCIDR netip.Prefix
	NodeIP  netip.Addr
}

// SyncRoutes makes the main routing table hold exactly one Skiff route per
// entry of routes (PodCIDR via NodeIP), except this node's own pod CIDR and
// node IP, and removes every other Skiff route. A prefix that already has
// a route of another origin is left alone (logged). Entries that are not
// IPv4 are ignored. It goes on past a failing route and returns every
// error, joined.
func (n *Network) SyncRoutes(routes []NodeRoute) error {
	want := make(map[netip.Prefix]netip.Addr, len(routes))
	for _, r := range routes {
		if !r.PodCIDR.IsValid() || !r.PodCIDR.Addr().Is4() || !r.NodeIP.Is4() {
			continue
		}
		p := r.PodCIDR.Masked()
		if p == n.cfg.PodCIDR.Masked() || r.NodeIP == n.cfg.NodeIP {
			continue
		}
		want[p] = r.NodeIP
	}

	all, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("network: listing routes: %w", err)
	}
	var errs []error
	foreign := make(map[netip.Prefix]bool)
	for _, r := range all {
		dst, ok := routeDst(r)
		if !ok {
			continue
		}
		if r.Protocol != RouteProtocol {
			foreign[dst] = true
			continue
		}
		if gw, ok := want[dst]; ok && r.Gw != nil && r.Gw.Equal(net.IP(gw.AsSlice())) {
			delete(want, dst) // already right
			continue
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("network: deleting route %v: %w", dst, err))
		}
	}
	for dst, gw := range want {
		if foreign[dst] {
			n.log.Warn("not routing a node's pod CIDR: the prefix already has a route", "podCIDR", dst, "nodeIP", gw)
			continue
		}
		r := skiffRoute(dst, gw)
		if err := netlink.RouteAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("network: adding route %v via %v: %w", dst, gw, err))
		}
	}
	return errors.Join(errs...)
}

func skiffRoute(dst netip.Prefix, gw netip.Addr) *netlink.Route {
	return &netlink.Route{
		Dst:      &net.IPNet{IP: net.IP(dst.Addr().AsSlice()), Mask: net.CIDRMask(dst.Bits(), 32)},
		Gw:       net.IP(gw.AsSlice()),
		Protocol: RouteProtocol,
		Table:    unix.RT_TABLE_MAIN,
		Scope:    netlink.SCOPE_UNIVERSE,
	}
}

func routeDst(r netlink.Route) (netip.Prefix, bool) {
	if r.Dst == nil {
		return netip.Prefix{}, false // the default route
	}
	a, ok := netip.AddrFromSlice(r.Dst.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := r.Dst.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

// deleteRoutes removes every route marked RouteProtocol, in every table.
func deleteRoutes() error {
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("network: listing routes: %w", err)
	}
	var errs []error
	for _, r := range rs {
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("network: deleting route %v: %w", r.Dst, err))
		}
	}
	return errors.Join(errs...)
}
