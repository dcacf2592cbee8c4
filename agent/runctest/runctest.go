// Package runctest is for tests that run containers with a private
// containerd (the agent's, the image builder's, the end-to-end suite's):
// it removes what runc leaves on the host outside that containerd's
// directories, which every containerd on the host shares.
//
//   - runc keeps a container's state in /run/containerd/runc/<namespace>/<id>
//     whatever containerd's own state directory is; a container whose
//     processes were killed without a `runc delete` (a test that kills its
//     containerd and shims) leaves it there, with its cgroups;
//   - containerd puts a container's cgroups under /<namespace>/<id>, and the
//     namespace's cgroup directory outlives its last container.
//
// Both only ever grow as tests run; these functions remove them. They
// remove directories only when empty (cgroups) or when their state names
// the caller's directory, so they never touch another's containers.
package runctest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// runcRoot is the runc root containerd's runc shim uses by default, and
// cgroupRoot where the cgroup hierarchies are mounted (variables for this
// package's own test).
var (
	runcRoot   = "/run/containerd/runc"
	cgroupRoot = "/sys/fs/cgroup"
)

// RemoveNamespace removes namespace ns's runc state directory and its
// cgroup directories (one per cgroup v1 hierarchy, or the cgroup v2 one),
// each only if empty: call it once the namespace's containers are gone.
func RemoveNamespace(ns string) {
	if ns == "" || strings.ContainsRune(ns, '/') {
		return
	}
	os.Remove(filepath.Join(runcRoot, ns))
	removeCgroup("/" + ns)
}

// RemoveUnder removes the runc state of every container whose bundle is
// under dir (a private containerd's state directory, or a directory that
// holds it), with the container's cgroups once empty: call it after the
// containers' processes were killed.
func RemoveUnder(dir string) {
	for stateDir, st := range statesUnder(dir) {
		for _, p := range st.CgroupPaths {
			if below(p, cgroupRoot) {
				os.Remove(p)
			}
		}
		os.RemoveAll(stateDir)
	}
}

// StatesUnder returns the runc state directories of the containers whose
// bundle is under dir: none once RemoveUnder(dir) ran.
func StatesUnder(dir string) []string {
	var dirs []string
	for stateDir := range statesUnder(dir) {
		dirs = append(dirs, stateDir)
	}
	slices.Sort(dirs)
	return dirs
}

// statesUnder reads the state of every container whose bundle is under
// dir, by state directory.
func statesUnder(dir string) map[string]state {
	dir = filepath.Clean(dir)
	found := map[string]state{}
	namespaces, _ := os.ReadDir(runcRoot)
	for _, ns := range namespaces {
		ids, _ := os.ReadDir(filepath.Join(runcRoot, ns.Name()))
		for _, id := range ids {
			stateDir := filepath.Join(runcRoot, ns.Name(), id.Name())
			if st, ok := readState(filepath.Join(stateDir, "state.json")); ok && within(st.bundle(), dir) {
				found[stateDir] = st
			}
		}
	}
	return found
}

// state is what statesUnder reads of runc's state.json.
type state struct {
	CgroupPaths map[string]string `json:"cgroup_paths"`
	Config      struct {
		Labels []string `json:"labels"`
	} `json:"config"`
}

// bundle is the container's bundle directory, from the "bundle=" label
// runc records.
func (s state) bundle() string {
	for _, l := range s.Config.Labels {
		if b, ok := strings.CutPrefix(l, "bundle="); ok {
			return b
		}
	}
	return ""
}

func readState(path string) (state, bool) {
	var st state
	b, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(b, &st) != nil {
		return st, false
	}
	return st, true
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	if path == "" {
		return false
	}
	rel, err := filepath.Rel(dir, filepath.Clean(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// below reports whether path is strictly below dir.
func below(path, dir string) bool {
	return within(path, dir) && filepath.Clean(path) != filepath.Clean(dir)
}

// removeCgroup removes the cgroup directory at path (relative to each
// hierarchy) from every hierarchy, if empty.
func removeCgroup(path string) {
	os.Remove(filepath.Join(cgroupRoot, path)) // cgroup v2
	hierarchies, _ := os.ReadDir(cgroupRoot)
	for _, h := range hierarchies {
		if h.IsDir() {
			os.Remove(filepath.Join(cgroupRoot, h.Name(), path))
		}
	}
}
