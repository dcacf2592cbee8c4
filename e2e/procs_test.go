package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/raftstore"
)

// This file starts and stops real `skiff server` processes on loopback for
// the process-level tests:
//
//	ms := startMasters(t, 3)       // m1 bootstraps, m2 and m3 join it
//	leader := ms.waitLeader(t)     // index of the master all agree leads
//	ms.kill(t, leader)             // SIGKILL its process group, wait for it
//	ms.restart(t, leader)          // same data dir and addresses, no --join
//
// Every process runs in its own process group with its output appended to
// a log file in the test's temp dir; t.Cleanup kills every process still
// running, and prints the tail of each log when the test failed.

// skiffBuild holds the binary built once for the whole test binary.
var skiffBuild struct {
	once sync.Once
	dir  string // temp dir holding the built binary; removed by TestMain
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if skiffBuild.dir != "" {
		os.RemoveAll(skiffBuild.dir)
	}
	os.Exit(code)
}

// skiffBinary returns the path of the skiff binary the process tests run:
// $SKIFF_BIN when set, else ./cmd/skiff built once per test binary.
func skiffBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SKIFF_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatalf("SKIFF_BIN=%q: %v", p, err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			t.Fatalf("SKIFF_BIN=%q: %v", p, err)
		}
		if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			t.Fatalf("SKIFF_BIN=%q: got mode %v, want an executable file", p, fi.Mode())
		}
		return abs
	}
	skiffBuild.once.Do(func() {
		skiffBuild.path, skiffBuild.err = buildSkiff()
	})
	if skiffBuild.err != nil {
		t.Fatalf("building skiff: %v", skiffBuild.err)
	}
	return skiffBuild.path
}

// buildSkiff builds ./cmd/skiff of the module holding the working directory
// into a new temp dir. It runs outside any test, so it reports errors.
func buildSkiff() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	goCmd := func(dir string, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
		}
		return out, nil
	}
	out, err := goCmd(".", "env", "GOMOD")
	if err != nil {
		return "", err
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD: got %q, want the module's go.mod", gomod)
	}
	dir, err := os.MkdirTemp("", "skiff-e2e-bin-")
	if err != nil {
		return "", err
	}
	skiffBuild.dir = dir
	bin := filepath.Join(dir, "skiff")
	if _, err := goCmd(filepath.Dir(gomod), "build", "-o", bin, "./cmd/skiff"); err != nil {
		return "", err
	}
	return bin, nil
}

// master is one `skiff server` process and the flags it keeps across restarts.
type master struct {
	name     string
	dataDir  string
	peerAddr string
	httpAddr string
	logPath  string
	// extra are more `skiff server` flags, passed on every start.
	extra []string

	// Set by each start; proc is nil while the master is not running.
	proc   *exec.Cmd
	exited chan struct{} // closed when proc has been reaped
	starts int
}

// running reports whether the master's process has been started and not reaped.
func (m *master) running() bool {
	if m.proc == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// masters is a cluster of skiff server processes. Its methods are called
// from the test goroutine, except that launch may run for different masters
// at once; the status helpers (status, ready) may be called from any.
type masters struct {
	bin   string
	dir   string
	nodes []*master
	http  *http.Client
}

// startMasters starts n masters named m1..mN on free loopback ports: m1
// bootstraps a cluster and the others join it. It returns once every master
// is ready and every one sees n voters.
func startMasters(t *testing.T, n int) *masters {
	t.Helper()
	return startMastersWith(t, n)
}

// startMastersWith is startMasters with more `skiff server` flags for every
// master, on every start (such as "--compact-interval", "1s").
func startMastersWith(t *testing.T, n int, extra ...string) *masters {
	t.Helper()
	ms := &masters{
		bin:  skiffBinary(t),
		dir:  t.TempDir(),
		http: &http.Client{Timeout: 3 * time.Second},
	}
	// Registered after TempDir, so it runs before the dir is removed.
	t.Cleanup(func() {
		ms.killAll()
		if t.Failed() {
			ms.dumpLogs(t, 60)
		}
	})
	for i := range n {
		m := &master{
			name:    fmt.Sprintf("m%d", i+1),
			dataDir: filepath.Join(ms.dir, fmt.Sprintf("m%d", i+1), "data"),
			logPath: filepath.Join(ms.dir, fmt.Sprintf("m%d.log", i+1)),
			extra:   extra,
		}
		ms.nodes = append(ms.nodes, m)
		var join string
		if i > 0 {
			join = ms.nodes[0].peerAddr
		}
		ms.firstStart(t, i, join)
	}
	waitUntil(t, 20*time.Second, fmt.Sprintf("%d voters seen by every master", n), func(ctx context.Context) error {
		for i := range ms.nodes {
			st, err := ms.status(ctx, i)
			if err != nil {
				return err
			}
			voters := 0
			for _, s := range st.Servers {
				if s.Voter {
					voters++
				}
			}
			if voters != n || st.LeaderID == "" {
				return fmt.Errorf("%s: got %d voters %v and leader %q, want %d voters and a leader", st.ID, voters, st.Servers, st.LeaderID, n)
			}
		}
		return nil
	})
	return ms
}

// firstStart starts master i with new free ports, choosing new ones and
// starting again while the process fails because a port was taken between
// choosing it and binding it.
func (ms *masters) firstStart(t *testing.T, i int, join string) {
	t.Helper()
	m := ms.nodes[i]
	for attempt := 1; ; attempt++ {
		m.peerAddr, m.httpAddr = freeLoopbackAddr(t), freeLoopbackAddr(t)
		// A failed attempt may have left a node-id and an empty raft.db.
		if err := os.RemoveAll(m.dataDir); err != nil {
			t.Fatal(err)
		}
		args := m.args()
		if join != "" {
			args = append(args, "--join", join)
		}
		err := ms.launch(t, i, args)
		if err == nil {
			return
		}
		if !errors.Is(err, errAddrInUse) || attempt == 5 {
			t.Fatalf("starting %s (attempt %d): %v", m.name, attempt, err)
		}
		t.Logf("starting %s: %v; trying other ports", m.name, err)
	}
}

// restart starts master i again after it was killed: same name, data dir
// and addresses, no --join (it keeps its membership in its data dir). It
// returns once /readyz answers; catching up is the caller's business.
func (ms *masters) restart(t *testing.T, i int) {
	t.Helper()
	m := ms.nodes[i]
	if m.running() {
		t.Fatalf("restart %s: still running", m.name)
	}
	// The ports were ours a moment ago; a process that grabbed one in
	// between is gone again soon, so only retry.
	for attempt := 1; ; attempt++ {
		err := ms.launch(t, i, m.args())
		if err == nil {
			return
		}
		if !errors.Is(err, errAddrInUse) || attempt == 10 {
			t.Fatalf("restarting %s (attempt %d): %v", m.name, attempt, err)
		}
		t.Logf("restarting %s: %v; retrying", m.name, err)
		time.Sleep(200 * time.Millisecond) // back-off between process starts, not before an assertion
	}
}

// restartAll starts every killed master again without waiting for one to be
// ready first (a restarted cluster needs a quorum before any is ready),
// then waits for all of them.
func (ms *masters) restartAll(t *testing.T) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(ms.nodes))
	for i, m := range ms.nodes {
		if m.running() {
			t.Fatalf("restart %s: still running", m.name)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for attempt := 1; ; attempt++ {
				errs[i] = ms.launch(t, i, m.args())
				if !errors.Is(errs[i], errAddrInUse) || attempt == 10 {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("restarting %s: %v", ms.nodes[i].name, err)
		}
	}
}

func (m *master) args() []string {
	// The API port is ephemeral: tests reach the API through the admin
	// kubeconfig the master writes, which names the port it got.
	args := []string{"server", "--name", m.name, "--data-dir", m.dataDir, "--peer-addr", m.peerAddr, "--http-addr", m.httpAddr, "--api-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0"}
	return append(args, m.extra...)
}

// errAddrInUse marks a start that failed because a port was taken.
var errAddrInUse = errors.New("address already in use")

// launch starts master i's process with args and waits until its /readyz
// answers 200 (it knows a leader) or the process exits. It is safe to call
// for different masters concurrently.
func (ms *masters) launch(t *testing.T, i int, args []string) error {
	m := ms.nodes[i]
	if err := os.MkdirAll(filepath.Dir(m.dataDir), 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	m.starts++
	fmt.Fprintf(logf, "=== %s start %d: %s %s\n", time.Now().Format(time.RFC3339Nano), m.starts, ms.bin, strings.Join(args, " "))
	off, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	cmd := exec.Command(ms.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so a kill reaches anything it starts; and killed
	// with the test binary, so a test that times out leaves nothing behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	m.proc, m.exited = cmd, exited

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var last error
	for {
		select {
		case <-exited:
			out := readFrom(m.logPath, off)
			err := fmt.Errorf("%s exited before it was ready (%v); its output:\n%s", m.name, cmd.ProcessState, out)
			if strings.Contains(out, "address already in use") {
				return fmt.Errorf("%w: %v", errAddrInUse, err)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("%s not ready within 30s: %v", m.name, last)
		case <-time.After(50 * time.Millisecond):
		}
		if last = ms.ready(ctx, i); last == nil {
			return nil
		}
	}
}

// kill sends SIGKILL to the process groups of the given masters, all of
// them first, then waits until each is reaped.
func (ms *masters) kill(t *testing.T, idx ...int) {
	t.Helper()
	for _, i := range idx {
		m := ms.nodes[i]
		if !m.running() {
			t.Fatalf("kill %s: not running", m.name)
		}
		if err := syscall.Kill(-m.proc.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %s (pgid %d): %v", m.name, m.proc.Process.Pid, err)
		}
	}
	for _, i := range idx {
		m := ms.nodes[i]
		select {
		case <-m.exited:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s (pid %d) still running 10s after SIGKILL", m.name, m.proc.Process.Pid)
		}
	}
}

// killAll kills every running master and waits for each; for t.Cleanup.
func (ms *masters) killAll() {
	for _, m := range ms.nodes {
		if m.running() {
			syscall.Kill(-m.proc.Process.Pid, syscall.SIGKILL)
		}
	}
	for _, m := range ms.nodes {
		if m.proc != nil {
			select {
			case <-m.exited:
			case <-time.After(10 * time.Second):
			}
		}
	}
}

// peerAddrs returns the masters' peer addresses, the raftstore client's endpoints.
func (ms *masters) peerAddrs() []string {
	var addrs []string
	for _, m := range ms.nodes {
		addrs = append(addrs, m.peerAddr)
	}
	return addrs
}

// index returns the index of the master with the given node ID, or -1.
func (ms *masters) index(id string) int {
	for i, m := range ms.nodes {
		if m.name == id {
			return i
		}
	}
	return -1
}

// ready returns nil when master i's /readyz answers 200.
func (ms *masters) ready(ctx context.Context, i int) error {
	_, err := ms.get(ctx, i, "/readyz")
	return err
}

// status returns master i's /status.
func (ms *masters) status(ctx context.Context, i int) (raftstore.Status, error) {
	var st raftstore.Status
	body, err := ms.get(ctx, i, "/status")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("%s /status: %w", ms.nodes[i].name, err)
	}
	return st, nil
}

func (ms *masters) get(ctx context.Context, i int, path string) ([]byte, error) {
	m := ms.nodes[i]
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.httpAddr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := ms.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", m.name, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", m.name, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: got %s %q, want 200", m.name, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// waitLeader waits until every running master names the same leader and
// that master reports itself leader, and returns the leader's index.
func (ms *masters) waitLeader(t *testing.T) int {
	t.Helper()
	leader := -1
	waitUntil(t, 20*time.Second, "every running master to agree on a leader", func(ctx context.Context) error {
		leader = -1
		var leaderID string
		for i, m := range ms.nodes {
			if !m.running() {
				continue
			}
			st, err := ms.status(ctx, i)
			if err != nil {
				return err
			}
			if st.LeaderID == "" || (leaderID != "" && st.LeaderID != leaderID) {
				return fmt.Errorf("%s sees leader %q, others %q", m.name, st.LeaderID, leaderID)
			}
			leaderID = st.LeaderID
			if st.ID == leaderID && st.State != "Leader" {
				return fmt.Errorf("%s is named leader but is %s", m.name, st.State)
			}
		}
		leader = ms.index(leaderID)
		if leader < 0 || !ms.nodes[leader].running() {
			return fmt.Errorf("leader %q is not a running master", leaderID)
		}
		return nil
	})
	return leader
}

// waitCaughtUp waits until master i has applied at least what the leader
// had applied when the wait began.
func (ms *masters) waitCaughtUp(t *testing.T, i int) {
	t.Helper()
	leader := ms.waitLeader(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	st, err := ms.status(ctx, leader)
	cancel()
	if err != nil {
		t.Fatalf("leader status: %v", err)
	}
	target := st.AppliedIndex
	waitUntil(t, 20*time.Second, fmt.Sprintf("%s to apply index %d", ms.nodes[i].name, target), func(ctx context.Context) error {
		st, err := ms.status(ctx, i)
		if err != nil {
			return err
		}
		if st.AppliedIndex < target || st.LeaderID == "" {
			return fmt.Errorf("%s: got applied index %d and leader %q, want >= %d and a leader", st.ID, st.AppliedIndex, st.LeaderID, target)
		}
		return nil
	})
}

// waitSameApplied waits until every master reports the same applied index
// (once writes have stopped) and returns it.
func (ms *masters) waitSameApplied(t *testing.T) int64 {
	t.Helper()
	var applied int64
	waitUntil(t, 20*time.Second, "every master to reach the same applied index", func(ctx context.Context) error {
		var got []string
		same := true
		for i := range ms.nodes {
			st, err := ms.status(ctx, i)
			if err != nil {
				return err
			}
			if i == 0 {
				applied = st.AppliedIndex
			}
			same = same && st.AppliedIndex == applied
			got = append(got, fmt.Sprintf("%s=%d", st.ID, st.AppliedIndex))
		}
		if !same {
			return fmt.Errorf("applied indexes %v", got)
		}
		return nil
	})
	return applied
}

// dumpLogs prints the last lines lines of every master's log.
func (ms *masters) dumpLogs(t *testing.T, lines int) {
	for _, m := range ms.nodes {
		b, err := os.ReadFile(m.logPath)
		if err != nil {
			t.Logf("%s log: %v", m.name, err)
			continue
		}
		all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		from := max(0, len(all)-lines)
		t.Logf("--- %s: last %d of %d lines of %s ---\n%s", m.name, len(all)-from, len(all), m.logPath, strings.Join(all[from:], "\n"))
	}
}

// readFrom returns the content of path from offset off, for error messages.
func readFrom(path string, off int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if off > int64(len(b)) {
		off = 0
	}
	return string(b[off:])
}

// freeLoopbackAddr returns 127.0.0.1:port for a port that was free a moment
// ago. Someone may take it before the process binds it: callers retry.
//
// The port comes from below the kernel's ephemeral range when there is room
// there: a master restarts on the same port, and a port from the ephemeral
// range may meanwhile have become the local end of some outgoing connection.
func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	if lo := ephemeralPortsStart(); lo-minChosenPort >= 1000 {
		for range 100 {
			port := minChosenPort + rand.IntN(lo-minChosenPort)
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err == nil {
				ln.Close()
				return ln.Addr().String()
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// minChosenPort is the lowest port freeLoopbackAddr picks itself.
const minChosenPort = 10000

// ephemeralPortsStart returns the first port of Linux's ephemeral range, or
// 0 when it cannot be read.
func ephemeralPortsStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return lo
}

// waitUntil calls cond, each call bounded by a few seconds, until it returns
// nil or timeout has passed; then it fails the test with cond's last error.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		err := cond(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || t.Context().Err() != nil {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		select {
		case <-t.Context().Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}
