package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// memoryLimit is a --memory-limit value: a quantity of bytes ("4Gi",
// "512Mi", "2000000000"); 0 (the default) means half of availableMemory.
type memoryLimit int64

func (m *memoryLimit) String() string {
	if *m == 0 {
		return "0"
	}
	return resource.NewQuantity(int64(*m), resource.BinarySI).String()
}

func (m *memoryLimit) Set(v string) error {
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return fmt.Errorf("want a quantity of bytes such as 4Gi: %w", err)
	}
	n, ok := q.AsInt64()
	if !ok || n < 0 {
		return fmt.Errorf("want a quantity of bytes such as 4Gi, not %s", v)
	}
	*m = memoryLimit(n)
	return nil
}

// availableMemory returns the memory this process may use: the machine's
// (MemTotal), or its cgroup's limit (cgroup v2 memory.max, v1
// memory.limit_in_bytes) when lower. It returns 0 when it cannot tell.
func availableMemory() int64 {
	total := memTotal("/proc/meminfo")
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if l := cgroupLimit(f); l > 0 && (total == 0 || l < total) {
			total = l
		}
	}
	return total
}

// memTotal reads MemTotal from a meminfo file, in bytes; 0 if it cannot.
func memTotal(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb * 1024
		}
	}
	return 0
}

// cgroupLimit reads a cgroup memory limit file, in bytes; 0 when there is
// none ("max", v1's huge "unlimited" value) or it cannot be read.
func cgroupLimit(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n >= 1<<62 {
		return 0
	}
	return n
}
