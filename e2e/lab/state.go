package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-iptables/iptables"

	"github.com/skiff-sh/skiff/agent/runctest"
)

// state is what Dir/lab.json records: everything a lab created, written
// before (names) or right after (processes) each creation, so that Cleanup
// can remove it without the process that ran Up.
type state struct {
	ID      string            `json:"id"`
	Subnet  string            `json:"subnet"`
	Bridge  string            `json:"bridge,omitempty"`
	NetNS   []string          `json:"netns,omitempty"`
	Links   []string          `json:"links,omitempty"`
	Rules   []rule            `json:"iptablesRules,omitempty"`
	Sockets []string          `json:"containerdSockets,omitempty"`
	Procs   map[string]pstate `json:"processes,omitempty"`
	// Owner is the process that ran Up; Detached says its processes were
	// meant to outlive it (`make lab`). CleanupStale removes labs whose
	// owner is gone unless they are detached.
	Owner    pstate `json:"owner"`
	Detached bool   `json:"detached,omitempty"`
}

// rule is one iptables rule in the root namespace.
type rule struct {
	Table, Chain string
	Spec         []string
}

// pstate identifies a process across a crash: a pid reused by another
// process has another start time.
type pstate struct {
	Pid   int    `json:"pid"`
	Start uint64 `json:"startTime"` // /proc/<pid>/stat field 22
	Cmd   string `json:"cmd"`
}

func statePath(dir string) string { return filepath.Join(dir, "lab.json") }

// record changes the state under l.mu and writes it.
func (l *Lab) record(change func(st *state)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	change(l.st)
	return writeState(l.dir, l.st)
}

func writeState(dir string, st *state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("lab: state: %w", err)
	}
	if err := os.Rename(tmp, statePath(dir)); err != nil {
		return fmt.Errorf("lab: state: %w", err)
	}
	return nil
}

// Down stops every process of the lab (agents, containers with their
// shims, containerds, masters, the registry), unmounts what is mounted
// under Dir, deletes the namespaces, links, bridge and iptables rules, and
// removes Dir. It is idempotent: later calls return the first call's result.
func (l *Lab) Down() error {
	l.mu.Lock()
	if l.down {
		l.mu.Unlock()
		return l.downErr
	}
	l.down = true
	st := l.st
	l.mu.Unlock()
	if st == nil { // failed before anything was created
		return nil
	}
	// Processes this Lab started are reaped here, so none stays a zombie
	// that teardown would wait for.
	var errs []error
	for _, name := range []string{"agent", "shims", "containerd", "master", "registry"} {
		errs = append(errs, l.killKind(name))
	}
	errs = append(errs, teardown(l.dir, st))
	l.downErr = errors.Join(errs...)
	return l.downErr
}

// killKind stops this Lab's processes of one kind and waits for them.
func (l *Lab) killKind(kind string) error {
	if kind == "shims" {
		l.mu.Lock()
		socks := slices.Clone(l.st.Sockets)
		l.mu.Unlock()
		return killShims(socks)
	}
	l.mu.Lock()
	var ps []*proc
	for name, p := range l.procs {
		if procKind(name) == kind {
			ps = append(ps, p)
		}
	}
	l.mu.Unlock()
	var errs []error
	for _, p := range ps {
		errs = append(errs, p.kill())
	}
	return errors.Join(errs...)
}

// procKind maps a process name ("m0", "w1-agent", "w1-containerd",
// "registry") to its kind.
func procKind(name string) string {
	switch {
	case strings.HasSuffix(name, "-agent"):
		return "agent"
	case strings.HasSuffix(name, "-containerd"):
		return "containerd"
	case name == "registry":
		return "registry"
	}
	return "master"
}

// Cleanup removes everything the lab recorded in dir/lab.json, when the
// process that ran Up is gone (crash, `make lab-down`): it kills the
// recorded processes that are still the same processes (pid and start
// time), the containerd shims of the lab's sockets with their containers,
// then removes mounts, namespaces, links, rules and dir. Without a state
// file it does nothing and returns nil.
func Cleanup(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	b, err := os.ReadFile(statePath(abs))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lab: cleanup: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("lab: cleanup: %s: %w", statePath(abs), err)
	}
	var errs []error
	for _, kind := range []string{"agent", "shims", "containerd", "master", "registry"} {
		if kind == "shims" {
			errs = append(errs, killShims(st.Sockets))
			continue
		}
		for name, ps := range st.Procs {
			if procKind(name) == kind {
				errs = append(errs, killRecorded(ps))
			}
		}
	}
	errs = append(errs, teardown(abs, &st))
	return errors.Join(errs...)
}

// CleanupStale runs Cleanup for every lab directory matching the glob
// pattern (e.g. "/tmp/skl-*") whose state file names an owner process that
// is gone and that was not detached: labs of test binaries that crashed or
// timed out before their t.Cleanup ran. Labs of running processes are left
// alone.
func CleanupStale(pattern string) error {
	dirs, err := filepath.Glob(pattern)
	if err != nil {
		return err
	}
	var errs []error
	for _, dir := range dirs {
		b, err := os.ReadFile(statePath(dir))
		if err != nil {
			continue
		}
		var st state
		if json.Unmarshal(b, &st) != nil || st.Detached || st.Owner.Pid == 0 {
			continue
		}
		if start, err := startTime(st.Owner.Pid); err == nil && start == st.Owner.Start {
			continue // its owner runs
		}
		if err := Cleanup(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// teardown removes what st records once the processes are gone: mounts
// under dir, namespaces, links, the bridge, iptables rules, then dir.
func teardown(dir string, st *state) error {
	var errs []error
	errs = append(errs, unmountUnder(dir))
	// runc's state and cgroups of the workers' containers live outside dir.
	runctest.RemoveUnder(dir)
	for _, ns := range st.NetNS {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
			if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("lab: ip netns delete %s: %v: %s", ns, err, out))
			}
		}
	}
	for _, link := range append(slices.Clone(st.Links), st.Bridge) {
		if link == "" || !linkExists(link) {
			continue
		}
		if out, err := exec.Command("ip", "link", "delete", link).CombinedOutput(); err != nil && linkExists(link) {
			errs = append(errs, fmt.Errorf("lab: ip link delete %s: %v: %s", link, err, out))
		}
	}
	if len(st.Rules) > 0 {
		ipt, err := iptables.New()
		if err != nil {
			errs = append(errs, fmt.Errorf("lab: iptables: %w", err))
		} else {
			for _, r := range st.Rules {
				if err := ipt.DeleteIfExists(r.Table, r.Chain, r.Spec...); err != nil {
					errs = append(errs, fmt.Errorf("lab: iptables -t %s -D %s %s: %w", r.Table, r.Chain, strings.Join(r.Spec, " "), err))
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err // keep the state file, so a later Cleanup can retry
	}
	// A mount might still be busy (lazy unmount); removal then fails
	// partly, which is reported.
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("lab: removing %s: %w", dir, err)
	}
	return nil
}

// linkExists reports whether a link of that name is in the root namespace.
func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// unmountUnder detaches every mount at or below dir, deepest and newest
// first, repeating while stacked mounts uncover more.
func unmountUnder(dir string) error {
	var last error
	for range 10 {
		mps := mountsUnder(dir)
		if len(mps) == 0 {
			return nil
		}
		for _, mp := range mps {
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				last = fmt.Errorf("lab: unmount %s: %w", mp, err)
			}
		}
	}
	if mps := mountsUnder(dir); len(mps) > 0 {
		return errors.Join(last, fmt.Errorf("lab: still mounted under %s: %v", dir, mps))
	}
	return nil
}

// mountsUnder lists mount points at or below dir, in reverse mount order.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var mps []string
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		f := strings.Fields(lines[i])
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mps = append(mps, mp)
		}
	}
	return mps
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// waitGone polls until pid no longer exists (or is a zombie) or timeout.
func waitGone(pid int, start uint64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		f := statFields(b)
		if len(f) > 2 && f[2] == "Z" {
			return true
		}
		if now, ok := statStart(f); ok && start != 0 && now != start {
			return true // the pid is another process's now (pid_max may be 32768)
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond) // polling a process's exit
	}
}
