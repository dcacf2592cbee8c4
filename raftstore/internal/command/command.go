package command

import (
	"encoding/binary"
	"fmt"

	"github.com/skiff-sh/skiff/raftstore/internal/mvcc"
)

// Op is the first byte of a log entry and says what its payload is.
type Op byte

// Ops. The numbers are the log format: append only, never renumber or reuse.
const (
	// OpTxn is followed by an mvcc.Txn.
	OpTxn Op = 1
	// OpCompact is followed by an mvcc.Compact.
	OpCompact Op = 2
)

func (o Op) String() string {
	switch o {
	case OpTxn:
		return "TXN"
	case OpCompact:
		return "COMPACT"
	}
	return fmt.Sprintf("Op(%d)", byte(o))
}

// Entry is a decoded log entry. Exactly one of Txn and Compact is set: Txn
// when Op is OpTxn, Compact when Op is OpCompact.
type Entry struct {
	Op      Op
	Txn     *mvcc.Txn
	Compact *mvcc.Compact
}

// EncodeTxn returns the log entry for t: OpTxn, then the compares, the
// success requests and the failure requests, each list preceded by its count.
// The encoding is deterministic and Decode returns a Txn deep-equal to t,
// except that empty lists decode as nil and the Value of a RequestDelete is
// not encoded (it decodes as nil). A put's Value round-trips exactly, nil and
// empty included.
//
// t must be non-nil and hold only known Target, CompareResult and RequestType
// values; callers validate requests before proposing them. EncodeTxn panics
// otherwise, because an entry that Decode rejects would stop every replica
// once it was committed.
func EncodeTxn(t *mvcc.Txn) []byte {
	b := make([]byte, 0, txnSizeHint(t))
	b = append(b, byte(OpTxn))
	b = binary.AppendUvarint(b, uint64(len(t.Compares)))
	for i, c := range t.Compares {
		if !knownTarget(c.Target) || !knownResult(c.Result) {
			panic(fmt.Sprintf("command: EncodeTxn: compare %d on %q has unknown target %d or result %d", i, c.Key, c.Target, c.Result))
		}
		b = appendString(b, c.Key)
		b = append(b, byte(c.Target), byte(c.Result))
		b = binary.AppendVarint(b, c.Value)
	}
	b = appendRequests(b, "success", t.Success)
	return appendRequests(b, "failure", t.Failure)
}

func appendRequests(b []byte, branch string, reqs []mvcc.Request) []byte {
	b = binary.AppendUvarint(b, uint64(len(reqs)))
	for i, r := range reqs {
		if !knownRequestType(r.Type) {
			panic(fmt.Sprintf("command: EncodeTxn: %s request %d on %q has unknown type %d", branch, i, r.Key, r.Type))
		}
		b = append(b, byte(r.Type))
		b = appendString(b, r.Key)
		if r.Type == mvcc.RequestPut {
			b = appendBytes(b, r.Value)
		}
	}
	return b
}

// txnSizeHint bounds the encoded size of t from above, so that EncodeTxn
// allocates once.
func txnSizeHint(t *mvcc.Txn) int {
	const v = binary.MaxVarintLen64
	n := 1 + 3*v
	for _, c := range t.Compares {
		n += v + len(c.Key) + 2 + v
	}
	for _, r := range t.Success {
		n += 1 + v + len(r.Key) + v + len(r.Value)
	}
	for _, r := range t.Failure {
		n += 1 + v + len(r.Key) + v + len(r.Value)
	}
	return n
}

// EncodeCompact returns the log entry for c: OpCompact, then c.Revision.
func EncodeCompact(c mvcc.Compact) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64)
	b = append(b, byte(OpCompact))
	return binary.AppendVarint(b, c.Revision)
}

// Decode parses one log entry written by EncodeTxn or EncodeCompact. It
// accepts exactly the byte strings those functions produce: any other input,
// including empty input, an unknown Op or enum value, and trailing bytes after
// a complete entry, yields an error that wraps ErrMalformed and names the
// faulty field and its byte offset. Decode never panics and allocates at most
// in proportion to len(b). The returned entry does not alias b.
//
// Decode does not check the txn's rules (such as a key appearing at most once
// per branch): those failures are the FSM's to report as apply results.
func Decode(b []byte) (Entry, error) {
	d := &decoder{b: b, in: "entry"}
	if len(b) == 0 {
		d.fail(0, "empty")
		return Entry{}, d.err
	}
	e := Entry{Op: Op(d.byte("op"))}
	switch e.Op {
	case OpTxn:
		e.Txn = decodeTxn(d)
	case OpCompact:
		d.in = "compact"
		e.Compact = &mvcc.Compact{Revision: d.varint("revision")}
	default:
		d.fail(0, "unknown op %d", byte(e.Op))
	}
	d.end("entry")
	if d.err != nil {
		return Entry{}, d.err
	}
	return e, nil
}

func decodeTxn(d *decoder) *mvcc.Txn {
	t := &mvcc.Txn{}
	d.in = "txn"
	if n := d.count("compares", minCompareSize); n > 0 {
		t.Compares = make([]mvcc.Compare, n)
		d.in = "compare"
		for i := range t.Compares {
			t.Compares[i] = decodeCompare(d)
		}
	}
	d.in = "txn"
	t.Success = decodeRequests(d, "success requests", "success request")
	d.in = "txn"
	t.Failure = decodeRequests(d, "failure requests", "failure request")
	return t
}

func decodeCompare(d *decoder) mvcc.Compare {
	var c mvcc.Compare
	c.Key = d.string("key")
	off := d.off
	c.Target = mvcc.Target(d.byte("target"))
	if !knownTarget(c.Target) {
		d.fail(off, "unknown target %d", c.Target)
	}
	off = d.off
	c.Result = mvcc.CompareResult(d.byte("result"))
	if !knownResult(c.Result) {
		d.fail(off, "unknown result %d", c.Result)
	}
	c.Value = d.varint("value")
	return c
}

// decodeRequests reads a count of requests, named list, then the requests,
// each named elem in errors.
func decodeRequests(d *decoder, list, elem string) []mvcc.Request {
	n := d.count(list, minRequestSize)
	if n == 0 {
		return nil
	}
	d.in = elem
	reqs := make([]mvcc.Request, n)
	for i := range reqs {
		r := &reqs[i]
		off := d.off
		r.Type = mvcc.RequestType(d.byte("type"))
		if !knownRequestType(r.Type) {
			d.fail(off, "unknown type %d", r.Type)
		}
		r.Key = d.string("key")
		if r.Type == mvcc.RequestPut {
			r.Value = d.bytes("value")
		}
	}
	return reqs
}

func knownTarget(t mvcc.Target) bool {
	switch t {
	case mvcc.TargetModRevision, mvcc.TargetCreateRevision, mvcc.TargetVersion:
		return true
	}
	return false
}

func knownResult(r mvcc.CompareResult) bool {
	switch r {
	case mvcc.Equal, mvcc.NotEqual, mvcc.Less, mvcc.Greater:
		return true
	}
	return false
}

func knownRequestType(t mvcc.RequestType) bool {
	switch t {
	case mvcc.RequestPut, mvcc.RequestDelete:
		return true
	}
	return false
}
