// Package podlogs owns containers' log files: the CRI log format the
// kubelet writes (one line per chunk: RFC3339Nano timestamp, stream, P or F
// tag, content), the writer that appends and rotates them, and the reader
// behind `kubectl logs` (tail, since, timestamps, follow across rotation).
//
// Files: the current file is Path; rotated ones are Path.1 (the newest)
// up to Path.N. A container's earlier attempt has its own Path (the
// caller's naming: <dir>/<container>/<attempt>.log), which is how
// `kubectl logs --previous` finds it.
package podlogs

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// Stream is which output of the container a line came from.
type Stream string

// The streams of a container.
const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// Line is one record of a log file.
type Line struct {
	Time   time.Time
	Stream Stream
	// Partial is set when Content is a piece of a longer line that goes
	// on in the next record (tag P); the last piece has tag F.
	Partial bool
	// Content excludes the newline.
	Content []byte
}

// ErrBadLine is returned by ParseLine for a record not in the CRI format.
var ErrBadLine = errors.New("podlogs: malformed log line")

// AppendLine appends l's record, newline included, to b.
func AppendLine(b []byte, l Line) []byte {
	b = l.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, l.Stream...)
	if l.Partial {
		b = append(b, " P "...)
	} else {
		b = append(b, " F "...)
	}
	b = append(b, l.Content...)
	return append(b, '\n')
}

// ParseLine parses one record without its newline. Content aliases rec.
func ParseLine(rec []byte) (Line, error) {
	var l Line
	ts, rest, ok := bytes.Cut(rec, []byte{' '})
	if !ok {
		return l, ErrBadLine
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return l, fmt.Errorf("%w: %v", ErrBadLine, err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || (string(stream) != string(Stdout) && string(stream) != string(Stderr)) {
		return l, ErrBadLine
	}
	tag, content, ok := bytes.Cut(rest, []byte{' '})
	if !ok && len(rest) == 1 { // an empty F record may lose its trailing space
		tag, content, ok = rest, nil, true
	}
	if !ok || (string(tag) != "P" && string(tag) != "F") {
		return l, ErrBadLine
	}
	l.Time, l.Stream, l.Partial, l.Content = t, Stream(stream), string(tag) == "P", content
	return l, nil
}
