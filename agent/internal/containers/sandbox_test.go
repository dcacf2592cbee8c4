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

func TestSandboxesConcurrent(t *testing.T) {
	r, _ := newTestRuntime(t)
	const n = 6
	sbs := make([]Sandbox, n)
	errs := make([]error, n)
	done := make(chan struct{})
	for i := range n {
		go func() {
			defer func() { done <- struct{}{} }()
			sbs[i], errs[i] = r.CreateSandbox(t.Context(), SandboxSpec{PodUID: "c" + string(rune('a'+i)), Namespace: "ns", Name: "p"})
		}()
	}
	for range n {
		<-done
	}
	inodes := map[uint64]bool{}
	for i, sb := range sbs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		var st unix.Stat_t
		if err := unix.Stat(sb.NetNS, &st); err != nil || !sb.pinned() {
			t.Fatalf("sandbox %d not pinned: %v", i, err)
		}
		inodes[st.Ino] = true
		if sb.Hostname != "p" {
			t.Errorf("hostname %q, want the pod name", sb.Hostname)
		}
	}
	if len(inodes) != n {
		t.Errorf("got %d distinct network namespaces, want %d", len(inodes), n)
	}
	list, err := r.Sandboxes(t.Context())
	if err != nil || len(list) != n {
		t.Errorf("Sandboxes: %d, %v; want %d", len(list), err, n)
	}
}
