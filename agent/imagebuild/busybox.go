package imagebuild

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// BusyboxPath is where Busybox reads the host's busybox binary (Debian
// package busybox-static).
const BusyboxPath = "/bin/busybox"

// DefaultEnv is the environment of the images this package builds.
var DefaultEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// basicApplets are linked even when `busybox --list` cannot be run.
var basicApplets = []string{
	"cat", "chmod", "cp", "date", "df", "echo", "env", "false", "grep", "head", "hostname",
	"httpd", "id", "ifconfig", "ip", "kill", "ln", "ls", "mkdir", "mount", "mv", "nc", "nslookup",
	"ping", "printf", "ps", "pwd", "rm", "sh", "sleep", "sort", "tail", "tee", "test", "timeout",
	"top", "touch", "tr", "true", "uname", "uptime", "wc", "wget", "whoami", "[",
}

// Busybox returns the Spec of a busybox image named name: the host's static
// /bin/busybox as /bin/busybox with a /bin symlink for each applet it has,
// /etc/passwd and /etc/group with root and nobody, /etc/hosts, and /tmp;
// Cmd is ["sh"]. It fails with ErrNotStatic when the host's busybox is
// dynamically linked, and with a clear error when it is missing.
func Busybox(name string) (Spec, error) {
	files, err := BusyboxFiles()
	if err != nil {
		return Spec{}, err
	}
	return Spec{Name: name, Files: files, Cmd: []string{"sh"}, Env: DefaultEnv}, nil
}

// BusyboxFiles returns the files of the Busybox image, for building other
// images on top of them.
func BusyboxFiles() ([]File, error) {
	data, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("imagebuild: reading the host's busybox (install the Debian package busybox-static): %w", err)
	}
	if err := checkStatic(data); err != nil {
		return nil, err
	}
	files := []File{
		{Path: "/bin/busybox", Mode: 0o755, Data: data},
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "/root", Mode: fs.ModeDir | 0o700},
		{Path: "/proc", Mode: fs.ModeDir | 0o555},
		{Path: "/sys", Mode: fs.ModeDir | 0o555},
		{Path: "/dev", Mode: fs.ModeDir | 0o755},
		{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Path: "/etc/group", Data: []byte("root:x:0:\nnobody:x:65534:\n")},
		{Path: "/etc/hosts", Data: []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")},
	}
	seen := map[string]bool{"busybox": true}
	for _, a := range applets() {
		a = path.Base(a)
		if a == "" || a == "." || a == "/" || seen[a] {
			continue
		}
		seen[a] = true
		files = append(files, File{Path: "/bin/" + a, Link: "busybox"})
	}
	return files, nil
}

// applets returns what `busybox --list` prints, or basicApplets.
func applets() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, BusyboxPath, "--list").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		return basicApplets
	}
	return strings.Fields(string(out))
}

// checkStatic returns ErrNotStatic unless data is an ELF executable without
// an interpreter (PT_INTERP) or dynamic section.
func checkStatic(data []byte) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("imagebuild: %s is not an ELF executable: %w", BusyboxPath, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			return fmt.Errorf("%w: %s has a dynamic loader or dynamic section (install busybox-static)", ErrNotStatic, BusyboxPath)
		}
	}
	return nil
}

// GoOption changes how GoBinary builds.
type GoOption func(*goOptions)

type goOptions struct {
	base  []File
	dir   string
	path  string
	args  []string
	ports []string
}

// OnBase puts the program on top of base's files (e.g. a Busybox spec, so
// the image has a shell), replacing none of them.
func OnBase(base Spec) GoOption {
	return func(o *goOptions) { o.base = append(o.base, base.Files...) }
}

// BuildDir is the directory `go build` runs in (default: the current one);
// relative package paths are resolved against it.
func BuildDir(dir string) GoOption { return func(o *goOptions) { o.dir = dir } }

// BinaryPath is where the program goes in the image (default /usr/local/bin/<package base name>).
func BinaryPath(p string) GoOption { return func(o *goOptions) { o.path = p } }

// Args sets the image's Cmd (the program's arguments).
func Args(args ...string) GoOption { return func(o *goOptions) { o.args = args } }

// Ports sets the image's exposed ports ("8080/tcp").
func Ports(ports ...string) GoOption { return func(o *goOptions) { o.ports = ports } }

// GoBinary builds the Go package pkg (a "./relative" directory or an import
// path of the module at BuildDir) as a static executable (CGO_ENABLED=0,
// -trimpath) for linux/GOARCH and returns an image whose entrypoint is it.
func GoBinary(name, pkg string, opts ...GoOption) (Spec, error) {
	var o goOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.path == "" {
		o.path = "/usr/local/bin/" + path.Base(strings.TrimSuffix(filepath.ToSlash(pkg), "/"))
	}
	tmp, err := os.MkdirTemp("", "imagebuild-go-")
	if err != nil {
		return Spec{}, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "prog")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Dir = o.dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return Spec{}, fmt.Errorf("imagebuild: go build %s: %w\n%s", pkg, err, stderr.Bytes())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return Spec{}, err
	}
	files := append([]File(nil), o.base...)
	files = slices.DeleteFunc(files, func(f File) bool { return path.Clean(f.Path) == path.Clean(o.path) })
	files = append(files, File{Path: o.path, Mode: 0o755, Data: data})
	return Spec{Name: name, Files: files, Entrypoint: []string{o.path}, Cmd: o.args, Env: DefaultEnv, ExposedPorts: o.ports}, nil
}
