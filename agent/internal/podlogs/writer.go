package podlogs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Defaults of NewWriter for a zero maxSize or maxFiles.
const (
	DefaultMaxSize  = 10 << 20
	DefaultMaxFiles = 5
	// MaxLineSize is the longest content of one record; longer lines are
	// split into P records followed by an F record, as the kubelet does.
	MaxLineSize = 16 << 10
)

// ErrClosed is returned by a stream's Write after the Writer is closed.
var ErrClosed = errors.New("podlogs: writer closed")

// Writer appends records to a log file and rotates it. Streams obtained
// from one Writer may be written concurrently; each keeps its own
// unfinished line.
type Writer struct {
	path     string
	maxSize  int64
	maxFiles int

	mu      sync.Mutex // guards everything below
	f       *os.File
	size    int64
	closed  bool
	streams []*streamWriter
	buf     []byte
	now     func() time.Time
}

// NewWriter opens path for appending, creating it and its directory.
// maxSize is the size in bytes after which the file is rotated (0 =
// DefaultMaxSize); maxFiles is how many rotated files (path.1 ..
// path.maxFiles) are kept (0 = DefaultMaxFiles).
func NewWriter(path string, maxSize int64, maxFiles int) (*Writer, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if maxFiles <= 0 {
		maxFiles = DefaultMaxFiles
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("podlogs: %w", err)
	}
	w := &Writer{path: path, maxSize: maxSize, maxFiles: maxFiles, now: time.Now}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("podlogs: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("podlogs: %w", err)
	}
	w.f, w.size = f, st.Size()
	return nil
}

// Stream returns a writer for one output of the container. It splits what
// is written into lines; an unfinished line is kept until its newline
// arrives, it grows beyond MaxLineSize, or the Writer is closed.
func (w *Writer) Stream(s Stream) io.Writer {
	w.mu.Lock()
	defer w.mu.Unlock()
	sw := &streamWriter{w: w, stream: s}
	w.streams = append(w.streams, sw)
	return sw
}

// Close writes every stream's unfinished line as a final record and closes
// the file. Later writes fail with ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	var errs []error
	for _, s := range w.streams {
		if len(s.pending) > 0 {
			errs = append(errs, w.emitLocked(s.stream, s.pending, false))
			s.pending = nil
		}
	}
	w.closed = true
	errs = append(errs, w.f.Close())
	return errors.Join(errs...)
}

// emitLocked writes one record and rotates when the file became too big.
func (w *Writer) emitLocked(s Stream, content []byte, partial bool) error {
	w.buf = AppendLine(w.buf[:0], Line{Time: w.now(), Stream: s, Partial: partial, Content: content})
	n, err := w.f.Write(w.buf)
	w.size += int64(n)
	if err != nil {
		return fmt.Errorf("podlogs: %w", err)
	}
	if w.size >= w.maxSize {
		return w.rotateLocked()
	}
	return nil
}

// rotateLocked shifts path.i to path.i+1 (dropping the oldest), renames
// path to path.1 and starts a new path.
func (w *Writer) rotateLocked() error {
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("podlogs: %w", err)
	}
	os.Remove(fmt.Sprintf("%s.%d", w.path, w.maxFiles))
	for i := w.maxFiles - 1; i >= 1; i-- {
		err := os.Rename(fmt.Sprintf("%s.%d", w.path, i), fmt.Sprintf("%s.%d", w.path, i+1))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("podlogs: rotate: %w", err)
		}
	}
	if err := os.Rename(w.path, w.path+".1"); err != nil {
		return fmt.Errorf("podlogs: rotate: %w", err)
	}
	return w.open()
}

type streamWriter struct {
	w       *Writer
	stream  Stream
	pending []byte // unfinished line; guarded by w.mu
}

func (s *streamWriter) Write(p []byte) (int, error) {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, ErrClosed
	}
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.pending = append(s.pending, p...)
			p = nil
		} else {
			s.pending = append(s.pending, p[:i]...)
			p = p[i+1:]
		}
		// Full-size pieces of a long line go out as partial records.
		for len(s.pending) > MaxLineSize {
			if err := w.emitLocked(s.stream, s.pending[:MaxLineSize], true); err != nil {
				return n, err
			}
			s.pending = append(s.pending[:0], s.pending[MaxLineSize:]...)
		}
		if i >= 0 {
			if err := w.emitLocked(s.stream, s.pending, false); err != nil {
				return n, err
			}
			s.pending = s.pending[:0]
		}
	}
	return n, nil
}
