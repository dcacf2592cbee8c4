package volumes

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Names inside a projected volume directory, as the kubelet's.
const (
	dataDirName    = "..data"
	newDataDirName = "..data_tmp"
	tsDirFormat    = "..2006_01_02_15_04_05."
)

// file is one projected file: its content and permission bits.
type file struct {
	data []byte
	mode fs.FileMode
}

// validPayloadPath reports whether p may name a file inside a volume: the
// kubelet's rules (relative, no ".." element, not starting with "..").
func validPayloadPath(p string) error {
	if p == "" {
		return fmt.Errorf("%w: empty path", ErrBadPath)
	}
	if filepath.IsAbs(p) {
		return fmt.Errorf("%w: %q is absolute", ErrBadPath, p)
	}
	if strings.HasPrefix(p, "..") {
		return fmt.Errorf("%w: %q starts with '..'", ErrBadPath, p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return fmt.Errorf("%w: %q contains '..'", ErrBadPath, p)
		}
	}
	return nil
}

// writeAtomic makes dir hold exactly payload (relative path → file), the
// kubelet's way: files in a fresh ..<timestamp> directory, ..data renamed
// over to point at it, and one symlink per top-level name through ..data.
// When the current ..data already holds the same files (content and mode),
// nothing is rewritten and changed is false. A crash at any point leaves
// either the old or the new ..data in place; leftovers are removed by the
// next call.
func writeAtomic(dir string, payload map[string]file) (changed bool, err error) {
	clean := make(map[string]file, len(payload))
	for p, f := range payload {
		if err := validPayloadPath(p); err != nil {
			return false, err
		}
		clean[filepath.Clean(p)] = f
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	oldTS, err := os.Readlink(filepath.Join(dir, dataDirName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if oldTS != "" {
		same, err := sameContent(filepath.Join(dir, oldTS), clean)
		if err != nil {
			return false, err
		}
		if same {
			// Repair user-visible links and leftovers of an interrupted write.
			if err := linkTopLevel(dir, clean); err != nil {
				return false, err
			}
			return false, removeStale(dir, oldTS, clean)
		}
	}

	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format(tsDirFormat))
	if err != nil {
		return false, err
	}
	tsName := filepath.Base(ts)
	if err := os.Chmod(ts, 0o755); err != nil {
		return false, err
	}
	for p, f := range clean {
		full := filepath.Join(ts, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return false, err
		}
		if err := os.WriteFile(full, f.data, f.mode); err != nil {
			return false, err
		}
		// WriteFile's mode is masked by the umask.
		if err := os.Chmod(full, f.mode); err != nil {
			return false, err
		}
	}
	tmp := filepath.Join(dir, newDataDirName)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if err := os.Symlink(tsName, tmp); err != nil {
		return false, err
	}
	// rename(2) replaces the old ..data link atomically.
	if err := os.Rename(tmp, filepath.Join(dir, dataDirName)); err != nil {
		return false, err
	}
	if err := linkTopLevel(dir, clean); err != nil {
		return true, err
	}
	return true, removeStale(dir, tsName, clean)
}

// topLevel returns the first element of each payload path.
func topLevel(payload map[string]file) map[string]bool {
	out := make(map[string]bool, len(payload))
	for p := range payload {
		out[strings.SplitN(p, "/", 2)[0]] = true
	}
	return out
}

// linkTopLevel creates the symlinks name → ..data/name that are missing.
func linkTopLevel(dir string, payload map[string]file) error {
	for name := range topLevel(payload) {
		link := filepath.Join(dir, name)
		target := filepath.Join(dataDirName, name)
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		if err := os.RemoveAll(link); err != nil {
			return err
		}
		if err := os.Symlink(target, link); err != nil {
			return err
		}
	}
	return nil
}

// removeStale removes the entries of dir that belong to no current name:
// old timestamped directories, a leftover ..data_tmp, and user-visible
// links for names no longer projected.
func removeStale(dir, currentTS string, payload map[string]file) error {
	keep := topLevel(payload)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		switch {
		case n == dataDirName || n == currentTS || keep[n]:
			continue
		case strings.HasPrefix(n, ".."):
			// ..<timestamp> dirs and ..data_tmp.
		case e.Type()&fs.ModeSymlink == 0:
			// Not ours: the kubelet only removes its own links.
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	return nil
}

// sameContent reports whether the regular files below ts are exactly
// payload.
func sameContent(ts string, payload map[string]file) (bool, error) {
	seen := 0
	same := true
	err := filepath.WalkDir(ts, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(ts, p)
		if err != nil {
			return err
		}
		want, ok := payload[rel]
		if !ok || !d.Type().IsRegular() {
			same = false
			return fs.SkipAll
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode().Perm() != want.mode.Perm() {
			same = false
			return fs.SkipAll
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(data, want.data) {
			same = false
			return fs.SkipAll
		}
		seen++
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return same && seen == len(payload), nil
}
