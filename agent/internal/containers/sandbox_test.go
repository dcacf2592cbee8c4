package containers

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSandboxLifecycle(t *testing.T) {
	r, cfg := newTestRuntime(t)
	ctx := t.Context()
	spec := SandboxSpec{PodUID: "uid-1", Namespace: "default", Name: "web", Hostname: "web-host"}
	sb, err := r.CreateSandbox(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cfg.RunDir, "sandboxes", "uid-1", "net"); sb.NetNS != want {
		t.Errorf("NetNS %s, want %s", sb.NetNS, want)
	}
	if !sb.pinned() {
		t.Fatal("namespace files are not nsfs mounts")
	}
	// A distinct network namespace from ours.
	var own, pod unix.Stat_t
	unix.Stat("/proc/self/ns/net", &own)
	unix.Stat(sb.NetNS, &pod)
	if own.Ino == pod.Ino {
		t.Error("the sandbox shares the agent's network namespace")
	}

	again, err := r.CreateSandbox(ctx, spec)
	if err != nil || again != sb {
		t.Errorf("second create: got %+v, %v; want %+v", again, err, sb)
	}
	var again2 unix.Stat_t
	unix.Stat(again.NetNS, &again2)
	if again2.Ino != pod.Ino {
		t.Error("second create made a new network namespace")
	}

	// After a restart, a new Runtime finds it.
	r2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	list, err := r2.Sandboxes(ctx)
	if err != nil || len(list) != 1 || list[0] != sb {
		t.Errorf("Sandboxes: got %+v, %v; want [%+v]", list, err, sb)
	}

	for range 2 { // idempotent
		if err := r.RemoveSandbox(ctx, "uid-1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.RunDir, "sandboxes", "uid-1")); !os.IsNotExist(err) {
		t.Errorf("sandbox dir still there (stat: %v)", err)
	}
	if list, _ := r.Sandboxes(ctx); len(list) != 0 {
		t.Errorf("Sandboxes after removal: %+v", list)
	}
}
