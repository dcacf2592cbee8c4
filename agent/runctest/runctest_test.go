package runctest

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestRemoveUnder: the state and the empty cgroups of a container whose
// bundle is under the directory go; another's stay, as do cgroups that
// still hold something.
func TestRemoveUnder(t *testing.T) {
	runcRoot, cgroupRoot = t.TempDir(), t.TempDir()
	t.Cleanup(func() { runcRoot, cgroupRoot = "/run/containerd/runc", "/sys/fs/cgroup" })
	mine, theirs := t.TempDir(), t.TempDir()
	mkdir := func(p string) string {
		t.Helper()
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	container := func(ns, id, bundleDir string, busy bool) (stateDir string, cgroups []string) {
		t.Helper()
		stateDir = mkdir(filepath.Join(runcRoot, ns, id))
		for _, h := range []string{"memory", "pids"} {
			cg := mkdir(filepath.Join(cgroupRoot, h, ns, id))
			if busy {
				mkdir(filepath.Join(cg, "child"))
			}
			cgroups = append(cgroups, cg)
		}
		st := `{"cgroup_paths":{"memory":"` + cgroups[0] + `","pids":"` + cgroups[1] + `","root":"` + cgroupRoot + `"},` +
			`"config":{"labels":["bundle=` + filepath.Join(bundleDir, "containerd", ns, id) + `"]}}`
		if err := os.WriteFile(filepath.Join(stateDir, "state.json"), []byte(st), 0o600); err != nil {
			t.Fatal(err)
		}
		return stateDir, cgroups
	}
	gone, goneCgroups := container("skiff", "a", mine, false)
	busy, busyCgroups := container("skiff", "b", mine, true)
	other, otherCgroups := container("skiff", "c", theirs, false)

	if got, want := StatesUnder(mine), []string{gone, busy}; !slices.Equal(got, want) {
		t.Errorf("StatesUnder: %v, want %v", got, want)
	}
	RemoveUnder(mine)
	if got := StatesUnder(mine); len(got) != 0 {
		t.Errorf("StatesUnder after RemoveUnder: %v", got)
	}
	for _, p := range append([]string{gone}, goneCgroups...) {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", p, err)
		}
	}
	for _, p := range append(append([]string{other, cgroupRoot}, otherCgroups...), busyCgroups...) {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v, want it kept", p, err)
		}
	}
	if _, err := os.Stat(busy); !os.IsNotExist(err) {
		t.Errorf("%s: the state of a container under the directory stays (%v)", busy, err)
	}
}

// TestRemoveNamespace: a namespace's empty directories go, in the runc
// root and in every cgroup hierarchy; non-empty ones and other
// namespaces' stay.
func TestRemoveNamespace(t *testing.T) {
	runcRoot, cgroupRoot = t.TempDir(), t.TempDir()
	t.Cleanup(func() { runcRoot, cgroupRoot = "/run/containerd/runc", "/sys/fs/cgroup" })
	for _, p := range []string{
		filepath.Join(runcRoot, "ns1"), filepath.Join(runcRoot, "ns2"),
		filepath.Join(cgroupRoot, "memory", "ns1"), filepath.Join(cgroupRoot, "pids", "ns1", "still-running"),
		filepath.Join(cgroupRoot, "ns1"), filepath.Join(cgroupRoot, "memory", "ns2"),
	} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	RemoveNamespace("ns1")
	RemoveNamespace("../memory") // never outside a hierarchy
	for _, p := range []string{filepath.Join(runcRoot, "ns1"), filepath.Join(cgroupRoot, "memory", "ns1"), filepath.Join(cgroupRoot, "ns1")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", p, err)
		}
	}
	for _, p := range []string{filepath.Join(runcRoot, "ns2"), filepath.Join(cgroupRoot, "pids", "ns1", "still-running"), filepath.Join(cgroupRoot, "memory", "ns2"), filepath.Join(cgroupRoot, "memory")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v, want it kept", p, err)
		}
	}
}
