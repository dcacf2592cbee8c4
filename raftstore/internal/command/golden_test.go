package command

import (
	"bytes"
	"encoding/hex"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/skiff-sh/skiff/raftstore/internal/mvcc"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current encoders")

// The golden files pin the format: every replica must decode every entry ever
// committed, so a change to these encodings is a format change. Make it only
// by adding an Op or enum value, and then rewrite the files with -update.

// goldenEntries are log entries, stored as testdata/entry_<name>.golden.
var goldenEntries = map[string]Entry{
	"txn_empty":         {Op: OpTxn, Txn: &mvcc.Txn{}},
	"txn_every_compare": {Op: OpTxn, Txn: &mvcc.Txn{Compares: everyCompare}},
	"txn_compare_limits": {Op: OpTxn, Txn: &mvcc.Txn{Compares: []mvcc.Compare{
		{Key: "", Target: mvcc.TargetVersion, Result: mvcc.Equal, Value: 0},
		{Key: "/min", Target: mvcc.TargetModRevision, Result: mvcc.Greater, Value: math.MinInt64},
		{Key: "/max", Target: mvcc.TargetCreateRevision, Result: mvcc.Less, Value: math.MaxInt64},
	}}},
	"txn_puts": {Op: OpTxn, Txn: &mvcc.Txn{Success: []mvcc.Request{
		{Type: mvcc.RequestPut, Key: "/nil", Value: nil},
		{Type: mvcc.RequestPut, Key: "/empty", Value: []byte{}},
		{Type: mvcc.RequestPut, Key: "/binary", Value: binaryValue},
		{Type: mvcc.RequestPut, Key: strings.Repeat("k", 130), Value: []byte("long key")},
	}}},
	"txn_deletes": {Op: OpTxn, Txn: &mvcc.Txn{Success: []mvcc.Request{
		{Type: mvcc.RequestDelete, Key: "/a"},
		{Type: mvcc.RequestDelete, Key: ""},
	}}},
	"txn_compare_and_swap": {Op: OpTxn, Txn: &mvcc.Txn{
		Compares: []mvcc.Compare{{Key: "/lock", Target: mvcc.TargetModRevision, Result: mvcc.Equal, Value: 41}},
		Success:  []mvcc.Request{{Type: mvcc.RequestPut, Key: "/lock", Value: []byte("me")}, {Type: mvcc.RequestDelete, Key: "/old"}},
		Failure:  []mvcc.Request{{Type: mvcc.RequestPut, Key: "/lost", Value: []byte("1")}},
	}},
	"compact":          {Op: OpCompact, Compact: &mvcc.Compact{Revision: 1000}},
	"compact_zero":     {Op: OpCompact, Compact: &mvcc.Compact{}},
	"compact_max":      {Op: OpCompact, Compact: &mvcc.Compact{Revision: math.MaxInt64}},
	"compact_negative": {Op: OpCompact, Compact: &mvcc.Compact{Revision: -5}},
}

// goldenResults are txn results, stored as testdata/result_<name>.golden.
var goldenResults = map[string]*mvcc.TxnResult{
	"empty": {},
	"succeeded": {
		Revision:  8,
		Succeeded: true,
		PrevKVs:   []*mvcc.KeyValue{nil, {Key: "/a", Value: []byte("old"), CreateRevision: 3, ModRevision: 7, Version: 2}},
		Current:   []*mvcc.KeyValue{{Key: "/a", Value: []byte("old"), CreateRevision: 3, ModRevision: 7, Version: 2}},
	},
	"failed": {
		Revision: 12,
		Current:  []*mvcc.KeyValue{nil, {Key: "/b", Value: []byte{}, CreateRevision: 1, ModRevision: 1, Version: 1}},
	},
}

// goldenKeyValues are single key-values, stored as testdata/kv_<name>.golden.
var goldenKeyValues = map[string]*mvcc.KeyValue{
	"nil":          nil,
	"put":          {Key: "/k", Value: []byte("v"), CreateRevision: 5, ModRevision: 9, Version: 3},
	"delete_event": {Key: "/k", ModRevision: 10},
	"empty_value":  {Key: "/k", Value: []byte{}, CreateRevision: 11, ModRevision: 11, Version: 1},
}

func encodeEntry(t testing.TB, e Entry) []byte {
	t.Helper()
	switch e.Op {
	case OpTxn:
		return EncodeTxn(e.Txn)
	case OpCompact:
		return EncodeCompact(*e.Compact)
	}
	t.Fatalf("encodeEntry: unknown op %v", e.Op)
	return nil
}

func TestGolden(t *testing.T) {
	want := map[string]bool{}
	for name, e := range goldenEntries {
		file := "entry_" + name + ".golden"
		want[file] = true
		t.Run(file, func(t *testing.T) {
			checkGolden(t, file, encodeEntry(t, e), func(b []byte) (any, error) { return Decode(b) }, e)
		})
	}
	for name, r := range goldenResults {
		file := "result_" + name + ".golden"
		want[file] = true
		t.Run(file, func(t *testing.T) {
			checkGolden(t, file, AppendTxnResult(nil, r), func(b []byte) (any, error) { return DecodeTxnResult(b) }, r)
		})
	}
	for name, kv := range goldenKeyValues {
		file := "kv_" + name + ".golden"
		want[file] = true
		t.Run(file, func(t *testing.T) {
			decode := func(b []byte) (any, error) {
				kv, rest, err := DecodeKeyValue(b)
				if err == nil && len(rest) != 0 {
					t.Errorf("DecodeKeyValue(%x): got rest %x, want none", b, rest)
				}
				return kv, err
			}
			checkGolden(t, file, AppendKeyValue(nil, kv), decode, kv)
		})
	}

	// A golden file without a case means a case was dropped, and with it the
	// guarantee that such entries still decode.
	files, err := filepath.Glob(filepath.Join("testdata", "*.golden"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !want[filepath.Base(f)] {
			t.Errorf("golden file %s has no case, want every golden file to be checked", f)
		}
	}
}

// checkGolden compares enc with the golden file and checks that the file
// decodes to want, so that entries written by earlier versions still decode.
// With -update it first rewrites the file from enc.
func checkGolden(t *testing.T, file string, enc []byte, decode func([]byte) (any, error), want any) {
	t.Helper()
	path := filepath.Join("testdata", file)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(enc)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden := readGolden(t, path)
	if !bytes.Equal(enc, golden) {
		t.Errorf("encoding: got %x, want %x from %s (run with -update only if the format change is deliberate)", enc, golden, path)
	}
	got, err := decode(golden)
	if err != nil {
		t.Fatalf("decoding %s: got error %v, want nil", path, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoding %s: got %+v, want %+v", path, got, want)
	}
}

func readGolden(t testing.TB, path string) []byte {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file: %v (run go test with -update to create it)", err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		t.Fatalf("golden file %s: %v", path, err)
	}
	return b
}
