package membership

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"
)

// member runs a pool member named name on loopback until stop or the end of
// the test; it joins the addresses peers returns.
func member(t *testing.T, name string, key []byte, meta Meta, peers ...string) (p *Pool, stop func()) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Name, cfg.BindAddr, cfg.Key, cfg.Meta, cfg.Logger = name, "127.0.0.1:0", key, meta, slog.New(slog.DiscardHandler)
	cfg.RejoinInterval = 200 * time.Millisecond
	cfg.Peers = func(context.Context) ([]string, error) { return peers, nil }
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: Run: %v", name, err)
			}
		}
	}
	t.Cleanup(stop)
	return p, stop
}

func addr(t *testing.T, p *Pool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	a, err := p.Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond) // between polls
	}
}

func names(ms []Member) string {
	var b bytes.Buffer
	for _, m := range ms {
		fmt.Fprintf(&b, "%s:%v ", m.Name, m.Alive)
	}
	return b.String()
}

// TestPool: a master and two workers find each other with their metadata; a
// member with another key stays out; a stopped worker is dead to the
// others within seconds and alive again when it comes back.
func TestPool(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	m, _ := member(t, "m1", key, Meta{Master: true, API: "https://127.0.0.1:6443"})
	seed := addr(t, m)
	w1, _ := member(t, "w1", key, Meta{Worker: true, NodeIP: "10.0.0.1", PodCIDR: "10.244.1.0/24"}, seed)
	_, stopW2 := member(t, "w2", key, Meta{Worker: true, NodeIP: "10.0.0.2"}, seed)
	stranger, _ := member(t, "intruder", bytes.Repeat([]byte{8}, KeySize), Meta{Worker: true}, seed)

	waitFor(t, 10*time.Second, "three members seen by the master", func() error {
		if got := names(m.Members()); got != "m1:true w1:true w2:true " {
			return fmt.Errorf("got %s", got)
		}
		return nil
	})
	waitFor(t, 10*time.Second, "three members seen by w1", func() error {
		if got := names(w1.Members()); got != "m1:true w1:true w2:true " {
			return fmt.Errorf("got %s", got)
		}
		return nil
	})
	ms := w1.Members()
	if len(ms) != 3 || ms[0].Name != "m1" || !ms[0].Meta.Master || ms[0].Meta.API != "https://127.0.0.1:6443" || ms[1].Meta.PodCIDR != "10.244.1.0/24" {
		t.Errorf("w1 sees %+v", ms)
	}
	if got := w1.MasterAPIs(); len(got) != 1 || got[0] != "127.0.0.1:6443" {
		t.Errorf("w1's master APIs: got %v, want [127.0.0.1:6443]", got)
	}
	if got := names(stranger.Members()); got != "intruder:true " {
		t.Errorf("a member with another key got in: %s", got)
	}
	if _, known := m.Alive("intruder"); known {
		t.Errorf("the master knows of the intruder")
	}

	select {
	case <-m.Changed(): // drain
	default:
	}
	stopW2()
	stoppedAt := time.Now()
	waitFor(t, 15*time.Second, "w2 dead to the master", func() error {
		if alive, known := m.Alive("w2"); !known || alive {
			return fmt.Errorf("alive %v known %v", alive, known)
		}
		return nil
	})
	t.Logf("a stopped member was dead to the others after %v", time.Since(stoppedAt))
	select {
	case <-m.Changed():
	default:
		t.Errorf("no change signalled for w2's death")
	}
	if got := names(m.Members()); got != "m1:true w1:true w2:false " {
		t.Errorf("members after w2 died: got %s", got)
	}

	member(t, "w2", key, Meta{Worker: true}, seed)
	waitFor(t, 10*time.Second, "w2 alive again", func() error {
		if alive, _ := m.Alive("w2"); !alive {
			return fmt.Errorf("not yet")
		}
		return nil
	})
}

func TestConfigValidate(t *testing.T) {
	good := func() Config {
		c := DefaultConfig()
		c.Name, c.BindAddr, c.Key = "n", "127.0.0.1:0", make([]byte, KeySize)
		c.Peers = func(context.Context) ([]string, error) { return nil, nil }
		return c
	}
	for name, mutate := range map[string]func(*Config){
		"short key":  func(c *Config) { c.Key = c.Key[:16] },
		"no name":    func(c *Config) { c.Name = "" },
		"bad addr":   func(c *Config) { c.BindAddr = "nowhere" },
		"big meta":   func(c *Config) { c.Meta.API = string(bytes.Repeat([]byte{'a'}, 600)) },
		"no peers":   func(c *Config) { c.Peers = nil },
		"no rejoins": func(c *Config) { c.RejoinInterval = 0 },
	} {
		c := good()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: got no error", name)
		}
	}
	c := good()
	if err := c.Validate(); err != nil {
		t.Errorf("good config: %v", err)
	}
}

// TestSetMeta: a worker's new metadata (its pod CIDR, once assigned) reaches
// the other members; metadata set before Run is what Run announces.
func TestSetMeta(t *testing.T) {
	key := bytes.Repeat([]byte{9}, KeySize)
	m, _ := member(t, "m1", key, Meta{Master: true, API: "https://127.0.0.1:6443"})
	cfg := DefaultConfig()
	cfg.Name, cfg.BindAddr, cfg.Key, cfg.Logger = "w1", "127.0.0.1:0", key, slog.New(slog.DiscardHandler)
	cfg.Meta = Meta{Worker: true, NodeIP: "10.0.0.1"}
	mAddr := addr(t, m)
	cfg.Peers = func(context.Context) ([]string, error) { return []string{mAddr}, nil }
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	before := Meta{Worker: true, NodeIP: "10.0.0.2"}
	if err := w.SetMeta(before); err != nil {
		t.Fatalf("SetMeta before Run: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("w1: Run: %v", err)
		}
	})
	seen := func(want Meta) func() error {
		return func() error {
			got, ok := m.Member("w1")
			if !ok || !got.Alive || got.Meta != want {
				return fmt.Errorf("m1 sees w1 as %+v (known %v), want alive with %+v", got, ok, want)
			}
			return nil
		}
	}
	waitFor(t, 10*time.Second, "m1 to see w1's first metadata", seen(before))

	after := Meta{Worker: true, NodeIP: "10.0.0.2", PodCIDR: "10.244.3.0/24"}
	if err := w.SetMeta(after); err != nil {
		t.Fatalf("SetMeta: %v", err)
	}
	if got := w.Meta(); got != after {
		t.Errorf("Meta() = %+v, want %+v", got, after)
	}
	waitFor(t, 10*time.Second, "m1 to see w1's pod CIDR", seen(after))

	if err := w.SetMeta(Meta{API: string(bytes.Repeat([]byte{'x'}, 600))}); err == nil {
		t.Error("SetMeta with 600 bytes of metadata: got nil, want an error")
	}
	if got := w.Meta(); got != after {
		t.Errorf("after a refused SetMeta, Meta() = %+v, want %+v", got, after)
	}
}

// TestJoinErrors: Join reports why a join fails, promptly: a member that
// refuses the key, and an address where nobody listens.
func TestJoinErrors(t *testing.T) {
	m, _ := member(t, "m1", bytes.Repeat([]byte{1}, KeySize), Meta{Master: true})
	stranger, _ := member(t, "s1", bytes.Repeat([]byte{2}, KeySize), Meta{Worker: true})
	mAddr := addr(t, m)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	start := time.Now()
	n, err := stranger.Join(ctx, []string{mAddr})
	if !errors.Is(err, ErrKeyRefused) || n != 0 {
		t.Fatalf("Join with the wrong key = %d, %v; want 0 and ErrKeyRefused", n, err)
	}
	t.Logf("wrong key: %v (after %v)", err, time.Since(start))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Join with the wrong key took %v, want a prompt failure", d)
	}
	if _, known := m.Alive("s1"); known {
		t.Error("m1 knows s1, which has another key")
	}

	// An address where nobody listens: a closed port of this host.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	if n, err := stranger.Join(ctx, []string{closed}); err == nil || errors.Is(err, ErrKeyRefused) || n != 0 {
		t.Fatalf("Join of a closed port = %d, %v; want 0 and an error other than ErrKeyRefused", n, err)
	} else {
		t.Logf("closed port: %v", err)
	}
}

// TestLogWriter: memberlist's lines are logged at their level, without
// their prefixes.
func TestLogWriter(t *testing.T) {
	var b bytes.Buffer
	l := slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	w := logWriter{l}
	for _, line := range []string{
		"[INFO] memberlist: Suspect w1 has failed, no acks received\n",
		"[WARN] memberlist: Refuting a suspect message (from: m0)\n",
		"[ERR] memberlist: Failed fallback TCP ping: timeout\n",
		"[DEBUG] memberlist: Stream connection from=10.0.0.1:4000\n",
		"something else\n",
	} {
		if n, err := w.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", line, n, err)
		}
	}
	want := `level=INFO msg="Suspect w1 has failed, no acks received"
level=WARN msg="Refuting a suspect message (from: m0)"
level=WARN msg="Failed fallback TCP ping: timeout"
level=DEBUG msg="Stream connection from=10.0.0.1:4000"
level=DEBUG msg="something else"
`
	if b.String() != want {
		t.Errorf("logged\n%s\nwant\n%s", b.String(), want)
	}
}
