package network

import (
	"bytes"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func goldenConfig() Config {
	cfg := DefaultConfig()
	cfg.ConfDir, cfg.CacheDir, cfg.IPAMDir = "/var/lib/skiff/agent/cni/net.d", "/var/lib/skiff/agent/cni/cache", "/var/lib/skiff/agent/cni/ipam"
	cfg.PodCIDR = netip.MustParsePrefix("10.244.3.0/24")
	cfg.NodeIP = netip.MustParseAddr("192.168.1.13")
	return cfg
}

func TestConfList(t *testing.T) {
	cfg := goldenConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "conflist.golden", confListBytes(cfg))

	cfg.MTU = 0                                          // 0 means the default
	cfg.PodCIDR = netip.MustParsePrefix("10.244.3.7/24") // unmasked input is masked
	checkGolden(t, "conflist.golden", confListBytes(cfg))
}

func TestRuleSet(t *testing.T) {
	tests := []struct {
		golden       string
		cluster, pod string
	}{
		{"rules.golden", "10.244.0.0/16", "10.244.3.0/24"},
		// A pod CIDR outside the cluster CIDR is still exempted and masqueraded.
		{"rules-outside.golden", "10.244.0.0/16", "10.99.0.0/24"},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			var b strings.Builder
			for _, c := range ruleSet(netip.MustParsePrefix(tt.cluster), netip.MustParsePrefix(tt.pod)) {
				b.WriteString("# table " + c.Table + ", jumped to from " + c.From + "\n")
				for _, l := range c.listing() {
					b.WriteString(l + "\n")
				}
			}
			checkGolden(t, tt.golden, []byte(b.String()))
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"no dirs", func(c *Config) { c.IPAMDir = "" }},
		{"long bridge", func(c *Config) { c.Bridge = "a-very-long-bridge" }},
		{"no pod CIDR", func(c *Config) { c.PodCIDR = netip.Prefix{} }},
		{"IPv6 pod CIDR", func(c *Config) { c.PodCIDR = netip.MustParsePrefix("fd00::/64") }},
		{"/31 pod CIDR", func(c *Config) { c.PodCIDR = netip.MustParsePrefix("10.244.3.0/31") }},
		{"MTU", func(c *Config) { c.MTU = 100 }},
		{"no plugin dirs", func(c *Config) { c.PluginDirs = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := goldenConfig()
			tt.change(&cfg)
			if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("got %v, want ErrInvalidConfig", err)
			}
		})
	}
}
