package main

import (
	"context"
	"log/slog"
	"net/netip"

	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/agent"
	"github.com/skiff-sh/skiff/netproxy"
)

// serviceProxy runs netproxy as an agent addon: the node's Service rules
// and its node-local cluster DNS on the pods' bridge address.
type serviceProxy struct {
	dnsIP      netip.Addr
	resolvConf string
	logger     *slog.Logger
}

func (s serviceProxy) Run(ctx context.Context, env agent.AddonEnv) error {
	client, err := kubernetes.NewForConfig(env.REST)
	if err != nil {
		return err
	}
	cfg := netproxy.DefaultConfig()
	cfg.Client, cfg.NodeName, cfg.NodeIPs, cfg.ClusterCIDR = client, env.NodeName, []netip.Addr{env.NodeIP}, env.ClusterCIDR
	cfg.PodCIDR = env.PodCIDR
	cfg.Logger, cfg.ResolvConf = s.logger.With("component", "netproxy"), s.resolvConf
	if s.dnsIP.IsValid() {
		cfg.DNSIP, cfg.DNSListen = s.dnsIP, netip.AddrPortFrom(env.Gateway, 53)
	}
	p, err := netproxy.New(cfg)
	if err != nil {
		return err
	}
	return p.Run(ctx)
}
