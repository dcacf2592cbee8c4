// Package command owns the format of Skiff's Raft log entries and of the
// results that applying them produces.
//
// A log entry is one Op byte followed by that op's payload. The Op enum is
// append only: a number, once used, keeps its meaning forever, because every
// replica must decode every entry ever committed. The encoding is a compact,
// deterministic binary format (uvarint lengths and counts, zigzag varints for
// int64s, raw bytes for keys and values); each value has exactly one encoding,
// and Decode rejects every other byte string. The format is pinned by the
// golden files in testdata, so it cannot change by accident, and Decode is
// fuzzed so that no input makes it panic.
//
// The intended call sequence is:
//
//   - A proposer validates a client's request, calls EncodeTxn or
//     EncodeCompact, and hands the bytes to Raft.
//   - The FSM calls Decode on every committed entry and applies the result.
//     A committed entry that fails to decode means the log or this binary is
//     broken; Decode only reports it, and the FSM panics with the log index
//     (that is the caller's job, not this package's).
//   - A leader that applied a txn forwarded by a follower, or a server
//     answering a remote client, sends the result with AppendTxnResult; the
//     receiver reads it with DecodeTxnResult. AppendKeyValue and
//     DecodeKeyValue encode single versions the same way.
package command
