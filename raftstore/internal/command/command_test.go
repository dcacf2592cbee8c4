package command

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/skiff-sh/skiff/raftstore/internal/mvcc"
)

// binaryValue holds every byte value, so that no byte is special to the format.
var binaryValue = func() []byte {
	v := make([]byte, 256)
	for i := range v {
		v[i] = byte(i)
	}
	return v
}()

// everyCompare compares on every target with every result.
var everyCompare = func() []mvcc.Compare {
	var cs []mvcc.Compare
	for _, target := range []mvcc.Target{mvcc.TargetModRevision, mvcc.TargetCreateRevision, mvcc.TargetVersion} {
		for _, result := range []mvcc.CompareResult{mvcc.Equal, mvcc.NotEqual, mvcc.Less, mvcc.Greater} {
			cs = append(cs, mvcc.Compare{Key: "/k", Target: target, Result: result, Value: int64(target)*10 + int64(result)})
		}
	}
	return cs
}()

func TestTxnRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   *mvcc.Txn
		want *mvcc.Txn // nil: want == in
	}{
		{name: "empty", in: &mvcc.Txn{}},
		{
			name: "empty non-nil lists decode as nil",
			in:   &mvcc.Txn{Compares: []mvcc.Compare{}, Success: []mvcc.Request{}, Failure: []mvcc.Request{}},
			want: &mvcc.Txn{},
		},
		{name: "every target and result", in: &mvcc.Txn{Compares: everyCompare}},
		{
			name: "compare values at the int64 limits",
			in: &mvcc.Txn{Compares: []mvcc.Compare{
				{Key: "", Target: mvcc.TargetVersion, Result: mvcc.Equal, Value: 0},
				{Key: "a", Target: mvcc.TargetVersion, Result: mvcc.Less, Value: -1},
				{Key: "b", Target: mvcc.TargetModRevision, Result: mvcc.Greater, Value: math.MaxInt64},
				{Key: "c", Target: mvcc.TargetCreateRevision, Result: mvcc.NotEqual, Value: math.MinInt64},
			}},
		},
		{
			name: "puts with nil, empty, binary and long values",
			in: &mvcc.Txn{Success: []mvcc.Request{
				{Type: mvcc.RequestPut, Key: "/nil", Value: nil},
				{Type: mvcc.RequestPut, Key: "/empty", Value: []byte{}},
				{Type: mvcc.RequestPut, Key: "/binary", Value: binaryValue},
				{Type: mvcc.RequestPut, Key: strings.Repeat("k", 300), Value: bytes.Repeat([]byte("v"), 70000)},
				{Type: mvcc.RequestPut, Key: "\x00\xff not utf-8", Value: []byte("x")},
			}},
		},
		{
			name: "deletes",
			in: &mvcc.Txn{Success: []mvcc.Request{
				{Type: mvcc.RequestDelete, Key: "/a"},
				{Type: mvcc.RequestDelete, Key: ""},
			}},
		},
		{
			name: "a delete's value is not encoded",
			in:   &mvcc.Txn{Success: []mvcc.Request{{Type: mvcc.RequestDelete, Key: "/a", Value: []byte("ignored")}}},
			want: &mvcc.Txn{Success: []mvcc.Request{{Type: mvcc.RequestDelete, Key: "/a"}}},
		},
		{
			name: "compare-and-swap with failure branch",
			in: &mvcc.Txn{
				Compares: []mvcc.Compare{{Key: "/lock", Target: mvcc.TargetModRevision, Result: mvcc.Equal, Value: 41}},
				Success:  []mvcc.Request{{Type: mvcc.RequestPut, Key: "/lock", Value: []byte("me")}, {Type: mvcc.RequestDelete, Key: "/old"}},
				Failure:  []mvcc.Request{{Type: mvcc.RequestPut, Key: "/lost", Value: []byte("1")}},
			},
		},
		{
			name: "failure branch only",
			in:   &mvcc.Txn{Failure: []mvcc.Request{{Type: mvcc.RequestDelete, Key: "/x"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == nil {
				want = tt.in
			}
			enc := EncodeTxn(tt.in)
			got, err := Decode(enc)
			if err != nil {
				t.Fatalf("Decode(EncodeTxn(%+v)): got error %v, want nil", tt.in, err)
			}
			wantEntry := Entry{Op: OpTxn, Txn: want}
			if !reflect.DeepEqual(got, wantEntry) {
				t.Errorf("Decode(EncodeTxn(...)): got %+v, want %+v", got.Txn, want)
			}
			if again := EncodeTxn(got.Txn); !bytes.Equal(again, enc) {
				t.Errorf("re-encoding the decoded txn: got %x, want %x", again, enc)
			}
		})
	}
}

func TestCompactRoundTrip(t *testing.T) {
	for _, rev := range []int64{0, 1, 63, 64, 1 << 40, math.MaxInt64, -1, math.MinInt64} {
		c := mvcc.Compact{Revision: rev}
		got, err := Decode(EncodeCompact(c))
		if err != nil {
			t.Fatalf("Decode(EncodeCompact(%+v)): got error %v, want nil", c, err)
		}
		if want := (Entry{Op: OpCompact, Compact: &c}); !reflect.DeepEqual(got, want) {
			t.Errorf("Decode(EncodeCompact(%+v)): got %+v, want %+v", c, got, want)
		}
	}
}

func TestDecodeDoesNotAliasInput(t *testing.T) {
	in := &mvcc.Txn{Success: []mvcc.Request{{Type: mvcc.RequestPut, Key: "/k", Value: []byte("value")}}}
	enc := EncodeTxn(in)
	got, err := Decode(enc)
	if err != nil {
		t.Fatalf("Decode: got error %v, want nil", err)
	}
	for i := range enc {
		enc[i] = 0xAA
	}
	if v := got.Txn.Success[0].Value; string(v) != "value" {
		t.Errorf("value after overwriting the input: got %q, want %q", v, "value")
	}
}

func TestDecodeErrors(t *testing.T) {
	emptyTxn := EncodeTxn(&mvcc.Txn{})
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"nil", nil, "entry: empty at byte 0"},
		{"empty", []byte{}, "entry: empty at byte 0"},
		{"op zero", []byte{0}, "entry: unknown op 0 at byte 0"},
		{"unknown op", []byte{3, 0, 0, 0}, "entry: unknown op 3 at byte 0"},
		{"txn without payload", []byte{1}, "txn: truncated count of compares at byte 1"},
		{"txn missing failure count", []byte{1, 0, 0}, "txn: truncated count of failure requests at byte 3"},
		{
			"compare count larger than input",
			[]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f},
			"txn: count of compares 4294967295 exceeds what the remaining 0 bytes can hold at byte 1",
		},
		{
			"compare count larger than input by one compare",
			[]byte{1, 2, 0, 1, 1, 0, 0, 0},
			"txn: count of compares 2 exceeds what the remaining 6 bytes can hold at byte 1",
		},
		{"unknown target", []byte{1, 1, 0, 9, 1, 0, 0, 0}, "compare: unknown target 9 at byte 3"},
		{"target zero", []byte{1, 1, 0, 0, 1, 0, 0, 0}, "compare: unknown target 0 at byte 3"},
		{"unknown result", []byte{1, 1, 0, 1, 5, 0, 0, 0}, "compare: unknown result 5 at byte 4"},
		{"compare key longer than input", []byte{1, 1, 9, 1, 1, 0, 0, 0}, "compare: length of key 9 exceeds the remaining 5 bytes at byte 2"},
		{"unknown request type", []byte{1, 0, 1, 3, 0, 0}, "success request: unknown type 3 at byte 3"},
		{"put value longer than input", []byte{1, 0, 1, 1, 0, 5, 0}, "success request: length of value 4 exceeds the remaining 1 bytes at byte 5"},
		{"put without value", []byte{1, 0, 0, 1, 1, 0}, "failure request: truncated length of value at byte 6"},
		{"delete key longer than input", []byte{1, 0, 0, 1, 2, 5, 'a'}, "failure request: length of key 5 exceeds the remaining 1 bytes at byte 5"},
		{"trailing byte after txn", append(bytes.Clone(emptyTxn), 7), "entry: 1 trailing bytes at byte 4"},
		{"compact without revision", []byte{2}, "compact: truncated revision at byte 1"},
		{"compact truncated varint", []byte{2, 0x80}, "compact: truncated revision at byte 1"},
		{"non-minimal varint", []byte{2, 0x80, 0x00}, "compact: revision is not minimally encoded at byte 1"},
		{
			"varint overflow",
			[]byte{2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},
			"compact: revision overflows 64 bits at byte 1",
		},
		{"trailing byte after compact", []byte{2, 0, 0}, "entry: 1 trailing bytes at byte 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.in)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode(%x): got entry %+v, error %v, want an error wrapping ErrMalformed", tt.in, got, err)
			}
			if !strings.HasSuffix(err.Error(), tt.want) {
				t.Errorf("Decode(%x): got error %q, want it to end in %q", tt.in, err, tt.want)
			}
			if !reflect.DeepEqual(got, Entry{}) {
				t.Errorf("Decode(%x): got entry %+v with the error, want the zero Entry", tt.in, got)
			}
		})
	}
}

// TestDecodeHugeCountsDoNotAllocate checks that counts and lengths are bounded
// by the input before anything is allocated for them.
func TestDecodeHugeCountsDoNotAllocate(t *testing.T) {
	huge := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	entries := [][]byte{
		cat([]byte{1}, huge),                            // compares
		cat([]byte{1, 0}, huge),                         // success requests
		cat([]byte{1, 0, 0}, huge),                      // failure requests
		cat([]byte{1, 1}, huge, []byte{1, 1, 0, 0, 0}),  // compare key
		cat([]byte{1, 0, 1, 1}, huge, []byte{0, 0, 0}),  // put key
		cat([]byte{1, 0, 1, 1, 0}, huge, []byte{0, 0}),  // put value
		cat([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0}), // 5 bytes after the op
	}
	results := [][]byte{
		cat([]byte{0, 0}, huge),                     // prev key-values
		cat([]byte{0, 0, 0}, huge),                  // current key-values
		cat([]byte{0, 0, 1, 1}, huge),               // key
		cat([]byte{0, 0, 1, 1, 0}, huge, []byte{0}), // value
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, in := range entries {
		if _, err := Decode(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(%x): got error %v, want an error wrapping ErrMalformed", in, err)
		}
	}
	for _, in := range results {
		if _, err := DecodeTxnResult(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeTxnResult(%x): got error %v, want an error wrapping ErrMalformed", in, err)
		}
	}
	runtime.ReadMemStats(&after)
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(1<<20); got > limit {
		t.Errorf("decoding %d tiny inputs allocated %d bytes, want at most %d", len(entries)+len(results), got, limit)
	}
}

func TestEncodeTxnPanicsOnUnknownEnums(t *testing.T) {
	put := mvcc.Request{Type: mvcc.RequestPut, Key: "/k"}
	cmp := mvcc.Compare{Key: "/k", Target: mvcc.TargetVersion, Result: mvcc.Equal}
	badTarget, badResult := cmp, cmp
	badTarget.Target = 0
	badResult.Result = 9
	badType := put
	badType.Type = 7
	tests := []struct {
		name string
		txn  *mvcc.Txn
	}{
		{"unknown target", &mvcc.Txn{Compares: []mvcc.Compare{cmp, badTarget}}},
		{"unknown result", &mvcc.Txn{Compares: []mvcc.Compare{badResult}}},
		{"unknown success request type", &mvcc.Txn{Success: []mvcc.Request{put, badType}}},
		{"unknown failure request type", &mvcc.Txn{Failure: []mvcc.Request{badType}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("EncodeTxn(%+v): got no panic, want one", tt.txn)
				}
			}()
			b := EncodeTxn(tt.txn)
			t.Errorf("EncodeTxn(%+v): got %x, want a panic", tt.txn, b)
		})
	}
}

func TestOpString(t *testing.T) {
	tests := []struct {
		op   Op
		want string
	}{
		{OpTxn, "TXN"},
		{OpCompact, "COMPACT"},
		{Op(9), "Op(9)"},
	}
	for _, tt := range tests {
		if got := tt.op.String(); got != tt.want {
			t.Errorf("Op(%d).String(): got %q, want %q", byte(tt.op), got, tt.want)
		}
	}
}

func BenchmarkEncodeDecodeTxn(b *testing.B) {
	txn := &mvcc.Txn{
		Compares: []mvcc.Compare{{Key: "/registry/pods/default/web-0", Target: mvcc.TargetModRevision, Result: mvcc.Equal, Value: 123456}},
		Success:  []mvcc.Request{{Type: mvcc.RequestPut, Key: "/registry/pods/default/web-0", Value: bytes.Repeat([]byte{'x'}, 1024)}},
	}
	b.SetBytes(int64(len(EncodeTxn(txn))))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(EncodeTxn(txn)); err != nil {
			b.Fatal(err)
		}
	}
}
