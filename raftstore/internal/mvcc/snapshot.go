package mvcc

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Snapshot format, version 1 (all integers varint/uvarint):
//
//	"SKFSNAP" 0x01 | rev | compact | record count |
//	  per record, ascending by key: key len, key, version count,
//	    per version, ascending: create, mod, ver, value len, value |
//	CRC-32C (4 bytes, big endian) of everything before it.
//
// The encoding is a pure function of the state, so replicas that applied the
// same log write byte-identical snapshots.
const snapshotMagic = "SKFSNAP\x01"

// ErrBadSnapshot is returned by Restore for input that is not a complete,
// well-formed snapshot.
var ErrBadSnapshot = errors.New("mvcc: bad snapshot")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type crcWriter struct {
	w   *bufio.Writer
	crc uint32
	n   int64
	buf [binary.MaxVarintLen64]byte
}

func (c *crcWriter) Write(p []byte) (int, error) {
	c.crc = crc32.Update(c.crc, castagnoli, p)
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *crcWriter) uvarint(x uint64) error {
	_, err := c.Write(c.buf[:binary.PutUvarint(c.buf[:], x)])
	return err
}

func (c *crcWriter) varint(x int64) error {
	_, err := c.Write(c.buf[:binary.PutVarint(c.buf[:], x)])
	return err
}

func (c *crcWriter) bytes(p []byte) error {
	if err := c.uvarint(uint64(len(p))); err != nil {
		return err
	}
	_, err := c.Write(p)
	return err
}

// WriteTo writes the view as a snapshot. It may run concurrently with writes
// to the State the view came from.
func (v *View) WriteTo(w io.Writer) (int64, error) {
	c := &crcWriter{w: bufio.NewWriterSize(w, 256<<10)}
	if _, err := c.Write([]byte(snapshotMagic)); err != nil {
		return c.n, err
	}
	for _, x := range []int64{v.rev, v.compact} {
		if err := c.varint(x); err != nil {
			return c.n, err
		}
	}
	if err := c.uvarint(uint64(v.tree.Len())); err != nil {
		return c.n, err
	}
	var err error
	v.tree.Ascend(func(r *record) bool {
		if err = c.bytes([]byte(r.key)); err != nil {
			return false
		}
		if err = c.uvarint(uint64(len(r.versions))); err != nil {
			return false
		}
		for i := range r.versions {
			ver := &r.versions[i]
			for _, x := range []int64{ver.create, ver.mod, ver.ver} {
				if err = c.varint(x); err != nil {
					return false
				}
			}
			if err = c.bytes(ver.value); err != nil {
				return false
			}
		}
		return true
	})
	if err != nil {
		return c.n, err
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], c.crc)
	if _, err := c.w.Write(sum[:]); err != nil {
		return c.n, err
	}
	c.n += 4
	return c.n, c.w.Flush()
}

type crcReader struct {
	r   *bufio.Reader
	crc uint32
	off int64
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err != nil {
		return 0, err
	}
	c.crc = crc32.Update(c.crc, castagnoli, []byte{b})
	c.off++
	return b, nil
}

func (c *crcReader) full(p []byte) error {
	n, err := io.ReadFull(c.r, p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	c.off += int64(n)
	return err
}

func (c *crcReader) fail(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", ErrBadSnapshot, c.off, fmt.Sprintf(format, args...))
}

func (c *crcReader) uvarint(what string) (uint64, error) {
	x, err := binary.ReadUvarint(c)
	if err != nil {
		return 0, c.fail("%s: %v", what, err)
	}
	return x, nil
}

func (c *crcReader) varint(what string) (int64, error) {
	x, err := binary.ReadVarint(c)
	if err != nil {
		return 0, c.fail("%s: %v", what, err)
	}
	return x, nil
}

// maxChunk bounds single allocations while reading, so a corrupt length
// cannot ask for gigabytes before the data runs out.
const maxChunk = 1 << 20

func (c *crcReader) bytes(what string) ([]byte, error) {
	n, err := c.uvarint(what + " length")
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	p := make([]byte, 0, min(n, maxChunk))
	for uint64(len(p)) < n {
		k := min(n-uint64(len(p)), maxChunk)
		start := len(p)
		p = append(p, make([]byte, k)...)
		if err := c.full(p[start:]); err != nil {
			return nil, c.fail("%s: %v", what, err)
		}
	}
	return p, nil
}

// Restore reads a snapshot written by WriteTo into a new State, published and
// ready. Nothing is shared with any existing State.
func Restore(r io.Reader) (*State, error) {
	c := &crcReader{r: bufio.NewReaderSize(r, 256<<10)}
	magic := make([]byte, len(snapshotMagic))
	if err := c.full(magic); err != nil || string(magic) != snapshotMagic {
		return nil, c.fail("not a snapshot (magic %q)", magic)
	}
	s := New()
	var err error
	if s.rev, err = c.varint("revision"); err != nil {
		return nil, err
	}
	if s.compact, err = c.varint("compact revision"); err != nil {
		return nil, err
	}
	if s.rev < 0 || s.compact < 0 || s.compact > s.rev {
		return nil, c.fail("revision %d, compact revision %d", s.rev, s.compact)
	}
	n, err := c.uvarint("record count")
	if err != nil {
		return nil, err
	}
	prev := ""
	for i := uint64(0); i < n; i++ {
		key, err := c.bytes("key")
		if err != nil {
			return nil, err
		}
		if i > 0 && string(key) <= prev {
			return nil, c.fail("key %q not after %q", key, prev)
		}
		prev = string(key)
		nv, err := c.uvarint("version count")
		if err != nil {
			return nil, err
		}
		if nv == 0 || nv > uint64(maxChunk) {
			return nil, c.fail("key %q has %d versions", key, nv)
		}
		rec := &record{key: prev, versions: make([]version, 0, nv)}
		for j := uint64(0); j < nv; j++ {
			var ver version
			if ver.create, err = c.varint("create revision"); err != nil {
				return nil, err
			}
			if ver.mod, err = c.varint("mod revision"); err != nil {
				return nil, err
			}
			if ver.ver, err = c.varint("version"); err != nil {
				return nil, err
			}
			if ver.value, err = c.bytes("value"); err != nil {
				return nil, err
			}
			if ver.mod > s.rev || ver.ver < 0 || (len(rec.versions) > 0 && ver.mod <= rec.latest().mod) {
				return nil, c.fail("key %q: version %d out of order or beyond revision %d", key, ver.mod, s.rev)
			}
			rec.versions = append(rec.versions, ver)
		}
		if hasHistory(rec.versions) {
			s.history[rec.key] = struct{}{}
		}
		s.tree.ReplaceOrInsert(rec)
	}
	want := c.crc
	var sum [4]byte
	if _, err := io.ReadFull(c.r, sum[:]); err != nil {
		return nil, c.fail("checksum: %v", err)
	}
	if got := binary.BigEndian.Uint32(sum[:]); got != want {
		return nil, c.fail("checksum %08x, want %08x", got, want)
	}
	if _, err := c.r.ReadByte(); err != io.EOF {
		return nil, c.fail("trailing data after checksum")
	}
	s.Publish()
	return s, nil
}
