package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// allowedImports maps each fixed top-level folder of the module to the other
// top-level folders its packages may import (DESIGN.md, "Top-level folders").
// A package may always import packages of its own folder, third-party packages
// and the standard library. Go's internal/ rule already keeps other folders
// out of each folder's internal/ packages, so agent and netproxy reaching only
// controlplane's published packages needs no rule here.
var allowedImports = map[string][]string{
	"cmd":          {"raftstore", "controlplane", "agent", "netproxy"},
	"raftstore":    {},
	"controlplane": {"raftstore"},
	"agent":        {"controlplane"},
	"netproxy":     {"controlplane"},
	"e2e":          {"raftstore", "controlplane", "agent", "netproxy"},
}

// listedPackage is the part of one `go list -json` record the layout tests read.
type listedPackage struct {
	ImportPath   string
	Name         string
	Doc          string
	GoFiles      []string
	CgoFiles     []string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Module       *struct{ Path string }
	Error        *struct{ Err string }
}

// TestLayout checks every package of the module against the folder and import
// rules of DESIGN.md and the doc comment rule of STYLE.md.
func TestLayout(t *testing.T) {
	modPath, pkgs := listModule(t)

	t.Run("imports", func(t *testing.T) {
		for _, p := range pkgs {
			if p.Error != nil {
				// Keep checking: the imports go list did read are still listed.
				t.Errorf("%s: got go list error %q, want a package that loads", p.ImportPath, p.Error.Err)
			}
			folder, _ := folderOf(modPath, p.ImportPath)
			if _, known := allowedImports[folder]; !known {
				t.Errorf("%s: got top-level folder %q, want one of %v", p.ImportPath, folder, knownFolders())
				continue
			}
			for _, imports := range []struct {
				kind  string
				paths []string
			}{
				{"imports", p.Imports},
				{"test imports", p.TestImports},
				{"external test imports", p.XTestImports},
			} {
				for _, imp := range imports.paths {
					if err := checkImport(modPath, p.ImportPath, imp); err != nil {
						t.Errorf("%s %s %s: %v", p.ImportPath, imports.kind, imp, err)
					}
				}
			}
		}
	})

	t.Run("doc comments", func(t *testing.T) {
		for _, p := range pkgs {
			if err := checkDoc(p); err != nil {
				t.Errorf("%s: %v", p.ImportPath, err)
			}
		}
	})
}

// TestLayoutImportRules pins checkImport to the rules of DESIGN.md, so the
// module-wide check above cannot pass by checking nothing.
func TestLayoutImportRules(t *testing.T) {
	const mod = "github.com/skiff-sh/skiff"
	tests := []struct {
		from, to string
		wantErr  bool
	}{
		// raftstore imports no other skiff package.
		{"raftstore/internal/mvcc", "raftstore/internal/command", false},
		{"raftstore", "raftstore/internal/mvcc", false},
		{"raftstore", "controlplane", true},
		{"raftstore/internal/mvcc", "agent", true},
		{"raftstore", "netproxy", true},
		{"raftstore", "e2e", true},
		{"raftstore", "cmd/skiff", true},
		// controlplane may import raftstore only.
		{"controlplane/internal/registry", "raftstore", false},
		{"controlplane", "controlplane/client", false},
		{"controlplane", "agent", true},
		{"controlplane", "netproxy", true},
		{"controlplane", "e2e", true},
		{"controlplane", "cmd/skiff", true},
		// agent may import controlplane's packages, nothing else of ours.
		{"agent/internal/pod", "controlplane/client", false},
		{"agent", "raftstore", true},
		{"agent", "netproxy", true},
		{"agent", "e2e", true},
		{"agent", "cmd/skiff", true},
		// netproxy likewise.
		{"netproxy/internal/rules", "controlplane/client", false},
		{"netproxy", "agent", true},
		{"netproxy", "raftstore/internal/mvcc", true},
		{"netproxy", "e2e", true},
		{"netproxy", "cmd/skiff", true},
		// e2e may import any public package but cmd.
		{"e2e/internal/lab", "raftstore", false},
		{"e2e", "agent", false},
		{"e2e", "netproxy", false},
		{"e2e", "controlplane", false},
		{"e2e", "cmd/skiff", true},
		// cmd imports everything but e2e.
		{"cmd/skiff", "raftstore", false},
		{"cmd/skiff", "controlplane", false},
		{"cmd/skiff", "agent", false},
		{"cmd/skiff", "netproxy", false},
		{"cmd/skiff", "cmd/skiff/internal/flags", false},
		{"cmd/skiff", "e2e", true},
		// Packages outside the fixed folders may not exist, so they import nothing of ours.
		{"pkg/util", "raftstore", true},
		{"", "raftstore", true},
	}
	for _, tt := range tests {
		from, to := joinPath(mod, tt.from), joinPath(mod, tt.to)
		err := checkImport(mod, from, to)
		if gotErr := err != nil; gotErr != tt.wantErr {
			t.Errorf("checkImport(%s -> %s): got error %v, want error %v", tt.from, tt.to, err, tt.wantErr)
		}
	}

	// Imports from outside the module are never ours to police, including a
	// module whose path merely starts with ours.
	for _, to := range []string{"fmt", "github.com/hashicorp/raft", mod + "-fork/raftstore", mod + "le/agent"} {
		if err := checkImport(mod, mod+"/raftstore", to); err != nil {
			t.Errorf("checkImport(raftstore -> %s): got error %v, want nil", to, err)
		}
	}
}

// TestLayoutDocRule pins checkDoc to the doc comment rule of STYLE.md.
func TestLayoutDocRule(t *testing.T) {
	tests := []struct {
		name    string
		pkg     listedPackage
		wantErr bool
	}{
		{"documented", listedPackage{Name: "mvcc", Doc: "Package mvcc owns the revisioned store.", GoFiles: []string{"a.go"}}, false},
		{"missing", listedPackage{Name: "mvcc", GoFiles: []string{"a.go"}}, true},
		{"missing with cgo", listedPackage{Name: "mvcc", CgoFiles: []string{"a.go"}}, true},
		{"wrong name", listedPackage{Name: "mvcc", Doc: "Package store owns the store.", GoFiles: []string{"a.go"}}, true},
		{"not a package sentence", listedPackage{Name: "mvcc", Doc: "This package owns the store.", GoFiles: []string{"a.go"}}, true},
		{"command", listedPackage{Name: "main", Doc: "Skiff is a container orchestrator.", GoFiles: []string{"main.go"}}, false},
		{"command missing", listedPackage{Name: "main", GoFiles: []string{"main.go"}}, true},
		{"tests only", listedPackage{Name: "mvcc_test"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkDoc(tt.pkg)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("checkDoc(%+v): got error %v, want error %v", tt.pkg, err, tt.wantErr)
			}
		})
	}
}

// folderOf returns the top-level folder of importPath inside the module
// modPath, "" for the module's root package, and ok false when importPath is
// not in the module.
func folderOf(modPath, importPath string) (folder string, ok bool) {
	if importPath == modPath {
		return "", true
	}
	rest, found := strings.CutPrefix(importPath, modPath+"/")
	if !found {
		return "", false
	}
	folder, _, _ = strings.Cut(rest, "/")
	return folder, true
}

// checkImport returns an error when package from, in module modPath, must not
// import package to.
func checkImport(modPath, from, to string) error {
	toFolder, ours := folderOf(modPath, to)
	if !ours {
		return nil
	}
	fromFolder, _ := folderOf(modPath, from)
	allowed, known := allowedImports[fromFolder]
	if !known {
		return fmt.Errorf("got importer in top-level folder %q, want one of %v", fromFolder, knownFolders())
	}
	if toFolder == fromFolder || slices.Contains(allowed, toFolder) {
		return nil
	}
	return fmt.Errorf("got an import from %s, want %s to import only from %v",
		toFolder, fromFolder, append([]string{fromFolder}, allowed...))
}

// checkDoc returns an error when package p lacks the doc comment STYLE.md asks
// for: one that says what the package owns, starting "Package <name>" for a
// library. Directories holding only tests have no package to document.
func checkDoc(p listedPackage) error {
	if len(p.GoFiles)+len(p.CgoFiles) == 0 {
		return nil
	}
	if p.Doc == "" {
		return fmt.Errorf("got no package doc comment, want one (in doc.go) saying what package %s owns", p.Name)
	}
	if p.Name == "main" {
		return nil
	}
	words := strings.Fields(p.Doc)
	if len(words) < 2 || words[0] != "Package" || strings.TrimRight(words[1], ".,:;") != p.Name {
		return fmt.Errorf("got doc comment %q, want it to start \"Package %s\"", p.Doc, p.Name)
	}
	return nil
}

// knownFolders returns the fixed top-level folders, sorted.
func knownFolders() []string {
	folders := make([]string, 0, len(allowedImports))
	for f := range allowedImports {
		folders = append(folders, f)
	}
	slices.Sort(folders)
	return folders
}

// joinPath returns the import path of the package at rel inside module mod.
func joinPath(mod, rel string) string {
	if rel == "" {
		return mod
	}
	return mod + "/" + rel
}

// listModule runs `go list` over every package of the module holding the
// working directory and returns the module path and the packages, sorted by
// import path. It fails the test when the listing is empty or does not
// include this package, so the layout checks never run over nothing.
func listModule(t *testing.T) (modPath string, pkgs []listedPackage) {
	t.Helper()
	gomod := strings.TrimSpace(string(runGo(t, ".", "env", "GOMOD")))
	if gomod == "" || gomod == os.DevNull {
		t.Fatalf("go env GOMOD: got %q, want the path of the module's go.mod", gomod)
	}
	// -pgo=off: with cmd/skiff's default.pgo, go list names the packages
	// that command imports as build variants ("P [github.com/.../cmd/skiff]").
	out := runGo(t, filepath.Dir(gomod), "list", "-e", "-pgo=off",
		"-json=ImportPath,Name,Doc,GoFiles,CgoFiles,Imports,TestImports,XTestImports,Module,Error", "./...")
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 || pkgs[0].Module == nil {
		t.Fatalf("go list ./...: got %d packages, want the module's packages", len(pkgs))
	}
	modPath = pkgs[0].Module.Path
	var paths []string
	for _, p := range pkgs {
		paths = append(paths, p.ImportPath)
		if p.Module == nil || p.Module.Path != modPath {
			t.Fatalf("go list ./...: got %s outside module %s, want only the module's packages", p.ImportPath, modPath)
		}
	}
	if self := modPath + "/e2e"; !slices.Contains(paths, self) {
		t.Fatalf("go list ./...: got packages %v, want them to include %s", paths, self)
	}
	return modPath, pkgs
}

// runGo runs the go command in dir, outside any workspace, and returns its
// standard output.
func runGo(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}
