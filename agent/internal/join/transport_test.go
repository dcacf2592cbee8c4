package join

import (
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestMasterOrder: the order starts at the node's seed, puts masters that
// failed lately last (until failedFor passes), and falls back to the last
// masters gossip knew when it knows none.
func TestMasterOrder(t *testing.T) {
	live := []string{"a:1", "b:1", "c:1"}
	now := time.Unix(1000, 0)
	set := &masterSet{masters: func() []string { return live }, seed: 4, failed: map[string]time.Time{}, log: slog.New(slog.DiscardHandler), now: func() time.Time { return now }}
	steps := []struct {
		name string
		act  func()
		want []string
	}{
		{"seed 4 of 3 starts at b", func() {}, []string{"b:1", "c:1", "a:1"}},
		{"b failed", func() { set.markFailed("b:1") }, []string{"c:1", "a:1", "b:1"}},
		{"c failed too", func() { set.markFailed("c:1") }, []string{"a:1", "b:1", "c:1"}},
		{"failures forgotten", func() { now = now.Add(failedFor) }, []string{"b:1", "c:1", "a:1"}},
		{"gossip knows none", func() { live = nil }, []string{"b:1", "c:1", "a:1"}},
		{"two masters", func() { live = []string{"a:1", "c:1"} }, []string{"a:1", "c:1"}},
	}
	for _, s := range steps {
		s.act()
		if got := set.order(); !slices.Equal(got, s.want) {
			t.Errorf("%s: order() = %v, want %v", s.name, got, s.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	base := DefaultConfig()
	base.Join, base.NodeName, base.DataDir = "10.0.0.1:7946", "worker-1", "/var/lib/skiff/agent"
	base.NodeIP = netip.MustParseAddr("10.0.0.2")
	tests := []struct {
		name   string
		mutate func(*Config)
		ok     bool
	}{
		{"defaults", func(*Config) {}, true},
		{"bad node name", func(c *Config) { c.NodeName = "Worker_1" }, false},
		{"no node IP", func(c *Config) { c.NodeIP = netip.Addr{} }, false},
		{"unspecified node IP", func(c *Config) { c.NodeIP = netip.IPv4Unspecified() }, false},
		{"no data dir", func(c *Config) { c.DataDir = "" }, false},
		{"join without port", func(c *Config) { c.Join = "10.0.0.1" }, false},
		{"every address, port 0", func(c *Config) { c.GossipAddr = ":0" }, false},
		{"loopback, port 0", func(c *Config) { c.GossipAddr = "127.0.0.1:0" }, true},
		{"malformed token", func(c *Config) { c.Token = "skf_plain" }, false},
		{"no timeout", func(c *Config) { c.Timeout = 0 }, false},
	}
	for _, tt := range tests {
		cfg := base
		tt.mutate(&cfg)
		if err := cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}
