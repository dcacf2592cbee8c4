package network

import (
	"encoding/json"
	"net/netip"
)

// NetworkName is the CNI network name: the conflist's "name", the
// host-local data subdirectory and the prefix of libcni's cache files.
const NetworkName = "skiff"

// CNIVersion is the spec version of the generated conflist; the Debian
// plugins (1.1.x) support up to 1.0.0.
const CNIVersion = "1.0.0"

// podInterface is the pod's interface name (CNI_IFNAME).
const podInterface = "eth0"

type confList struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Plugins    []any  `json:"plugins"`
}

type bridgeConf struct {
	Type   string `json:"type"`
	Bridge string `json:"bridge"`
	// IsGateway puts the pod CIDR's first address on the bridge and makes it
	// the pods' default gateway.
	IsGateway bool `json:"isGateway"`
	// IPMasq stays false: the plugin's rule would also NAT pod→pod traffic
	// across nodes; EnsureMasquerade installs Skiff's own rules.
	IPMasq bool `json:"ipMasq"`
	// HairpinMode lets a pod reach itself through a Service VIP.
	HairpinMode bool     `json:"hairpinMode"`
	MTU         int      `json:"mtu"`
	IPAM        ipamConf `json:"ipam"`
}

type ipamConf struct {
	Type    string        `json:"type"`
	DataDir string        `json:"dataDir"`
	Ranges  [][]ipamRange `json:"ranges"`
	Routes  []ipamRoute   `json:"routes"`
}

type ipamRange struct {
	Subnet  string `json:"subnet"`
	Gateway string `json:"gateway"`
}

type ipamRoute struct {
	Dst string `json:"dst"`
}

type portmapConf struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
}

type loopbackConf struct {
	Type string `json:"type"`
}

// gateway is the pod CIDR's first address: the bridge's address and the
// pods' default gateway.
func gateway(podCIDR netip.Prefix) netip.Addr {
	return podCIDR.Masked().Addr().Next()
}

// confListBytes returns the CNI network configuration list for cfg, which
// must be valid. The order of plugins is the ADD order: bridge (with
// host-local IPAM), then portmap on its result, then loopback, which brings
// up the pod's lo and passes the previous result through unchanged.
func confListBytes(cfg Config) []byte {
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	list := confList{
		CNIVersion: CNIVersion,
		Name:       NetworkName,
		Plugins: []any{
			bridgeConf{
				Type:        "bridge",
				Bridge:      cfg.Bridge,
				IsGateway:   true,
				IPMasq:      false,
				HairpinMode: true,
				MTU:         mtu,
				IPAM: ipamConf{
					Type:    "host-local",
					DataDir: cfg.IPAMDir,
					Ranges: [][]ipamRange{{{
						Subnet:  cfg.PodCIDR.Masked().String(),
						Gateway: gateway(cfg.PodCIDR).String(),
					}}},
					Routes: []ipamRoute{{Dst: "0.0.0.0/0"}},
				},
			},
			portmapConf{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}},
			loopbackConf{Type: "loopback"},
		},
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		panic("network: marshalling the conflist: " + err.Error()) // only plain structs above
	}
	return append(b, '\n')
}
