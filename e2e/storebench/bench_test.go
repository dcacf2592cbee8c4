//go:build linux

package storebench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/skiff-sh/skiff/raftstore"
)

const (
	// valueSize is the size of every value written, in bytes.
	valueSize = 1024
	// keyPrefix is the prefix of every key the benchmark writes; the RSS
	// phase counts keys under it on each node.
	keyPrefix = "/storebench/"
	// loadWriters is the number of writers that fill the store before RSS is read.
	loadWriters = 64
	// warmupKeys caps the untimed warm-up that opens the clients' connections.
	warmupKeys = 500
	// opTimeout bounds one write.
	opTimeout = 10 * time.Second
	// startTimeout bounds bringing one cluster up, attempts included.
	startTimeout = 2 * time.Minute
	// applyTimeout bounds waiting for every node to apply the loaded keys.
	applyTimeout = 3 * time.Minute
	// loadTimeout bounds filling the store up to the key target.
	loadTimeout = 20 * time.Minute
)

// cluster is a running three-node store under test.
type cluster interface {
	// put writes key=value through the cluster's client (any endpoint).
	put(ctx context.Context, key string, value []byte) error
	// nodeCount returns the number of keys under prefix as a linearizable
	// read served by node i, so it reflects what node i itself has applied.
	nodeCount(ctx context.Context, i int, prefix string) (int64, error)
	// procs returns the server processes, one per node.
	procs() []*proc
}

// settings are the benchmark's tunables, read from the environment.
type settings struct {
	skiffBin string
	etcdBin  string
	duration time.Duration
	keys     int
	writers  []int
	// logDir keeps the servers' logs when set; otherwise they live and die
	// with the clusters' temp dirs.
	logDir string
	// skiffFailover sends every skiff write through one Client of all three
	// endpoints, which stays on the first endpoint until it fails, instead
	// of spreading writes over the nodes one request at a time.
	skiffFailover bool
}

func loadSettings(b *testing.B) settings {
	b.Helper()
	s := settings{duration: 5 * time.Second, keys: 100_000, writers: []int{1, 16, 64}}
	if v := os.Getenv("STOREBENCH_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("STOREBENCH_DURATION=%q: want a positive duration such as 5s", v)
		}
		s.duration = d
	}
	if v := os.Getenv("STOREBENCH_KEYS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2*warmupKeys {
			b.Fatalf("STOREBENCH_KEYS=%q: want an integer of at least %d", v, 2*warmupKeys)
		}
		s.keys = n
	}
	if v := os.Getenv("STOREBENCH_WRITERS"); v != "" {
		s.writers = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("STOREBENCH_WRITERS=%q: want comma-separated positive integers", v)
			}
			s.writers = append(s.writers, n)
		}
	}
	if s.logDir = os.Getenv("STOREBENCH_LOG_DIR"); s.logDir != "" {
		if err := os.MkdirAll(s.logDir, 0o755); err != nil {
			b.Fatalf("STOREBENCH_LOG_DIR: %v", err)
		}
	}
	switch v := os.Getenv("STOREBENCH_SKIFF_CLIENT"); v {
	case "", "roundrobin":
	case "failover":
		s.skiffFailover = true
	default:
		b.Fatalf("STOREBENCH_SKIFF_CLIENT=%q: want roundrobin or failover", v)
	}
	s.etcdBin = os.Getenv("ETCD_BIN")
	if s.etcdBin == "" {
		s.etcdBin = "/usr/bin/etcd"
		if p, err := exec.LookPath("etcd"); err == nil {
			s.etcdBin = p
		}
	}
	if _, err := os.Stat(s.etcdBin); err != nil {
		b.Fatalf("etcd binary: %v; install Debian's etcd-server (`make deps`) or set ETCD_BIN", err)
	}
	s.skiffBin = os.Getenv("SKIFF_BIN")
	if s.skiffBin == "" {
		s.skiffBin = buildSkiff(b)
	} else {
		abs, err := filepath.Abs(s.skiffBin)
		if err != nil {
			b.Fatalf("SKIFF_BIN: %v", err)
		}
		if _, err := os.Stat(abs); err != nil {
			b.Fatalf("SKIFF_BIN: %v; run `make build` first", err)
		}
		s.skiffBin = abs
	}
	return s
}

// logPath returns where node's log goes: STOREBENCH_LOG_DIR when set, else
// the cluster's temp dir base.
func (s settings) logPath(base, system, node string) string {
	if s.logDir != "" {
		return filepath.Join(s.logDir, system+"-"+node+".log")
	}
	return filepath.Join(base, node+".log")
}

// buildSkiff builds cmd/skiff of the enclosing main module as `make build`
// does and returns the binary's path.
func buildSkiff(b *testing.B) string {
	b.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(b.TempDir(), "skiff")
	ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
	defer cancel()
	// Build from the main module's root so its go.mod, not this module's,
	// selects the dependencies: the binary is the one `make build` makes.
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/skiff")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/skiff in %s: %v\n%s", root, err, out)
	}
	return bin
}

// benchContext returns a context that ends a minute before -timeout. The
// testing package's alarm does not cover benchmarks, and the go command kills
// the binary at -timeout plus a minute, skipping every cleanup; ending first
// lets a stuck phase fail with its processes stopped and temp dirs removed.
func benchContext(b *testing.B) context.Context {
	ctx := b.Context()
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > time.Minute {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d-time.Minute)
			b.Cleanup(cancel)
		}
	}
	return ctx
}

// runResult is the outcome of one timed run.
type runResult struct {
	writers  int
	ops      int
	elapsed  time.Duration
	p50, p99 time.Duration
	// slowest is the longest write and slowestAt when it started, counted
	// from the start of the run, to place a stall in time.
	slowest, slowestAt time.Duration
}

func (r runResult) rate() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// rssResult is the resident set size of each node once every node has
// applied keys keys.
type rssResult struct {
	keys   int64
	nodeMB []float64 // MiB, per node in node order
}

func (r rssResult) mean() float64 {
	var sum float64
	for _, v := range r.nodeMB {
		sum += v
	}
	return sum / float64(len(r.nodeMB))
}

func (r rssResult) max() float64 { return slices.Max(r.nodeMB) }

// systemResult collects one system's figures for the final table.
type systemResult struct {
	runs map[int]runResult
	rss  *rssResult
}

// BenchmarkStore runs the store workload against a three-node Skiff cluster
// and a three-member etcd cluster, one after the other, and prints both side
// by side. See the package doc for the sequence and the environment.
func BenchmarkStore(b *testing.B) {
	s := loadSettings(b)
	ctx := benchContext(b)
	results := map[string]*systemResult{}
	systems := []struct {
		name  string
		start func(context.Context, *testing.B, settings) (cluster, error)
	}{
		{"skiff", startSkiff},
		{"etcd", startEtcd},
	}
	for _, sys := range systems {
		b.Run(sys.name, func(b *testing.B) {
			res := &systemResult{runs: map[int]runResult{}}
			results[sys.name] = res
			c, err := sys.start(ctx, b, s)
			if err != nil {
				b.Fatalf("%s: start cluster: %v", sys.name, err)
			}
			w := &workload{c: c}
			if _, err := w.run(ctx, "warmup", 8, time.Second, warmupKeys); err != nil {
				b.Fatalf("%s: warm-up: %v", sys.name, err)
			}
			// Each timed run may write an equal share of the key target, so
			// the RSS phase starts below it on every system.
			runCap := (s.keys - warmupKeys) / len(s.writers)
			for _, n := range s.writers {
				ok := b.Run(fmt.Sprintf("writers=%d", n), func(b *testing.B) {
					r, done := res.runs[n]
					if !done {
						var err error
						r, err = w.run(ctx, fmt.Sprintf("w%d", n), n, s.duration, runCap)
						if err != nil {
							b.Fatalf("%s, %d writers: %v", sys.name, n, err)
						}
						res.runs[n] = r
						b.Logf("%d writes in %v; slowest %v, started %v into the run",
							r.ops, r.elapsed.Round(time.Millisecond), r.slowest.Round(time.Microsecond), r.slowestAt.Round(time.Millisecond))
					}
					b.ReportMetric(0, "ns/op")
					b.ReportMetric(r.rate(), "writes/s")
					b.ReportMetric(ms(r.p50), "p50-ms")
					b.ReportMetric(ms(r.p99), "p99-ms")
				})
				if !ok {
					return
				}
			}
			b.Run("rss", func(b *testing.B) {
				if res.rss == nil {
					r, err := w.rss(ctx, b, s.keys)
					if err != nil {
						b.Fatalf("%s: rss: %v", sys.name, err)
					}
					res.rss = r
				}
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(res.rss.mean(), "rss-mean-MiB")
				b.ReportMetric(res.rss.max(), "rss-max-MiB")
				b.ReportMetric(float64(res.rss.keys), "keys")
			})
		})
	}
	table := formatTable(s, etcdVersion(ctx, s.etcdBin), results["skiff"], results["etcd"])
	fmt.Print(table)
	b.Log("\n" + table)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// workload drives one cluster and counts the keys it has written.
type workload struct {
	c       cluster
	written atomic.Int64
}

// run starts writers writers that each Put distinct keys with valueSize-byte
// values, one after the other, until dur has passed or the run has written
// maxKeys keys, and returns the throughput and latency percentiles. Any
// failed write fails the run: the key count of the RSS phase must be exact.
func (w *workload) run(ctx context.Context, name string, writers int, dur time.Duration, maxKeys int) (runResult, error) {
	ctx, cancel := context.WithTimeout(ctx, dur+2*time.Minute)
	defer cancel()
	var (
		reserved atomic.Int64
		wg       sync.WaitGroup
		startGun = make(chan struct{})
		lat      = make([][]time.Duration, writers)
		slowest  = make([][2]time.Duration, writers) // per writer: latency, start offset
		errs     = make([]error, writers)
		start    time.Time
		deadline time.Time
	)
	for i := range writers {
		value := make([]byte, valueSize)
		rand.Read(value)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startGun
			for seq := 0; time.Now().Before(deadline) && reserved.Add(1) <= int64(maxKeys); seq++ {
				key := fmt.Sprintf("%s%s/%03d/%08d", keyPrefix, name, i, seq)
				octx, ocancel := context.WithTimeout(ctx, opTimeout)
				t0 := time.Now()
				err := w.c.put(octx, key, value)
				d := time.Since(t0)
				ocancel()
				if err != nil {
					errs[i] = fmt.Errorf("put %s: %w", key, err)
					cancel() // stop the other writers too
					return
				}
				lat[i] = append(lat[i], d)
				if d > slowest[i][0] {
					slowest[i] = [2]time.Duration{d, t0.Sub(start)}
				}
				w.written.Add(1)
			}
		}()
	}
	start = time.Now()
	deadline = start.Add(dur)
	close(startGun)
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return runResult{}, err
	}
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return runResult{}, errors.New("no write completed")
	}
	slices.Sort(all)
	r := runResult{writers: writers, ops: len(all), elapsed: elapsed, p50: percentile(all, 0.50), p99: percentile(all, 0.99)}
	for _, sl := range slowest {
		if sl[0] > r.slowest {
			r.slowest, r.slowestAt = sl[0], sl[1]
		}
	}
	return r, nil
}

// percentile returns the nearest-rank p-quantile of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

// rss fills the cluster up to keys keys with loadWriters writers, waits
// until a linearizable count on every node sees all of them, and reads each
// server process's VmRSS.
func (w *workload) rss(ctx context.Context, b *testing.B, keys int) (*rssResult, error) {
	if missing := keys - int(w.written.Load()); missing > 0 {
		r, err := w.run(ctx, "load", loadWriters, loadTimeout, missing)
		if err != nil {
			return nil, fmt.Errorf("load %d keys: %w", missing, err)
		}
		b.Logf("loaded %d keys in %v (%.0f writes/s)", r.ops, r.elapsed.Round(time.Millisecond), r.rate())
	}
	want := w.written.Load()
	procs := w.c.procs()
	for i := range procs {
		if err := waitCount(ctx, w.c, i, want); err != nil {
			return nil, fmt.Errorf("node %s: %w", procs[i].name, err)
		}
	}
	res := &rssResult{keys: want}
	for _, p := range procs {
		m, err := readMemStatus(p.pid())
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", p.name, err)
		}
		res.nodeMB = append(res.nodeMB, float64(m.rss)/1024)
		b.Logf("node %s: RSS %.1f MiB (anon %.1f, file %.1f)", p.name, float64(m.rss)/1024, float64(m.anon)/1024, float64(m.file)/1024)
	}
	return res, nil
}

// waitCount polls node i until it counts want keys under keyPrefix.
func waitCount(ctx context.Context, c cluster, i int, want int64) error {
	ctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	var got int64
	var err error
	for {
		rctx, rcancel := context.WithTimeout(ctx, opTimeout)
		got, err = c.nodeCount(rctx, i, keyPrefix)
		rcancel()
		if err == nil && got == want {
			return nil
		}
		if err == nil && got > want {
			return fmt.Errorf("got %d keys, want %d", got, want)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("got %d keys (last error: %v), want %d: %w", got, err, want, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// memStatus is the resident memory of a process, in KiB, from
// /proc/<pid>/status: VmRSS is RssAnon (heap, stacks) plus RssFile (mapped
// files such as bbolt's) plus RssShmem.
type memStatus struct {
	rss, anon, file int64
}

func readMemStatus(pid int) (memStatus, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memStatus{}, err
	}
	defer f.Close()
	var m memStatus
	fields := map[string]*int64{"VmRSS:": &m.rss, "RssAnon:": &m.anon, "RssFile:": &m.file}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), "\t")
		dst := fields[name]
		if !ok || dst == nil {
			continue
		}
		if *dst, err = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64); err != nil {
			return memStatus{}, fmt.Errorf("/proc/%d/status: %s %w", pid, name, err)
		}
		delete(fields, name)
	}
	if err := sc.Err(); err != nil {
		return memStatus{}, err
	}
	if _, missing := fields["VmRSS:"]; missing {
		return memStatus{}, fmt.Errorf("/proc/%d/status has no VmRSS line", pid)
	}
	return m, nil
}

// proc is one server process, in a process group of its own so that
// stopping it also stops anything it started.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{} // closed once Wait returned; waitErr is set then
	waitErr error
	stopped sync.Once
}

// startProc starts bin with args, output to logPath. The caller must stop it;
// Pdeathsig kills it even if this process dies before its cleanups run
// (a -timeout panic skips them).
func startProc(name, logPath, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop kills the process group and waits for the process to exit. Safe to
// call more than once.
func (p *proc) stop() {
	p.stopped.Do(func() {
		syscall.Kill(-p.pid(), syscall.SIGKILL)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
		}
	})
}

// alive returns an error describing the exit if the process has exited.
func (p *proc) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited (%v); log tail:\n%s", p.name, p.waitErr, p.logTail())
	default:
		return nil
	}
}

func (p *proc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	const n = 3000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// stopAll stops procs.
func stopAll(procs []*proc) {
	for _, p := range procs {
		p.stop()
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago.
// Another process may take one before the server binds it; cluster start-up
// retries with new ports when a server fails to come up.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startWithRetry calls try up to three times, each attempt with new ports;
// a failed attempt has stopped its own processes.
func startWithRetry[C any](ctx context.Context, b *testing.B, try func(context.Context) (C, error)) (C, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var zero C
	for attempt := 1; ; attempt++ {
		c, err := try(ctx)
		switch {
		case err == nil:
			return c, nil
		case attempt == 3 || ctx.Err() != nil:
			return zero, fmt.Errorf("attempt %d: %w", attempt, err)
		}
		b.Logf("cluster start attempt %d: %v", attempt, err)
	}
}

// skiffCluster is three `skiff server` processes.
type skiffCluster struct {
	ps     []*proc
	client *raftstore.Client // all endpoints
	// nodes, when set, are client's endpoints one by one; put takes them in
	// turn, as etcd's client balances requests round-robin over its
	// endpoints, so two writes in three reach a follower and are forwarded
	// on both systems.
	nodes []*raftstore.Client
	next  atomic.Uint32
	// dataDirs and httpAddrs are each node's --data-dir (which holds its
	// admin kubeconfig) and status endpoint, in node order.
	dataDirs, httpAddrs []string
}

func (c *skiffCluster) put(ctx context.Context, key string, value []byte) error {
	cl := c.client
	if c.nodes != nil {
		cl = c.nodes[c.next.Add(1)%uint32(len(c.nodes))]
	}
	_, _, err := cl.Put(ctx, key, value)
	return err
}

func (c *skiffCluster) nodeCount(ctx context.Context, i int, prefix string) (int64, error) {
	n, _, err := c.client.Endpoint(i).Count(ctx, prefix, raftstore.ReadOptions{})
	return n, err
}

func (c *skiffCluster) procs() []*proc { return c.ps }

// startSkiff bootstraps m1, joins m2 and m3 to it, and waits until every node
// is ready and lists three voters. The cluster is stopped at b's cleanup.
func startSkiff(ctx context.Context, b *testing.B, s settings) (cluster, error) {
	return startSkiffWith(ctx, b, s)
}

// startSkiffWith is startSkiff with extra flags for every `skiff server`.
func startSkiffWith(ctx context.Context, b *testing.B, s settings, extra ...string) (cluster, error) {
	return startWithRetry(ctx, b, func(ctx context.Context) (cluster, error) {
		base := b.TempDir()
		ports, err := freePorts(6)
		if err != nil {
			return nil, err
		}
		var peers, https []string
		for i := range 3 {
			peers = append(peers, fmt.Sprintf("127.0.0.1:%d", ports[2*i]))
			https = append(https, fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]))
		}
		c := &skiffCluster{httpAddrs: https}
		ok := false
		defer func() {
			if !ok {
				stopAll(c.ps)
			}
		}()
		for i := range 3 {
			name := fmt.Sprintf("m%d", i+1)
			c.dataDirs = append(c.dataDirs, filepath.Join(base, name))
			args := []string{"server", "--name", name, "--data-dir", c.dataDirs[i],
				"--peer-addr", peers[i], "--http-addr", https[i], "--api-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0"}
			if i > 0 {
				args = append(args, "--join", peers[0])
			}
			args = append(args, extra...)
			p, err := startProc(name, s.logPath(base, "skiff", name), s.skiffBin, args...)
			if err != nil {
				return nil, err
			}
			c.ps = append(c.ps, p)
			b.Cleanup(p.stop)
			// m2 and m3 join through m1, so m1 must lead first.
			if i == 0 {
				if err := waitSkiff(ctx, p, https[0], 1); err != nil {
					return nil, err
				}
			}
		}
		for i, p := range c.ps {
			if err := waitSkiff(ctx, p, https[i], 3); err != nil {
				return nil, err
			}
		}
		c.client, err = raftstore.NewClient(raftstore.ClientConfig{Endpoints: peers})
		if err != nil {
			return nil, err
		}
		b.Cleanup(func() { c.client.Close() })
		if !s.skiffFailover {
			for i := range peers {
				c.nodes = append(c.nodes, c.client.Endpoint(i))
			}
		}
		ok = true
		return c, nil
	})
}

// waitSkiff polls a node's status endpoint until /readyz answers 200 and
// /status lists voters voters.
func waitSkiff(ctx context.Context, p *proc, httpAddr string, voters int) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		if err := p.alive(); err != nil {
			return err
		}
		last = skiffReady(ctx, hc, httpAddr, voters)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v: %w", p.name, last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func skiffReady(ctx context.Context, hc *http.Client, httpAddr string, voters int) error {
	get := func(path string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
		}
		return body, nil
	}
	if _, err := get("/readyz"); err != nil {
		return err
	}
	body, err := get("/status")
	if err != nil {
		return err
	}
	var st struct {
		Servers []struct {
			Voter bool `json:"voter"`
		} `json:"servers"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("GET /status: %w", err)
	}
	n := 0
	for _, srv := range st.Servers {
		if srv.Voter {
			n++
		}
	}
	if n != voters {
		return fmt.Errorf("got %d voters, want %d", n, voters)
	}
	return nil
}

// etcdCluster is three etcd processes of one cluster.
type etcdCluster struct {
	ps     []*proc
	client *clientv3.Client   // all endpoints, for the workload
	nodes  []*clientv3.Client // one endpoint each, for per-node reads
}

func (c *etcdCluster) put(ctx context.Context, key string, value []byte) error {
	_, err := c.client.Put(ctx, key, string(value))
	return err
}

func (c *etcdCluster) nodeCount(ctx context.Context, i int, prefix string) (int64, error) {
	// etcd reads are linearizable unless WithSerializable: the member gets
	// a read index from the leader and waits until it has applied it.
	resp, err := c.nodes[i].Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return resp.Count, nil
}

func (c *etcdCluster) procs() []*proc { return c.ps }

// startEtcd starts a three-member etcd cluster on fresh loopback ports (never
// 2379/2380, which a packaged etcd may hold) and waits until every member
// serves a linearizable read and lists three members. The cluster is stopped
// at b's cleanup.
func startEtcd(ctx context.Context, b *testing.B, s settings) (cluster, error) {
	return startWithRetry(ctx, b, func(ctx context.Context) (cluster, error) {
		base := b.TempDir()
		ports, err := freePorts(6)
		if err != nil {
			return nil, err
		}
		var clientURLs, peerURLs, initial []string
		for i := range 3 {
			clientURLs = append(clientURLs, fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]))
			peerURLs = append(peerURLs, fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]))
			initial = append(initial, fmt.Sprintf("e%d=%s", i+1, peerURLs[i]))
		}
		var token [6]byte
		rand.Read(token[:])
		c := &etcdCluster{}
		ok := false
		defer func() {
			if !ok {
				for _, cl := range append(c.nodes, c.client) {
					if cl != nil {
						cl.Close()
					}
				}
				stopAll(c.ps)
			}
		}()
		for i := range 3 {
			name := fmt.Sprintf("e%d", i+1)
			p, err := startProc(name, s.logPath(base, "etcd", name), s.etcdBin,
				"--name", name, "--data-dir", filepath.Join(base, name),
				"--listen-client-urls", clientURLs[i], "--advertise-client-urls", clientURLs[i],
				"--listen-peer-urls", peerURLs[i], "--initial-advertise-peer-urls", peerURLs[i],
				"--initial-cluster", strings.Join(initial, ","),
				"--initial-cluster-state", "new", "--initial-cluster-token", "bench-"+hex.EncodeToString(token[:]),
				"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn")
			if err != nil {
				return nil, err
			}
			c.ps = append(c.ps, p)
			b.Cleanup(p.stop)
		}
		newClient := func(eps ...string) (*clientv3.Client, error) {
			return clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		}
		for i, p := range c.ps {
			cl, err := newClient(clientURLs[i])
			if err != nil {
				return nil, err
			}
			c.nodes = append(c.nodes, cl)
			if err := waitEtcd(ctx, p, cl); err != nil {
				return nil, err
			}
		}
		if c.client, err = newClient(clientURLs...); err != nil {
			return nil, err
		}
		b.Cleanup(func() {
			c.client.Close()
			for _, cl := range c.nodes {
				cl.Close()
			}
		})
		ok = true
		return c, nil
	})
}

// waitEtcd polls one member until it serves a linearizable read and lists
// three members.
func waitEtcd(ctx context.Context, p *proc, cl *clientv3.Client) error {
	var last error
	for {
		if err := p.alive(); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, last = cl.Get(rctx, "storebench-ready", clientv3.WithCountOnly())
		if last == nil {
			var ml *clientv3.MemberListResponse
			if ml, last = cl.MemberList(rctx); last == nil && len(ml.Members) != 3 {
				last = fmt.Errorf("got %d members, want 3", len(ml.Members))
			}
		}
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v: %w", p.name, last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// etcdVersion returns the first line of `etcd --version`, for the table.
func etcdVersion(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "etcd (version unknown: " + err.Error() + ")"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return line
}

// formatTable renders both systems side by side with the ratio skiff/etcd
// and one line per target. Either result may be nil or partial when a
// sub-benchmark was filtered out or failed; its cells then read "-".
func formatTable(s settings, etcdVer string, sk, et *systemResult) string {
	var buf strings.Builder
	fmt.Fprintf(&buf, "store benchmark: 3 nodes on 127.0.0.1, %d B values, %v per timed run (or its share of %d keys), %s\n",
		valueSize, s.duration, s.keys, etcdVer)
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-20s\tskiff\tetcd\tskiff/etcd\t\n", "")
	row := func(label string, v func(*systemResult) (float64, bool), prec int) {
		a, aok := get(sk, v)
		e, eok := get(et, v)
		cell := func(x float64, ok bool) string {
			if !ok {
				return "-"
			}
			return strconv.FormatFloat(x, 'f', prec, 64)
		}
		ratio := "-"
		if aok && eok && e != 0 {
			ratio = strconv.FormatFloat(a/e, 'f', 2, 64)
		}
		// Padding the labels to one width keeps them left-aligned under AlignRight.
		fmt.Fprintf(tw, "%-20s\t%s\t%s\t%s\t\n", label, cell(a, aok), cell(e, eok), ratio)
	}
	for _, n := range s.writers {
		run := func(f func(runResult) float64) func(*systemResult) (float64, bool) {
			return func(r *systemResult) (float64, bool) {
				x, ok := r.runs[n]
				return f(x), ok
			}
		}
		row(fmt.Sprintf("writers=%d writes/s", n), run(runResult.rate), 0)
		row(fmt.Sprintf("writers=%d p50 ms", n), run(func(r runResult) float64 { return ms(r.p50) }), 2)
		row(fmt.Sprintf("writers=%d p99 ms", n), run(func(r runResult) float64 { return ms(r.p99) }), 2)
	}
	rss := func(f func(rssResult) float64) func(*systemResult) (float64, bool) {
		return func(r *systemResult) (float64, bool) {
			if r.rss == nil {
				return 0, false
			}
			return f(*r.rss), true
		}
	}
	row("RSS/node mean MiB", rss(rssResult.mean), 1)
	row("RSS/node max MiB", rss(rssResult.max), 1)
	row("keys at RSS", rss(func(r rssResult) float64 { return float64(r.keys) }), 0)
	tw.Flush()

	buf.WriteString("targets:\n")
	target := func(label string, v func(*systemResult) (float64, bool), skiffBetter func(a, e float64) bool) {
		a, aok := get(sk, v)
		e, eok := get(et, v)
		verdict := "not measured"
		switch {
		case aok && eok && skiffBetter(a, e):
			verdict = "met"
		case aok && eok:
			verdict = "NOT met"
		}
		fmt.Fprintf(&buf, "  %-38s %s\n", label, verdict)
	}
	geq := func(a, e float64) bool { return a >= e }
	leq := func(a, e float64) bool { return a <= e }
	for _, n := range []int{16, 64} {
		run := func(f func(runResult) float64) func(*systemResult) (float64, bool) {
			return func(r *systemResult) (float64, bool) {
				x, ok := r.runs[n]
				return f(x), ok
			}
		}
		target(fmt.Sprintf("writers=%d: skiff writes/s >= etcd", n), run(runResult.rate), geq)
		target(fmt.Sprintf("writers=%d: skiff p99 <= etcd", n), run(func(r runResult) float64 { return ms(r.p99) }), leq)
	}
	target("RSS/node mean: skiff <= etcd", rss(rssResult.mean), leq)
	target("RSS/node max: skiff <= etcd", rss(rssResult.max), leq)
	return buf.String()
}

func get(r *systemResult, v func(*systemResult) (float64, bool)) (float64, bool) {
	if r == nil {
		return 0, false
	}
	return v(r)
}
