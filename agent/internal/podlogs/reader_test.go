package podlogs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// rec is a record at t0 plus sec seconds.
func rec(sec int, s Stream, partial bool, content string) Line {
	return Line{Time: t0.Add(time.Duration(sec) * time.Second), Stream: s, Partial: partial, Content: []byte(content)}
}

func writeLog(t *testing.T, path string, lines ...Line) {
	t.Helper()
	var b []byte
	for _, l := range lines {
		b = AppendLine(b, l)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendLog(t *testing.T, path string, lines ...Line) {
	t.Helper()
	var b []byte
	for _, l := range lines {
		b = AppendLine(b, l)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	// Oldest first: path.2, path.1, path. A long line starts in path.1
	// and ends in path; stderr interleaves with a split stdout line.
	writeLog(t, path+".2", rec(1, Stdout, false, "one"), rec(2, Stderr, false, "two"))
	writeLog(t, path+".1", rec(3, Stdout, false, "three"), rec(4, Stdout, true, "fo"))
	writeLog(t, path,
		rec(5, Stdout, true, "u"), rec(6, Stderr, false, "five"), rec(7, Stdout, false, "r"),
		rec(8, Stdout, false, ""), rec(9, Stdout, false, "six"))
	// A fragment being written is not a record yet.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("2026-01-02T03:04:15Z stdout F unfinis")
	f.Close()

	ts := func(sec int) string { return t0.Add(time.Duration(sec)*time.Second).Format(time.RFC3339Nano) + " " }
	for _, tc := range []struct {
		name string
		o    ReadOptions
		want string
	}{
		{"all", ReadOptions{TailLines: -1}, "one\ntwo\nthree\nfive\nfour\n\nsix\n"},
		{"tail 0", ReadOptions{TailLines: 0}, ""},
		{"tail 1", ReadOptions{TailLines: 1}, "six\n"},
		{"tail 3", ReadOptions{TailLines: 3}, "four\n\nsix\n"},
		{"tail 4 (joined line across files)", ReadOptions{TailLines: 4}, "five\nfour\n\nsix\n"},
		{"tail 5", ReadOptions{TailLines: 5}, "three\nfive\nfour\n\nsix\n"},
		{"tail 7 crosses two files", ReadOptions{TailLines: 7}, "one\ntwo\nthree\nfive\nfour\n\nsix\n"},
		{"tail beyond", ReadOptions{TailLines: 100}, "one\ntwo\nthree\nfive\nfour\n\nsix\n"},
		{"since", ReadOptions{TailLines: -1, Since: t0.Add(4 * time.Second)}, "five\nfour\n\nsix\n"},
		{"since drops a line begun earlier", ReadOptions{TailLines: -1, Since: t0.Add(5 * time.Second)}, "five\n\nsix\n"},
		{"tail and since", ReadOptions{TailLines: 2, Since: t0.Add(9 * time.Second)}, "six\n"},
		{"timestamps", ReadOptions{TailLines: 3, Timestamps: true}, ts(4) + "four\n" + ts(8) + "\n" + ts(9) + "six\n"},
		{"limit", ReadOptions{TailLines: -1, LimitBytes: 10}, "one\ntwo\nth"},
		{"limit with timestamps", ReadOptions{TailLines: 1, Timestamps: true, LimitBytes: 5}, ts(9)[:5]},
		{"limit beyond", ReadOptions{TailLines: 1, LimitBytes: 1000}, "six\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := Read(t.Context(), path, tc.o, &out); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadMissing(t *testing.T) {
	err := Read(t.Context(), filepath.Join(t.TempDir(), "0.log"), ReadOptions{TailLines: -1}, &bytes.Buffer{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want an error wrapping fs.ErrNotExist", err)
	}
}

// TestReadTailLarge: tail of a file far bigger than the blocks it is read
// in, with long lines split into P pieces that straddle block boundaries.
func TestReadTailLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	var b []byte
	var want []string
	for i := range 5000 {
		content := strings.Repeat(string(rune('a'+i%26)), i%97) + fmt.Sprint(i)
		if i%50 == 0 { // a long line in pieces
			long := strings.Repeat("x", 3*MaxLineSize+i)
			for len(long) > MaxLineSize {
				b = AppendLine(b, rec(i, Stdout, true, long[:MaxLineSize]))
				long = long[MaxLineSize:]
			}
			b = AppendLine(b, rec(i, Stdout, false, long+content))
			content = strings.Repeat("x", 3*MaxLineSize+i) + content
		} else {
			b = AppendLine(b, rec(i, Stderr, false, content))
		}
		want = append(want, content+"\n")
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2, 49, 50, 51, 333, 4999, 5000} {
		var out bytes.Buffer
		if err := Read(t.Context(), path, ReadOptions{TailLines: int64(n)}, &out); err != nil {
			t.Fatal(err)
		}
		if got, w := out.String(), strings.Join(want[len(want)-n:], ""); got != w {
			t.Errorf("tail %d: got %d bytes (%.40q...), want %d bytes (%.40q...)", n, len(got), got, len(w), w)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitOutput(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for out.String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("got %q, want %q", out.String(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestReadFollowRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	writeLog(t, path, rec(1, Stdout, false, "a"), rec(2, Stdout, false, "b"))
	ctx, cancel := context.WithCancel(t.Context())
	out := &syncBuffer{}
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		done <- Read(ctx, path, ReadOptions{Follow: true, TailLines: 1}, out)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	waitOutput(t, out, "b\n")

	appendLog(t, path, rec(3, Stdout, true, "c-"))
	appendLog(t, path, rec(4, Stdout, false, "c"))
	waitOutput(t, out, "b\nc-c\n")

	// Rotation as the writer does it; what is written to the old file
	// before the rename must not be lost.
	appendLog(t, path, rec(5, Stdout, false, "d"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	writeLog(t, path, rec(6, Stderr, false, "e"))
	waitOutput(t, out, "b\nc-c\nd\ne\n")

	// Two rotations before the reader looks: the middle file is read too.
	appendLog(t, path, rec(7, Stdout, false, "f"))
	os.Rename(path+".1", path+".2")
	os.Rename(path, path+".1")
	writeLog(t, path, rec(8, Stdout, false, "g"))
	os.Rename(path+".2", path+".3")
	os.Rename(path+".1", path+".2")
	os.Rename(path, path+".1")
	writeLog(t, path, rec(9, Stdout, false, "h"))
	waitOutput(t, out, "b\nc-c\nd\ne\nf\ng\nh\n")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Read after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not return after its context ended")
	}
}

func TestReadFollowInactive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	writeLog(t, path, rec(1, Stdout, false, "a"))
	var mu sync.Mutex
	active := true
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- Read(t.Context(), path, ReadOptions{Follow: true, TailLines: -1, Timestamps: true, Active: func() bool {
			mu.Lock()
			defer mu.Unlock()
			return active
		}}, out)
	}()
	ts := t0.Add(time.Second).Format(time.RFC3339Nano)
	waitOutput(t, out, ts+" a\n")
	select {
	case err := <-done:
		t.Fatalf("Read returned while the container is active: %v", err)
	default:
	}
	// The container writes its last words and exits: they are read, then
	// Read returns by itself.
	appendLog(t, path, rec(2, Stdout, false, "bye"))
	mu.Lock()
	active = false
	mu.Unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read kept following an inactive log")
	}
	if got, want := out.String(), ts+" a\n"+t0.Add(2*time.Second).Format(time.RFC3339Nano)+" bye\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestReadFollowLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	writeLog(t, path, rec(1, Stdout, false, "abc"))
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- Read(t.Context(), path, ReadOptions{Follow: true, TailLines: -1, LimitBytes: 6}, out) }()
	waitOutput(t, out, "abc\n")
	appendLog(t, path, rec(2, Stdout, false, "defg"))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a following Read did not stop at its byte limit")
	}
	if got := out.String(); got != "abc\nde" {
		t.Fatalf("got %q, want %q", got, "abc\nde")
	}
}
