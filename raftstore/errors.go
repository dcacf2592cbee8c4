package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/skiff-sh/skiff/raftstore/internal/command"
	"github.com/skiff-sh/skiff/raftstore/internal/mvcc"
)

var (
	// ErrKeyExists is returned by Create when the key already exists.
	ErrKeyExists = errors.New("raftstore: key already exists")
	// ErrKeyNotFound is returned by Update and Delete when the key does not exist.
	ErrKeyNotFound = errors.New("raftstore: key not found")
	// ErrNoLeader is returned when no leader could be reached before the
	// deadline. The write was not applied.
	ErrNoLeader = errors.New("raftstore: no leader")
	// ErrUnknownOutcome is returned when a write may or may not have been
	// applied: leadership was lost, or the connection to the leader broke,
	// after the write was handed over. Read to find out.
	ErrUnknownOutcome = errors.New("raftstore: write outcome unknown")
	// ErrStopped is returned by operations on a store that is not running.
	ErrStopped = errors.New("raftstore: store is not running")
	// ErrDuplicateKey is returned for a Txn branch that writes a key twice.
	ErrDuplicateKey = mvcc.ErrDuplicateKey
	// ErrInvalidTxn is returned for a Txn with an unknown compare target,
	// compare result or request type. Nothing is written.
	ErrInvalidTxn = errors.New("raftstore: invalid txn")
)

// CompactedError is returned for reads and watches from a revision older
// than the kept history (Kubernetes maps it to 410 Gone).
type CompactedError = mvcc.CompactedError

// FutureRevisionError is returned for reads at a revision the cluster has not reached.
type FutureRevisionError = mvcc.FutureRevisionError

// ConflictError is returned by Update and Delete when the key's mod
// revision is not the expected one. It matches ErrConflict with errors.Is.
type ConflictError struct {
	Key      string
	Expected int64
	// Current is the key's version when the write was evaluated.
	Current KeyValue
}

// ErrConflict matches every *ConflictError.
var ErrConflict = errors.New("raftstore: mod revision conflict")

func (e *ConflictError) Error() string {
	return fmt.Sprintf("raftstore: key %q has mod revision %d, expected %d", e.Key, e.Current.ModRevision, e.Expected)
}

// Is reports whether target is ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// notLeaderError is sent by a node that is not the leader; Leader is its
// best knowledge of the leader's address ("" if none).
type notLeaderError struct{ Leader string }

func (e *notLeaderError) Error() string {
	return fmt.Sprintf("raftstore: not the leader (leader %q)", e.Leader)
}

// Error codes on the wire. Append only.
const (
	codeOther          byte = 1
	codeNotLeader      byte = 2
	codeUnknownOutcome byte = 3
	codeNoLeader       byte = 4
	codeCompacted      byte = 5
	codeFuture         byte = 6
	codeDuplicateKey   byte = 7
	codeStopped        byte = 8
	codeInvalidTxn     byte = 9
)

// encodeError turns an error into its wire form: code, then fields.
func encodeError(err error) []byte {
	var (
		nl *notLeaderError
		ce *CompactedError
		fe *FutureRevisionError
	)
	switch {
	case errors.As(err, &nl):
		return appendString([]byte{codeNotLeader}, nl.Leader)
	case errors.As(err, &ce):
		return binary.AppendVarint(binary.AppendVarint([]byte{codeCompacted}, ce.Requested), ce.Compacted)
	case errors.As(err, &fe):
		return binary.AppendVarint(binary.AppendVarint([]byte{codeFuture}, fe.Requested), fe.Current)
	case errors.Is(err, ErrUnknownOutcome):
		return appendString([]byte{codeUnknownOutcome}, err.Error())
	case errors.Is(err, ErrNoLeader):
		return appendString([]byte{codeNoLeader}, err.Error())
	case errors.Is(err, ErrDuplicateKey):
		return []byte{codeDuplicateKey}
	case errors.Is(err, ErrStopped):
		return []byte{codeStopped}
	case errors.Is(err, ErrInvalidTxn):
		return appendString([]byte{codeInvalidTxn}, err.Error())
	}
	return appendString([]byte{codeOther}, err.Error())
}

// decodeError is the inverse of encodeError.
func decodeError(b []byte) error {
	if len(b) == 0 {
		return errors.New("raftstore: empty remote error")
	}
	d := decoder{b: b[1:]}
	var err error
	switch b[0] {
	case codeNotLeader:
		err = &notLeaderError{Leader: d.string()}
	case codeCompacted:
		err = &CompactedError{Requested: d.varint(), Compacted: d.varint()}
	case codeFuture:
		err = &FutureRevisionError{Requested: d.varint(), Current: d.varint()}
	case codeUnknownOutcome:
		err = fmt.Errorf("%w: remote: %s", ErrUnknownOutcome, d.string())
	case codeNoLeader:
		err = fmt.Errorf("%w: remote: %s", ErrNoLeader, d.string())
	case codeDuplicateKey:
		err = ErrDuplicateKey
	case codeStopped:
		err = ErrStopped
	case codeInvalidTxn:
		err = fmt.Errorf("%w: remote: %s", ErrInvalidTxn, d.string())
	default:
		err = fmt.Errorf("raftstore: remote: %s", d.string())
	}
	if d.err != nil {
		return fmt.Errorf("raftstore: malformed remote error: %w", d.err)
	}
	return err
}

// decoder reads the small RPC payloads; the first failure sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("truncated %s", what)
	}
}

func (d *decoder) uvarint() uint64 {
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) varint() int64 {
	x, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail("bytes")
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) string() string { return string(d.bytes()) }

func (d *decoder) kv() *KeyValue {
	if d.err != nil {
		return nil
	}
	kv, rest, err := command.DecodeKeyValue(d.b)
	if err != nil {
		d.err = err
		return nil
	}
	d.b = rest
	return kv
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}
