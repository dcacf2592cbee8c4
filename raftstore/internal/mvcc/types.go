package mvcc

import "fmt"

// KeyValue is one version of a key. Values handed out by the store are shared
// with it and with other readers: callers must never modify Value.
type KeyValue struct {
	Key string
	// Value is the stored bytes; nil for the KV of a delete event.
	Value []byte
	// CreateRevision is the revision of the write that created this
	// incarnation of the key (it resets when the key is deleted and created again).
	CreateRevision int64
	// ModRevision is the revision of the write that produced this version.
	ModRevision int64
	// Version counts the writes to this incarnation of the key: 1 after create.
	// It is 0 in the KV of a delete event.
	Version int64
}

// EventType says what a write did to a key.
type EventType uint8

// Event types. The numbers are part of the log and snapshot formats: append only.
const (
	EventPut    EventType = 1
	EventDelete EventType = 2
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "PUT"
	case EventDelete:
		return "DELETE"
	}
	return fmt.Sprintf("EventType(%d)", uint8(t))
}

// Event is one change to one key, as a watcher sees it.
type Event struct {
	Type EventType
	// KV is the new version for a put. For a delete it carries only Key and
	// ModRevision (the revision of the delete).
	KV KeyValue
	// PrevKV is the version the write replaced; nil when a put created the key.
	PrevKV *KeyValue
}

// Target is the field of a key a Compare looks at.
type Target uint8

// Compare targets. Part of the log format: append only.
const (
	// TargetModRevision compares the key's mod revision; a missing key has 0.
	TargetModRevision Target = 1
	// TargetCreateRevision compares the key's create revision; a missing key has 0.
	TargetCreateRevision Target = 2
	// TargetVersion compares the key's version; a missing key has 0.
	TargetVersion Target = 3
)

// CompareResult is the relation a Compare requires.
type CompareResult uint8

// Compare results. Part of the log format: append only.
const (
	Equal    CompareResult = 1
	NotEqual CompareResult = 2
	Less     CompareResult = 3
	Greater  CompareResult = 4
)

// Compare is one condition of a Txn: Target(Key) Result Value.
type Compare struct {
	Key    string
	Target Target
	Result CompareResult
	Value  int64
}

// RequestType is the kind of a write inside a Txn.
type RequestType uint8

// Request types. Part of the log format: append only.
const (
	RequestPut    RequestType = 1
	RequestDelete RequestType = 2
)

// Request is one write of a Txn.
type Request struct {
	Type  RequestType
	Key   string
	Value []byte // RequestPut only
}

// Txn applies Success atomically when every Compare holds, Failure otherwise.
// A key may appear at most once across Success (and at most once across Failure).
type Txn struct {
	Compares []Compare
	Success  []Request
	Failure  []Request
}

// TxnResult is what applying a Txn produced.
type TxnResult struct {
	// Revision is the txn's own revision (the log index of its entry), whether
	// or not it wrote anything: the state it saw and left is the state at Revision.
	Revision int64
	// Succeeded reports whether every Compare held.
	Succeeded bool
	// PrevKVs has one entry per request of the branch that ran: the version
	// the request replaced or deleted, nil if the key did not exist.
	PrevKVs []*KeyValue
	// Current has one entry per Compare: the key's latest version when the txn
	// was evaluated (before its writes), nil if the key did not exist. It lets
	// a failed compare-and-swap report what it found.
	Current []*KeyValue
}

// Compact drops history at and below Revision: versions that were superseded
// by then and deletes that happened by then. Reads and watches from a
// revision below it fail with a CompactedError.
type Compact struct {
	Revision int64
}
