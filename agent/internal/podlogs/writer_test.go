package podlogs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// writtenRecords parses every record of one file.
func writtenRecords(t *testing.T, path string) []Line {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Line
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l, err := ParseLine(sc.Bytes())
		if err != nil {
			t.Fatalf("record %q: %v", sc.Text(), err)
		}
		l.Content = append([]byte(nil), l.Content...)
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWriterSplitsLines(t *testing.T) {
	long := strings.Repeat("x", MaxLineSize*2+10)
	tests := []struct {
		name   string
		writes []string
		want   []string // "F:content" or "P:content"
	}{
		{"one line", []string{"hello\n"}, []string{"F:hello"}},
		{"two lines one write", []string{"a\nb\n"}, []string{"F:a", "F:b"}},
		{"line across writes", []string{"he", "llo\nwor", "ld\n"}, []string{"F:hello", "F:world"}},
		{"empty line", []string{"\n"}, []string{"F:"}},
		{"unfinished flushed on close", []string{"a\nprompt> "}, []string{"F:a", "F:prompt> "}},
		{"long line", []string{long + "\n"}, []string{"P:" + long[:MaxLineSize], "P:" + long[MaxLineSize:2*MaxLineSize], "F:" + long[2*MaxLineSize:]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c", "0.log")
			w, err := NewWriter(path, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			out := w.Stream(Stdout)
			for _, s := range tt.writes {
				if _, err := out.Write([]byte(s)); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range writtenRecords(t, path) {
				if l.Stream != Stdout {
					t.Errorf("stream %q, want stdout", l.Stream)
				}
				tag := "F:"
				if l.Partial {
					tag = "P:"
				}
				got = append(got, tag+string(l.Content))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %.200q, want %.200q", got, tt.want)
			}
		})
	}
}

func TestWriterConcurrentStreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := NewWriter(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, s := range []Stream{Stdout, Stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := w.Stream(s)
			for i := range 500 {
				fmt.Fprintf(out, "%s line %d\n", s, i)
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	next := map[Stream]int{}
	for _, l := range writtenRecords(t, path) {
		want := fmt.Sprintf("%s line %d", l.Stream, next[l.Stream])
		if string(l.Content) != want {
			t.Fatalf("got %q, want %q", l.Content, want)
		}
		next[l.Stream]++
	}
	if next[Stdout] != 500 || next[Stderr] != 500 {
		t.Errorf("got %v records, want 500 per stream", next)
	}
}

func TestWriterRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	w, err := NewWriter(path, 1000, 3)
	if err != nil {
		t.Fatal(err)
	}
	out := w.Stream(Stderr)
	const n = 400
	for i := range n {
		fmt.Fprintf(out, "line %04d\n", i)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".4"); !os.IsNotExist(err) {
		t.Errorf("%s.4 exists (err %v), want only 3 rotated files", path, err)
	}
	// Oldest first: .3, .2, .1, then the current file; lines are consecutive and end at n-1.
	var all []Line
	for _, p := range []string{path + ".3", path + ".2", path + ".1", path} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 1000+100 {
			t.Errorf("%s is %d bytes, want about 1000 at most", p, st.Size())
		}
		all = append(all, writtenRecords(t, p)...)
	}
	for i := 1; i < len(all); i++ {
		var a, b int
		fmt.Sscanf(string(all[i-1].Content), "line %d", &a)
		fmt.Sscanf(string(all[i].Content), "line %d", &b)
		if b != a+1 {
			t.Fatalf("record %d: %q after %q, want consecutive", i, all[i].Content, all[i-1].Content)
		}
	}
	if last := all[len(all)-1].Content; !bytes.Equal(last, fmt.Appendf(nil, "line %04d", n-1)) {
		t.Errorf("last record %q, want line %04d", last, n-1)
	}
}

func TestWriterAppendsToExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	for i := range 2 {
		w, err := NewWriter(path, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w.Stream(Stdout), "run %d\n", i)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	recs := writtenRecords(t, path)
	if len(recs) != 2 || string(recs[0].Content) != "run 0" || string(recs[1].Content) != "run 1" {
		t.Errorf("got %d records %v, want run 0, run 1", len(recs), recs)
	}
	w, _ := NewWriter(path, 0, 0)
	w.Close()
	if _, err := w.Stream(Stdout).Write([]byte("x\n")); err != ErrClosed {
		t.Errorf("write after close: got %v, want ErrClosed", err)
	}
}
