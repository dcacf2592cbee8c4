package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one process the lab started, in its own process group.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	off    int64         // log size at start: its output begins there
	exited chan struct{} // closed once reaped
}

// running reports whether p has not exited yet.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// output returns what p wrote to its log since it started (the last 4 KiB).
func (p *proc) output() string {
	s := readFrom(p.log, p.off)
	if len(s) > 4096 {
		s = "..." + s[len(s)-4096:]
	}
	return s
}

// kill sends SIGKILL to p's process group and waits until p is reaped.
func (p *proc) kill() error {
	if !p.running() {
		return nil
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("lab: kill %s (pgid %d): %w", p.name, p.cmd.Process.Pid, err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("lab: %s (pid %d) still running 10s after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// start runs args inside h's network namespace (the root namespace when h
// is nil) as process name, its output appended to LogPath(name), and
// records it in the state file.
func (l *Lab) start(name string, h *Host, args []string) (*proc, error) {
	if h != nil {
		args = append([]string{"nsenter", "--net=" + h.NetNSPath, "--"}, args...)
	}
	logPath := l.LogPath(name)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	fmt.Fprintf(logf, "=== %s lab: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	off, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = l.dir
	if l.cfg.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		// Its own group, so a kill reaches what it starts; killed with
		// the process that runs the lab, so a crashed test leaves less.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, off: off, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	st, _ := startTime(cmd.Process.Pid)
	l.mu.Lock()
	l.procs[name] = p
	l.mu.Unlock()
	err = l.record(func(s *state) {
		if s.Procs == nil {
			s.Procs = map[string]pstate{}
		}
		s.Procs[name] = pstate{Pid: cmd.Process.Pid, Start: st, Cmd: strings.Join(args, " ")}
	})
	return p, err
}

// waitReady polls ready every 50ms until it returns nil, p exits, or
// timeout passes.
func waitReady(ctx context.Context, p *proc, timeout time.Duration, what string, ready func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		last = ready(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("lab: %s exited before %s (%v); its output:\n%s", p.name, what, p.cmd.ProcessState, p.output())
		case <-ctx.Done():
			return fmt.Errorf("lab: %s: no %s within %v: %v; its output:\n%s", p.name, what, timeout, last, p.output())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// killRecorded kills a process from the state file if it is still the
// same process, with its group, and waits for it to go.
func killRecorded(ps pstate) error {
	st, err := startTime(ps.Pid)
	if err != nil || st != ps.Start {
		return nil // gone, or the pid belongs to someone else now
	}
	syscall.Kill(-ps.Pid, syscall.SIGKILL)
	syscall.Kill(ps.Pid, syscall.SIGKILL)
	if !waitGone(ps.Pid, ps.Start, 10*time.Second) {
		return fmt.Errorf("lab: pid %d (%s) still running 10s after SIGKILL", ps.Pid, ps.Cmd)
	}
	return nil
}

// killShims kills the containerd shims serving the given containerd
// sockets (their command line has "-address SOCK") with every descendant:
// the containers they run and the log drivers.
func killShims(sockets []string) error {
	if len(sockets) == 0 {
		return nil
	}
	procs := allProcs()
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	var victims []int
	var walk func(pid int)
	walk = func(pid int) {
		victims = append(victims, pid)
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for pid, p := range procs {
		if !strings.Contains(filepath.Base(p.args[0]), "containerd-shim") {
			continue
		}
		for i := 0; i+1 < len(p.args); i++ {
			if (p.args[i] == "-address" || p.args[i] == "--address") && containsStr(sockets, p.args[i+1]) {
				walk(pid)
			}
		}
	}
	for _, pid := range victims {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	// A container's pid-namespace init exits only once the kernel has
	// reaped every process of its namespace, which can take a while on a
	// loaded machine: give them time, and say what is left.
	var stuck []string
	for _, pid := range victims {
		if !waitGone(pid, procs[pid].start, 30*time.Second) {
			stuck = append(stuck, describeProc(pid))
		}
	}
	if len(stuck) > 0 {
		return fmt.Errorf("lab: shim or container processes still running 30s after SIGKILL: %s", strings.Join(stuck, "; "))
	}
	return nil
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

type procInfo struct {
	ppid int
	args []string
	// start is when the process started (field 22 of its stat), telling
	// it from a later process with its pid.
	start uint64
}

// allProcs reads every process's parent and command line.
func allProcs() map[int]procInfo {
	out := map[int]procInfo{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		f := statFields(stat)
		if len(f) < 4 {
			continue
		}
		ppid, _ := strconv.Atoi(f[3])
		start, _ := statStart(f)
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		out[pid] = procInfo{ppid: ppid, args: args, start: start}
	}
	return out
}

// statFields splits /proc/<pid>/stat into fields, field 1 (comm, in
// parentheses, may hold spaces) kept whole; index i is field i+1.
func statFields(b []byte) []string {
	i := bytes.LastIndexByte(b, ')')
	j := bytes.IndexByte(b, '(')
	if i < 0 || j < 0 {
		return nil
	}
	return append([]string{strings.TrimSpace(string(b[:j])), string(b[j+1 : i])}, strings.Fields(string(b[i+1:]))...)
}

// startTime returns field 22 of /proc/<pid>/stat: when the process started.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	start, ok := statStart(statFields(b))
	if !ok {
		return 0, fmt.Errorf("lab: /proc/%d/stat: no start time", pid)
	}
	return start, nil
}

// statStart returns field 22 of split stat fields (statFields): when the
// process started.
func statStart(f []string) (uint64, bool) {
	if len(f) < 22 {
		return 0, false
	}
	start, err := strconv.ParseUint(f[21], 10, 64)
	return start, err == nil
}

// readFrom returns the content of path from offset off.
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

// run runs a short command and returns its stdout, or an error with its stderr.
func run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// describeProc names a process for an error: pid, command and state.
func describeProc(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return strconv.Itoa(pid) + " (gone)"
	}
	f := statFields(b)
	if len(f) < 3 {
		return strconv.Itoa(pid)
	}
	return fmt.Sprintf("%d %s state %s", pid, f[1], f[2])
}
