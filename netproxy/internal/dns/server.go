package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Defaults of Config.
const (
	DefaultDomain         = "cluster.local"
	DefaultTTL            = 5
	DefaultForwardTimeout = 2 * time.Second
	DefaultMaxForwards    = 1000
)

// Errors.
var (
	// ErrInvalidConfig is returned by Validate and New for a Config that
	// cannot work; the message says which field.
	ErrInvalidConfig = errors.New("dns: invalid config")
	// ErrAlreadyRunning is returned by Run when the Server already ran.
	ErrAlreadyRunning = errors.New("dns: Run called twice")
	// ErrNoNameservers is returned by ParseResolvConf for a file without
	// a usable nameserver line.
	ErrNoNameservers = errors.New("dns: no nameserver in resolv.conf")
)

// Config configures the cluster DNS server.
type Config struct {
	// Services returns the current Services. It is called concurrently,
	// must not block, and its result is only read. Required.
	Services func() []*corev1.Service
	// Service returns one Service, or nil when it does not exist.
	// Optional: an indexed lookup (an informer lister's
	// Services(ns).Get(name)) that spares a scan of Services on every
	// query; without it Services is scanned.
	Service func(namespace, name string) *corev1.Service
	// Slices returns the EndpointSlices of one Service (label
	// kubernetes.io/service-name). It is called concurrently, must not
	// block, and its result is only read. Required.
	Slices func(namespace, service string) []*discoveryv1.EndpointSlice
	// Domain is the cluster domain, e.g. "cluster.local".
	Domain string
	// Listen are host:port addresses; UDP and TCP are served on each. A
	// port 0 picks one free port for both.
	Listen []string
	// FreeBind sets IP_FREEBIND on the sockets so an address that is not
	// (yet) assigned to an interface, such as a bridge created with the
	// first pod, can be bound.
	FreeBind bool
	// Upstreams are "host:port" resolvers for names outside Domain, tried
	// in order (see ParseResolvConf). None: such names get SERVFAIL.
	Upstreams []string
	// ForwardTimeout bounds each exchange with one upstream.
	ForwardTimeout time.Duration
	// MaxForwards bounds the queries being forwarded at once; beyond it a
	// forwarded query is REFUSED at once (as CoreDNS's max_concurrent),
	// so a slow upstream cannot pile up goroutines. 0: DefaultMaxForwards.
	MaxForwards int
	// TTL of every answer, in seconds.
	TTL    uint32
	Logger *slog.Logger
}

// DefaultConfig returns a Config with the defaults set; the caller sets
// Services, Slices, Listen and Upstreams.
func DefaultConfig() Config {
	return Config{
		Domain:         DefaultDomain,
		ForwardTimeout: DefaultForwardTimeout,
		MaxForwards:    DefaultMaxForwards,
		TTL:            DefaultTTL,
		Logger:         slog.Default(),
	}
}

// Validate reports the first problem with cfg, wrapping ErrInvalidConfig.
func (cfg Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
	}
	if cfg.Services == nil || cfg.Slices == nil {
		return bad("Services and Slices are required")
	}
	if d := strings.Trim(cfg.Domain, "."); d == "" {
		return bad("empty Domain")
	} else if _, ok := dns.IsDomainName(d); !ok {
		return bad("Domain %q is not a domain name", cfg.Domain)
	}
	if len(cfg.Listen) == 0 {
		return bad("no Listen address")
	}
	for _, a := range cfg.Listen {
		if _, err := netip.ParseAddrPort(a); err != nil {
			return bad("Listen address %q: %v", a, err)
		}
	}
	for _, a := range cfg.Upstreams {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return bad("upstream %q: %v", a, err)
		}
	}
	if cfg.ForwardTimeout <= 0 {
		return bad("ForwardTimeout %v is not positive", cfg.ForwardTimeout)
	}
	if cfg.MaxForwards < 0 {
		return bad("MaxForwards %d is negative", cfg.MaxForwards)
	}
	if cfg.TTL > 3600 {
		return bad("TTL %d above 3600", cfg.TTL)
	}
	return nil
}

// Server is the cluster DNS server. Its methods may be called from any
// goroutine.
type Server struct {
	cfg    Config
	log    *slog.Logger
	zone   string // lower-case FQDN of the cluster domain, "cluster.local."
	serial uint32 // of the SOA

	forwards chan struct{} // a slot per query being forwarded
	// upstreams are cfg.Upstreams without this server's own addresses;
	// written by run before serving starts, read-only afterwards.
	upstreams []string

	ready   chan struct{}
	running atomic.Bool // Run was called
	mu      sync.Mutex
	addrs   []string // guarded by mu
}

// New validates cfg and returns a Server; nothing is bound until Run.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxForwards == 0 {
		cfg.MaxForwards = DefaultMaxForwards
	}
	return &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		zone:      dns.Fqdn(strings.ToLower(strings.Trim(cfg.Domain, "."))),
		serial:    uint32(time.Now().Unix()),
		forwards:  make(chan struct{}, cfg.MaxForwards),
		upstreams: cfg.Upstreams,
		ready:     make(chan struct{}),
	}, nil
}

// Ready is closed once Run has bound every address (Addrs is then
// complete), or when Run failed to.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs returns the bound "ip:port" addresses, one per Listen entry and
// each serving both UDP and TCP; nil before Ready.
func (s *Server) Addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.addrs...)
}

// Run binds UDP and TCP on every Listen address and serves until ctx ends;
// it returns after every listener is closed and every in-flight query is
// answered. A bind failure or a server failure ends Run with an error.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	return s.run(ctx)
}

func (s *Server) run(ctx context.Context) error {
	readyOnce := sync.OnceFunc(func() { close(s.ready) })
	defer readyOnce()

	var conns []net.PacketConn
	var lns []net.Listener
	closeAll := func() {
		for _, c := range conns {
			_ = c.Close()
		}
		for _, l := range lns {
			_ = l.Close()
		}
	}
	var addrs []string
	for _, a := range s.cfg.Listen {
		pc, ln, err := s.listen(ctx, a)
		if err != nil {
			closeAll()
			return err
		}
		conns, lns = append(conns, pc), append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}

	s.upstreams = s.withoutSelf(addrs)

	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) { s.serve(ctx, w, r) })
	var servers []*dns.Server
	for i := range conns {
		servers = append(servers,
			&dns.Server{PacketConn: conns[i], Handler: handler},
			&dns.Server{Listener: lns[i], Handler: handler, ReadTimeout: 10 * time.Second, IdleTimeout: idleTimeout})
	}

	// Each server reports once: started, or failed before starting. Only
	// started servers can be shut down (ShutdownContext refuses others).
	started := make(chan struct{}, len(servers))
	errs := make(chan error, len(servers))
	var wg sync.WaitGroup
	for _, srv := range servers {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		wg.Go(func() {
			if err := srv.ActivateAndServe(); err != nil {
				errs <- err
			}
		})
	}
	var runErr error
	for n := 0; n < len(servers) && runErr == nil; n++ {
		select {
		case <-started:
		case err := <-errs:
			runErr = fmt.Errorf("dns: serving: %w", err)
		}
	}
	if runErr == nil {
		s.mu.Lock()
		s.addrs = addrs
		s.mu.Unlock()
		readyOnce()
		s.log.Info("cluster DNS serving", "addrs", addrs, "domain", s.zone, "upstreams", s.upstreams)
		select {
		case <-ctx.Done():
		case err := <-errs:
			runErr = fmt.Errorf("dns: serving: %w", err)
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ForwardTimeout*time.Duration(len(s.upstreams)+1)+time.Second)
	defer cancel()
	for _, srv := range servers {
		_ = srv.ShutdownContext(shutdownCtx) // "not started" for a server that failed
	}
	closeAll()
	wg.Wait()
	return runErr
}

// withoutSelf drops the upstreams that are this server (bound at addrs,
// or on every address of a port bound on the unspecified address): a node
// whose resolv.conf names the cluster DNS would forward in a loop.
func (s *Server) withoutSelf(addrs []string) []string {
	var out []string
	for _, up := range s.cfg.Upstreams {
		upAP, err := netip.ParseAddrPort(up)
		self := false
		for _, a := range addrs {
			ap := netip.MustParseAddrPort(a)
			if err == nil && ap.Port() == upAP.Port() &&
				(ap.Addr() == upAP.Addr() || (ap.Addr().IsUnspecified() && upAP.Addr().IsLoopback())) {
				self = true
			}
		}
		if self {
			s.log.Warn("cluster DNS: an upstream is this server; not forwarding to it", "upstream", up)
			continue
		}
		out = append(out, up)
	}
	return out
}

// idleTimeout closes idle TCP connections of clients that keep them open.
func idleTimeout() time.Duration { return 8 * time.Second }

// listen binds UDP and TCP on addr; with port 0 both get the same port.
func (s *Server) listen(ctx context.Context, addr string) (net.PacketConn, net.Listener, error) {
	lc := net.ListenConfig{}
	if s.cfg.FreeBind {
		lc.Control = func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				level, opt := unix.SOL_IP, unix.IP_FREEBIND
				if strings.HasSuffix(network, "6") {
					level, opt = unix.SOL_IPV6, unix.IPV6_FREEBIND
				}
				serr = unix.SetsockoptInt(int(fd), level, opt, 1)
			})
			return errors.Join(err, serr)
		}
	}
	ap := netip.MustParseAddrPort(addr) // Validate checked it
	for attempt := 0; ; attempt++ {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dns: listening on tcp %s: %w", addr, err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := lc.ListenPacket(ctx, "udp", netip.AddrPortFrom(ap.Addr(), uint16(port)).String())
		if err == nil {
			return pc, ln, nil
		}
		_ = ln.Close()
		// A port picked for TCP can be taken for UDP by someone else;
		// pick again.
		if ap.Port() != 0 || attempt == 10 {
			return nil, nil, fmt.Errorf("dns: listening on udp %s: %w", net.JoinHostPort(ap.Addr().String(), strconv.Itoa(port)), err)
		}
	}
}

// serve answers one query. It runs concurrently with other queries.
func (s *Server) serve(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) {
	start := time.Now()
	proto := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		proto = "tcp"
	}
	var m *dns.Msg
	forwarded := false
	switch {
	case r.Opcode != dns.OpcodeQuery:
		m = new(dns.Msg)
		m.SetRcode(r, dns.RcodeNotImplemented)
	case len(r.Question) != 1:
		m = new(dns.Msg)
		m.SetRcode(r, dns.RcodeFormatError)
	case s.inZone(strings.ToLower(r.Question[0].Name)):
		m = s.local(ctx, r)
	default:
		if r.Question[0].Qtype == dns.TypePTR {
			m = s.reverse(ctx, r)
		}
		if m == nil {
			forwarded = true
			m = s.forward(ctx, r, proto)
		}
	}
	m.RecursionAvailable = true

	// The client's buffer size (RFC 6891: below 512 means 512); our OPT
	// mirrors the client's, and there is none for a client without EDNS0.
	size := dns.MinMsgSize
	reqOpt := r.IsEdns0()
	if reqOpt != nil {
		size = max(int(reqOpt.UDPSize()), dns.MinMsgSize)
	}
	respOpt := m.IsEdns0()
	switch {
	case reqOpt == nil && respOpt != nil:
		stripOpt(m)
	case reqOpt != nil && respOpt == nil:
		m.SetEdns0(uint16(min(size, dns.DefaultMsgSize)), reqOpt.Do())
	}
	if proto == "udp" {
		m.Truncate(size)
	}
	m.Compress = true
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("dns: writing an answer", "err", err, "client", w.RemoteAddr().String())
	}
	if s.log.Enabled(ctx, slog.LevelDebug) {
		q := dns.Question{}
		if len(r.Question) > 0 {
			q = r.Question[0]
		}
		s.log.Debug("dns query", "name", q.Name, "type", dns.TypeToString[q.Qtype], "proto", proto,
			"client", w.RemoteAddr().String(), "rcode", dns.RcodeToString[m.Rcode], "answers", len(m.Answer),
			"truncated", m.Truncated, "forwarded", forwarded, "duration", time.Since(start))
	}
}

// stripOpt removes OPT records from m's additional section.
func stripOpt(m *dns.Msg) {
	extra := m.Extra[:0:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
}

// inZone reports whether the lower-case name is the cluster domain or
// below it.
func (s *Server) inZone(name string) bool {
	name = dns.Fqdn(name)
	return name == s.zone || strings.HasSuffix(name, "."+s.zone)
}
