package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMemoryLimitFlag(t *testing.T) {
	for in, want := range map[string]int64{"4Gi": 4 << 30, "512Mi": 512 << 20, "2000000000": 2000000000, "0": 0} {
		var m memoryLimit
		if err := m.Set(in); err != nil || int64(m) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, m, err, want)
		}
	}
	for _, in := range []string{"lots", "-1Gi", ""} {
		var m memoryLimit
		if err := m.Set(in); err == nil {
			t.Errorf("Set(%q) = %d, want an error", in, m)
		}
	}
	if m := memoryLimit(4 << 30); m.String() != "4Gi" {
		t.Errorf("String() = %q, want 4Gi", m.String())
	}
}

func TestAvailableMemory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if got := memTotal(write("meminfo", "MemFree:  100 kB\nMemTotal:       24576000 kB\n")); got != 24576000*1024 {
		t.Errorf("memTotal = %d, want %d", got, 24576000*1024)
	}
	if got := memTotal(write("bad", "MemTotal: many kB\n")); got != 0 {
		t.Errorf("memTotal of a bad file = %d, want 0", got)
	}
	for content, want := range map[string]int64{"max\n": 0, "2147483648\n": 2 << 30, "9223372036854771712\n": 0, "junk": 0} {
		if got := cgroupLimit(write("limit", content)); got != want {
			t.Errorf("cgroupLimit(%q) = %d, want %d", content, got, want)
		}
	}
	if got := cgroupLimit(filepath.Join(dir, "absent")); got != 0 {
		t.Errorf("cgroupLimit of no file = %d, want 0", got)
	}
	// This machine has memory; whatever its cgroup says, it is no more
	// than the machine's.
	if got, total := availableMemory(), memTotal("/proc/meminfo"); got <= 0 || got > total {
		t.Errorf("availableMemory() = %d, want in (0, %d]", got, total)
	}
}
