package command

import (
	"encoding/binary"

	"github.com/skiff-sh/skiff/raftstore/internal/mvcc"
)

// AppendTxnResult appends the encoding of r to dst and returns the extended
// slice: r.Revision, r.Succeeded, then PrevKVs and Current, each preceded by
// its count and each element encoded as by AppendKeyValue. r must be non-nil.
// DecodeTxnResult returns a result deep-equal to r, except that empty lists
// decode as nil.
func AppendTxnResult(dst []byte, r *mvcc.TxnResult) []byte {
	dst = binary.AppendVarint(dst, r.Revision)
	dst = appendBool(dst, r.Succeeded)
	dst = binary.AppendUvarint(dst, uint64(len(r.PrevKVs)))
	for _, kv := range r.PrevKVs {
		dst = AppendKeyValue(dst, kv)
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.Current)))
	for _, kv := range r.Current {
		dst = AppendKeyValue(dst, kv)
	}
	return dst
}

// DecodeTxnResult parses a result written by AppendTxnResult; b must hold
// exactly one. It fails like Decode: the error wraps ErrMalformed and names
// the faulty field and its byte offset in b. It never panics, and the result
// does not alias b.
func DecodeTxnResult(b []byte) (*mvcc.TxnResult, error) {
	d := &decoder{b: b, in: "txn result"}
	r := &mvcc.TxnResult{}
	r.Revision = d.varint("revision")
	r.Succeeded = d.bool("succeeded")
	r.PrevKVs = decodeKeyValues(d, "prev key-values", "prev key-value")
	d.in = "txn result"
	r.Current = decodeKeyValues(d, "current key-values", "current key-value")
	d.end("txn result")
	if d.err != nil {
		return nil, d.err
	}
	return r, nil
}

// decodeKeyValues reads a count of key-values, named list, then the
// key-values, each named elem in errors.
func decodeKeyValues(d *decoder, list, elem string) []*mvcc.KeyValue {
	n := d.count(list, minKeyValueSize)
	if n == 0 {
		return nil
	}
	d.in = elem
	kvs := make([]*mvcc.KeyValue, n)
	for i := range kvs {
		kvs[i] = decodeKeyValue(d)
	}
	return kvs
}

// AppendKeyValue appends the encoding of kv to dst and returns the extended
// slice: a presence byte (0 for a nil kv, which ends the encoding, 1
// otherwise), then Key, Value, CreateRevision, ModRevision and Version.
// DecodeKeyValue returns a KeyValue deep-equal to kv: nil stays nil, and so
// does a nil Value, as in the KV of a delete event, distinct from an empty one.
func AppendKeyValue(dst []byte, kv *mvcc.KeyValue) []byte {
	if kv == nil {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	dst = appendString(dst, kv.Key)
	dst = appendBytes(dst, kv.Value)
	dst = binary.AppendVarint(dst, kv.CreateRevision)
	dst = binary.AppendVarint(dst, kv.ModRevision)
	return binary.AppendVarint(dst, kv.Version)
}

// DecodeKeyValue parses one KeyValue written by AppendKeyValue from the front
// of b and returns it with the bytes after it. On failure rest is nil and err
// wraps ErrMalformed, naming the faulty field and its byte offset in b. It
// never panics, and kv does not alias b.
func DecodeKeyValue(b []byte) (kv *mvcc.KeyValue, rest []byte, err error) {
	d := &decoder{b: b, in: "key-value"}
	kv = decodeKeyValue(d)
	if d.err != nil {
		return nil, nil, d.err
	}
	return kv, b[d.off:], nil
}

func decodeKeyValue(d *decoder) *mvcc.KeyValue {
	if !d.bool("presence") {
		return nil
	}
	kv := &mvcc.KeyValue{}
	kv.Key = d.string("key")
	kv.Value = d.bytes("value")
	kv.CreateRevision = d.varint("create revision")
	kv.ModRevision = d.varint("mod revision")
	kv.Version = d.varint("version")
	return kv
}
