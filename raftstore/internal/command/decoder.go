package command

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMalformed is wrapped by every error that Decode, DecodeTxnResult and
// DecodeKeyValue return: the input is empty, truncated, has trailing bytes,
// holds an unknown enum value, a non-minimal varint, or a count or length
// larger than the rest of the input. The wrapping error names the faulty
// field and its byte offset in the input.
var ErrMalformed = errors.New("command: malformed encoding")

// Smallest encoded sizes, used to reject counts that the remaining input
// cannot hold before allocating for them.
const (
	minCompareSize  = 4 // key length, target, result, value
	minRequestSize  = 2 // type, key length
	minKeyValueSize = 1 // presence
)

// decoder reads the encoding from b. Its error is sticky: after the first
// failure every read returns a zero value and leaves err unchanged, so callers
// check err once, after reading a whole value. Counts and lengths are checked
// against the remaining input, so a failed decode allocates at most in
// proportion to len(b).
//
// Field names are constants and in is set to a constant naming the value
// being read, so that reading allocates nothing for error messages unless
// it fails.
type decoder struct {
	b   []byte
	off int
	in  string
	err error
}

func (d *decoder) fail(off int, format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %s at byte %d", ErrMalformed, d.in, fmt.Sprintf(format, args...), off)
	}
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

// end fails unless the input has been consumed exactly.
func (d *decoder) end(in string) {
	if d.err == nil && d.off != len(d.b) {
		d.in = in
		d.fail(d.off, "%d trailing bytes", d.remaining())
	}
}

func (d *decoder) byte(field string) byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail(d.off, "truncated %s", field)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) bool(field string) bool {
	off := d.off
	switch c := d.byte(field); c {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail(off, "%s is %d, not 0 or 1", field, c)
		return false
	}
}

// uvarint reads a uvarint; kind, if not empty, says what it is of field
// ("count", "length").
func (d *decoder) uvarint(kind, field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		d.fail(d.off, "truncated %s", label(kind, field))
		return 0
	case n < 0:
		d.fail(d.off, "%s overflows 64 bits", label(kind, field))
		return 0
	case n > 1 && d.b[d.off+n-1] == 0:
		// A zero last group is padding. Rejecting it keeps the encoding
		// canonical: re-encoding a decoded value gives back the input.
		d.fail(d.off, "%s is not minimally encoded", label(kind, field))
		return 0
	}
	d.off += n
	return v
}

func label(kind, field string) string {
	if kind == "" {
		return field
	}
	return kind + " of " + field
}

func (d *decoder) varint(field string) int64 {
	u := d.uvarint("", field)
	// Undo the zigzag mapping of binary.AppendVarint.
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

// count reads the number of elements of a list whose elements each take at
// least minSize bytes.
func (d *decoder) count(field string, minSize int) int {
	off := d.off
	n := d.uvarint("count", field)
	if d.err != nil {
		return 0
	}
	if n > uint64(d.remaining()/minSize) {
		d.fail(off, "count of %s %d exceeds what the remaining %d bytes can hold", field, n, d.remaining())
		return 0
	}
	return int(n)
}

func (d *decoder) string(field string) string {
	off := d.off
	n := d.uvarint("length", field)
	if d.err != nil {
		return ""
	}
	if n > uint64(d.remaining()) {
		d.fail(off, "length of %s %d exceeds the remaining %d bytes", field, n, d.remaining())
		return ""
	}
	s := string(d.b[d.off : d.off+int(n)])
	d.off += int(n)
	return s
}

// bytes reads a byte slice written by appendBytes. The result is a copy:
// decoded values outlive the buffer Raft hands to the FSM.
func (d *decoder) bytes(field string) []byte {
	off := d.off
	n := d.uvarint("length", field)
	if d.err != nil || n == 0 {
		return nil
	}
	n-- // appendBytes writes len+1; 0 stands for nil.
	if n > uint64(d.remaining()) {
		d.fail(off, "length of %s %d exceeds the remaining %d bytes", field, n, d.remaining())
		return nil
	}
	v := make([]byte, n)
	d.off += copy(v, d.b[d.off:])
	return v
}

// appendString writes s as its uvarint length and its bytes.
func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendBytes writes v as uvarint len(v)+1 and its bytes, and nil as 0, so
// that nil and empty slices stay distinct at no cost in size for short values.
func appendBytes(b []byte, v []byte) []byte {
	if v == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	return append(b, v...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}
