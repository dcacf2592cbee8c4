package podlogs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"
)

// ReadOptions select what Read writes, as the fields of the same names of
// PodLogOptions do for the kubelet.
type ReadOptions struct {
	// Follow keeps reading after the end of the log: Read then returns
	// only when ctx ends, or when Active reports false at the end of the
	// log.
	Follow bool
	// Timestamps prefixes each line with its time (RFC3339Nano) and a space.
	Timestamps bool
	// TailLines is how many of the last complete lines to start with;
	// -1 is all of them. The zero value selects none: callers that parse a
	// request set -1 when the request has no tailLines.
	TailLines int64
	// Since drops lines written before it (zero: none dropped).
	Since time.Time
	// LimitBytes stops Read, with nil, after that many bytes of output
	// (timestamps included); 0 is no limit.
	LimitBytes int64
	// Active, when set, is asked by a following Read each time it reaches
	// the end of the log: false means nothing writes the log any more (the
	// container exited), so Read returns once the log is drained, as the
	// kubelet ends `kubectl logs -f` of a terminated container.
	Active func() bool
}

// pollInterval is how often a following Read looks for new records and
// for rotation once it has reached the end of the log.
const pollInterval = 100 * time.Millisecond

// tailChunk is the size of the blocks a tail reads backwards.
const tailChunk = 32 << 10

// maxPending is how much of one unfinished line (P records) is held back
// before it is written anyway, so that one endless line cannot use
// unbounded memory.
const maxPending = 1 << 20

// errLimit ends a Read that has written LimitBytes.
var errLimit = errors.New("podlogs: byte limit reached")

// Read writes the log at path to out: the rotated files oldest first
// (path.N .. path.1), then path, as plain lines (stream tags and record
// times removed, P pieces of a long line joined). With Follow it then
// keeps reading path, across rotations (a renamed path is drained, then
// the file that replaced it is read from its start), until ctx ends or
// o.Active reports false. Read flushes what it wrote each time it has
// caught up with the log; an out that flushes on Write (an HTTP response)
// therefore gets the output in few, large writes.
//
// Read returns nil when the log is fully written, when LimitBytes is
// reached, and when a Follow ends (ctx done or inactive); an error
// wrapping fs.ErrNotExist when no file of the log exists; or out's error.
func Read(ctx context.Context, path string, o ReadOptions, out io.Writer) error {
	files, err := openChain(path)
	if err != nil {
		return err
	}
	defer func() {
		for _, f := range files {
			f.f.Close()
		}
	}()
	w := bufio.NewWriterSize(out, 32<<10)
	e := &emitter{o: o, w: w, left: o.LimitBytes}
	err = read(ctx, path, files, o, e)
	if errors.Is(err, errLimit) {
		err = nil
	}
	if ferr := w.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("podlogs: %w", ferr)
	}
	return err
}

// logFile is one opened file of a log's chain.
type logFile struct {
	f  *os.File
	id fileID
}

type fileID struct{ dev, ino uint64 }

func idOf(fi os.FileInfo) fileID {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileID{uint64(st.Dev), st.Ino}
	}
	return fileID{}
}

// chainNames returns the names of the log's files, oldest first: path.N
// down to path.1, then path. One missing number is skipped: a rotation
// in progress (path.i renamed to path.i+1, path.i-1 not yet to path.i)
// leaves one gap.
func chainNames(path string) []string {
	var rotated []string
	for i, misses := 1, 0; misses < 2; i++ {
		name := path + "." + strconv.Itoa(i)
		if _, err := os.Lstat(name); err != nil {
			misses++
			continue
		}
		misses = 0
		rotated = append(rotated, name)
	}
	names := make([]string, 0, len(rotated)+1)
	for i := len(rotated) - 1; i >= 0; i-- {
		names = append(names, rotated[i])
	}
	return append(names, path)
}

// openChain opens every existing file of the log, oldest first; a file
// seen twice (renamed while the chain was listed) is kept once.
func openChain(path string) ([]logFile, error) {
	var files []logFile
	seen := map[fileID]bool{}
	var firstErr error
	for _, name := range chainNames(path) {
		f, err := os.Open(name)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			continue
		}
		id := idOf(fi)
		if seen[id] {
			f.Close()
			continue
		}
		seen[id] = true
		files = append(files, logFile{f: f, id: id})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("podlogs: %w", firstErr)
	}
	return files, nil
}

func read(ctx context.Context, path string, files []logFile, o ReadOptions, e *emitter) error {
	startFile, startOff := 0, int64(0)
	if o.TailLines >= 0 {
		startFile, startOff, e.skip = tailStart(files, o.TailLines)
	}
	for i := startFile; i < len(files); i++ {
		off := int64(0)
		if i == startFile {
			off = startOff
		}
		if _, err := files[i].f.Seek(off, io.SeekStart); err != nil {
			return fmt.Errorf("podlogs: %w", err)
		}
		r := newRecReader(files[i].f)
		if err := r.drain(e); err != nil {
			return err
		}
		if i == len(files)-1 {
			if !o.Follow {
				return e.finish()
			}
			return follow(ctx, path, files[i], r, o, e)
		}
	}
	return e.finish()
}

// follow reads cur (the newest file, drained up to now) and its
// successors as they are written and rotated.
func follow(ctx context.Context, path string, cur logFile, r *recReader, o ReadOptions, e *emitter) error {
	opened := []*os.File{} // successors opened here; cur belongs to the caller
	defer func() {
		for _, f := range opened {
			f.Close()
		}
	}()
	timer := time.NewTimer(pollInterval)
	defer timer.Stop()
	for {
		if err := e.w.Flush(); err != nil {
			return fmt.Errorf("podlogs: %w", err)
		}
		// Active is asked before the last drain: whatever the container
		// wrote before it exited is then in the file.
		inactive := o.Active != nil && !o.Active()
		if err := r.drain(e); err != nil {
			return err
		}
		next, err := successor(path, cur.id)
		if err != nil {
			return err
		}
		if next != nil {
			// cur was rotated away, and its writer closed it before the
			// rename: drain it once more, then go on with its successor.
			if err := r.drain(e); err != nil {
				next.f.Close()
				return err
			}
			opened = append(opened, next.f)
			cur, r = *next, newRecReader(next.f)
			continue
		}
		if inactive {
			return e.finish()
		}
		timer.Reset(pollInterval)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
	}
}

// successor opens the file written after the one identified by cur when
// path no longer is cur; nil when path still is cur or the new path does
// not exist yet.
func successor(path string, cur fileID) (*logFile, error) {
	fi, err := os.Stat(path)
	if err == nil && idOf(fi) == cur {
		return nil, nil
	}
	names := chainNames(path)
	next := ""
	for i, name := range names {
		fi, err := os.Stat(name)
		if err != nil {
			continue
		}
		if idOf(fi) == cur {
			if i+1 < len(names) {
				next = names[i+1]
			}
			break
		}
	}
	if next == "" {
		// cur was rotated out of the chain entirely (we were very slow):
		// continue with the oldest file still there.
		next = names[0]
		if fi, err := os.Stat(next); err != nil || idOf(fi) == cur {
			return nil, nil
		}
	}
	f, err := os.Open(next)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // the writer has not created the new path yet
	}
	if err != nil {
		return nil, fmt.Errorf("podlogs: %w", err)
	}
	fi, err = f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("podlogs: %w", err)
	}
	return &logFile{f: f, id: idOf(fi)}, nil
}

// tailStart returns where the last n complete lines of the chain start
// (the index of the file and the offset in it) and how many complete
// lines from there are to be skipped. It reads the files backwards,
// newest first, in blocks. Lines are joined from their stream's P pieces
// and interleave with the other stream's, so the start is the first piece
// of the earliest tail line; the other lines that end after it precede
// every tail line in output order and are the ones skipped.
func tailStart(files []logFile, n int64) (int, int64, int64) {
	var (
		count, skip int64
		seen, open  [2]bool
	)
	for i := len(files) - 1; i >= 0; i-- {
		off, stop := scanBack(files[i].f, func(rec []byte) bool {
			l, err := ParseLine(rec)
			if err != nil {
				return false
			}
			s := 0
			if l.Stream == Stderr {
				s = 1
			}
			if !seen[s] {
				// The stream's last line is unfinished: it is part of
				// the output as well.
				seen[s], open[s] = true, l.Partial
			}
			if l.Partial {
				return false
			}
			// An F record ends the line before the next line of its
			// stream, so that next line starts right after it.
			open[s] = false
			if count < n {
				count++
				open[s] = true
				return false
			}
			if !open[0] && !open[1] {
				return true
			}
			skip++
			return false
		})
		if stop {
			return i, off, skip
		}
	}
	return 0, 0, skip
}

// scanBack calls visit for each complete record of f (without its
// newline), last first, until visit returns true; it then returns the
// offset just after that record. A trailing fragment without its newline
// (being written) is skipped. A file that cannot be read counts as empty.
func scanBack(f *os.File, visit func(rec []byte) bool) (int64, bool) {
	fi, err := f.Stat()
	if err != nil {
		return 0, false
	}
	pos := fi.Size()
	// Find the end of the last complete record.
	last := []byte{0}
	for pos > 0 {
		if _, err := f.ReadAt(last, pos-1); err != nil {
			return 0, false
		}
		if last[0] == '\n' {
			break
		}
		pos-- // a fragment is rare and short: byte by byte is fine
	}
	// carry holds the bytes [pos, end) of records whose start is not
	// yet known; its only newline is its last byte.
	var carry []byte
	buf := make([]byte, tailChunk)
	for pos > 0 {
		n := int64(len(buf))
		if n > pos {
			n = pos
		}
		pos -= n
		if _, err := f.ReadAt(buf[:n], pos); err != nil && err != io.EOF {
			return 0, false
		}
		data := append(append(make([]byte, 0, int(n)+len(carry)), buf[:n]...), carry...)
		end := len(data)
		j := min(int(n)-1, end-2)
		for ; j >= 0; j-- {
			if data[j] != '\n' {
				continue
			}
			if visit(data[j+1 : end-1]) {
				return pos + int64(end), true
			}
			end = j + 1
		}
		carry = data[:end]
	}
	if len(carry) > 0 && visit(carry[:len(carry)-1]) {
		return int64(len(carry)), true
	}
	return 0, false
}

// recReader reads the records of a file forward, holding back a
// trailing fragment until its newline is written.
type recReader struct {
	br      *bufio.Reader
	pending []byte
}

func newRecReader(f *os.File) *recReader {
	return &recReader{br: bufio.NewReaderSize(f, 64<<10)}
}

// next returns the next record without its newline, valid until the next
// call; io.EOF when there is no complete record left for now.
func (r *recReader) next() ([]byte, error) {
	for {
		chunk, err := r.br.ReadSlice('\n')
		if err == nil {
			if len(r.pending) == 0 {
				return chunk[:len(chunk)-1], nil
			}
			rec := append(r.pending, chunk...)
			r.pending = rec[:0]
			return rec[:len(rec)-1], nil
		}
		r.pending = append(r.pending, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("podlogs: %w", err)
	}
}

// drain emits every complete record up to the current end of the file.
func (r *recReader) drain(e *emitter) error {
	for {
		rec, err := r.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		l, err := ParseLine(rec)
		if err != nil {
			continue // not a record (a torn write after a crash): skip it
		}
		if err := e.record(l); err != nil {
			return err
		}
	}
}

// emitter turns records into output lines: it joins the P pieces of each
// stream's line, filters by time and prefixes timestamps.
type emitter struct {
	o    ReadOptions
	w    *bufio.Writer
	left int64 // bytes still allowed when o.LimitBytes > 0
	skip int64 // complete lines still to drop (before the tail)
	s    [2]lineState
	buf  []byte
}

// lineState is one stream's unfinished line.
type lineState struct {
	open    bool      // some pieces of the line were seen
	start   time.Time // time of its first piece
	skip    bool      // the line is before Since
	started bool      // its beginning (and timestamp) was already written
	pending []byte
}

func (e *emitter) record(l Line) error {
	st := &e.s[0]
	if l.Stream == Stderr {
		st = &e.s[1]
	}
	if !st.open {
		*st = lineState{open: true, start: l.Time, skip: !e.o.Since.IsZero() && l.Time.Before(e.o.Since), pending: st.pending[:0]}
	}
	if !st.skip {
		st.pending = append(st.pending, l.Content...)
	}
	if l.Partial {
		if len(st.pending) >= maxPending && e.skip == 0 {
			return e.flushLine(st, false)
		}
		return nil
	}
	st.open = false
	if e.skip > 0 && !st.started {
		e.skip--
		return nil
	}
	return e.flushLine(st, true)
}

// flushLine writes st's pending content, with the timestamp when it is
// the line's beginning and a newline when the line is complete.
func (e *emitter) flushLine(st *lineState, complete bool) error {
	if st.skip {
		return nil
	}
	b := e.buf[:0]
	if e.o.Timestamps && !st.started {
		b = st.start.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, ' ')
	}
	b = append(b, st.pending...)
	if complete {
		b = append(b, '\n')
	}
	st.started = true
	st.pending = st.pending[:0]
	e.buf = b
	return e.write(b)
}

func (e *emitter) write(b []byte) error {
	limited := false
	if e.o.LimitBytes > 0 && int64(len(b)) >= e.left {
		b, limited = b[:e.left], true
	}
	if _, err := e.w.Write(b); err != nil {
		return fmt.Errorf("podlogs: %w", err)
	}
	if limited {
		e.left = 0
		return errLimit
	}
	e.left -= int64(len(b))
	return nil
}

// finish writes the unfinished lines (a log that ends inside a line) as
// they are, without a newline.
func (e *emitter) finish() error {
	for i := range e.s {
		if st := &e.s[i]; st.open && len(st.pending) > 0 {
			if err := e.flushLine(st, false); err != nil {
				return err
			}
		}
	}
	return nil
}
