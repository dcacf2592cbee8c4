package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Requirements returns why a lab cannot run here ("" when it can): not
// root, or a binary missing.
func Requirements() string {
	if os.Geteuid() != 0 {
		return "the lab needs root"
	}
	for _, b := range []string{"ip", "nsenter", "iptables", "containerd", "containerd-shim-runc-v2", "runc", "ctr", "docker-registry", "go"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Sprintf("the lab needs %s (make deps): %v", b, err)
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		return "the lab needs /bin/busybox (busybox-static)"
	}
	return ""
}

// Start brings a lab up for a test: it skips t when Requirements says the
// machine cannot run one, removes the labs of crashed test binaries
// (CleanupStale of $TMPDIR/skl-*), defaults Dir to a new temp dir and SkiffBin to
// SkiffBinary(t), and registers with t.Cleanup the logs' tails (when t
// failed) and Down. It fails t when Up fails.
func Start(t testing.TB, cfg Config) *Lab {
	t.Helper()
	if why := Requirements(); why != "" {
		t.Skip(why)
	}
	// Labs of earlier test binaries that died before their cleanup.
	if err := CleanupStale(filepath.Join(os.TempDir(), "skl-*")); err != nil {
		t.Logf("removing stale labs: %v", err)
	}
	if cfg.Dir == "" {
		// Short: containerd's socket path must fit in a sockaddr_un.
		dir, err := os.MkdirTemp("", "skl-")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Dir = dir
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	if cfg.SkiffBin == "" && (cfg.Masters > 0 || cfg.StartAgents) {
		cfg.SkiffBin = SkiffBinary(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			var b bytes.Buffer
			l.DumpLogs(&b, 40)
			t.Logf("lab %s logs:\n%s", l.ID(), b.String())
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

// skiffBuild is the binary built once per test binary by SkiffBinary.
var skiffBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// RemoveSkiffBinary removes the binary SkiffBinary built, if any; for TestMain.
func RemoveSkiffBinary() {
	if skiffBuild.dir != "" {
		os.RemoveAll(skiffBuild.dir)
	}
}

// SkiffBinary returns $SKIFF_BIN when set, else ./cmd/skiff of the module
// holding the working directory built once per test binary into a temp
// dir, which the test binary's TestMain removes with RemoveSkiffBinary
// after m.Run.
func SkiffBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SKIFF_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatalf("SKIFF_BIN=%q: %v", p, err)
		}
		return abs
	}
	skiffBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "skiff-lab-bin-")
		if err != nil {
			skiffBuild.err = err
			return
		}
		skiffBuild.dir = dir
		skiffBuild.path, skiffBuild.err = BuildSkiff(context.Background(), "", filepath.Join(dir, "skiff"))
	})
	if skiffBuild.err != nil {
		t.Fatalf("building skiff: %v", skiffBuild.err)
	}
	return skiffBuild.path
}

// BuildSkiff builds ./cmd/skiff of the module at moduleDir ("" = the one
// holding the working directory) into out (CGO_ENABLED=0, as `make build`)
// and returns out.
func BuildSkiff(ctx context.Context, moduleDir, out string) (string, error) {
	if moduleDir == "" {
		gomod, err := run(ctx, "go", "env", "GOMOD")
		gomod = strings.TrimSpace(gomod)
		if err != nil || gomod == "" || gomod == os.DevNull {
			return "", fmt.Errorf("lab: go env GOMOD: got %q (%v), want the module's go.mod", gomod, err)
		}
		moduleDir = filepath.Dir(gomod)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/skiff")
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("lab: go build ./cmd/skiff: %w\n%s", err, b)
	}
	return out, nil
}
