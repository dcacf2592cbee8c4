package command

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/skiff-sh/skiff/raftstore/internal/mvcc"
)

func TestTxnResultRoundTrip(t *testing.T) {
	kv := &mvcc.KeyValue{Key: "/a", Value: []byte("v1"), CreateRevision: 3, ModRevision: 7, Version: 2}
	tests := []struct {
		name string
		in   *mvcc.TxnResult
		want *mvcc.TxnResult // nil: want == in
	}{
		{name: "zero", in: &mvcc.TxnResult{}},
		{name: "read-only txn", in: &mvcc.TxnResult{Revision: 42, Succeeded: true}},
		{
			name: "empty non-nil lists decode as nil",
			in:   &mvcc.TxnResult{Revision: 1, PrevKVs: []*mvcc.KeyValue{}, Current: []*mvcc.KeyValue{}},
			want: &mvcc.TxnResult{Revision: 1},
		},
		{
			name: "succeeded with created and replaced keys",
			in: &mvcc.TxnResult{
				Revision:  8,
				Succeeded: true,
				PrevKVs:   []*mvcc.KeyValue{nil, kv, nil},
				Current:   []*mvcc.KeyValue{kv},
			},
		},
		{
			name: "failed compare reports what it found",
			in: &mvcc.TxnResult{
				Revision: math.MaxInt64,
				Current:  []*mvcc.KeyValue{nil, {Key: "/b", Value: []byte{}, CreateRevision: 1, ModRevision: 1, Version: 1}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == nil {
				want = tt.in
			}
			prefix := []byte("prefix")
			enc := AppendTxnResult(bytes.Clone(prefix), tt.in)
			if !bytes.HasPrefix(enc, prefix) {
				t.Fatalf("AppendTxnResult: got %x, want it to start with dst %x", enc, prefix)
			}
			got, err := DecodeTxnResult(enc[len(prefix):])
			if err != nil {
				t.Fatalf("DecodeTxnResult(AppendTxnResult(%+v)): got error %v, want nil", tt.in, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("DecodeTxnResult(AppendTxnResult(...)): got %+v, want %+v", got, want)
			}
		})
	}
}

func TestKeyValueRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		kv   *mvcc.KeyValue
	}{
		{"nil", nil},
		{"zero", &mvcc.KeyValue{}},
		{"delete event keeps its nil value", &mvcc.KeyValue{Key: "/gone", ModRevision: 9}},
		{"empty value stays non-nil", &mvcc.KeyValue{Key: "/e", Value: []byte{}, CreateRevision: 1, ModRevision: 1, Version: 1}},
		{"binary value", &mvcc.KeyValue{Key: "/b", Value: binaryValue, CreateRevision: 2, ModRevision: 5, Version: 4}},
		{"negative and extreme numbers", &mvcc.KeyValue{Key: "/n", Value: []byte("x"), CreateRevision: math.MinInt64, ModRevision: -1, Version: math.MaxInt64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trailer := []byte{0xde, 0xad}
			enc := AppendKeyValue(nil, tt.kv)
			got, rest, err := DecodeKeyValue(append(enc, trailer...))
			if err != nil {
				t.Fatalf("DecodeKeyValue(AppendKeyValue(%+v)): got error %v, want nil", tt.kv, err)
			}
			if !reflect.DeepEqual(got, tt.kv) {
				t.Errorf("DecodeKeyValue(AppendKeyValue(...)): got %+v, want %+v", got, tt.kv)
			}
			if !bytes.Equal(rest, trailer) {
				t.Errorf("DecodeKeyValue rest: got %x, want %x", rest, trailer)
			}
		})
	}
}

func TestDecodeKeyValueSequence(t *testing.T) {
	want := []*mvcc.KeyValue{{Key: "/1", Value: []byte("a")}, nil, {Key: "/2"}}
	var b []byte
	for _, kv := range want {
		b = AppendKeyValue(b, kv)
	}
	var got []*mvcc.KeyValue
	for len(b) > 0 {
		kv, rest, err := DecodeKeyValue(b)
		if err != nil {
			t.Fatalf("DecodeKeyValue(%x): got error %v, want nil", b, err)
		}
		got, b = append(got, kv), rest
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoding appended key-values: got %+v, want %+v", got, want)
	}
}

func TestDecodeTxnResultErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "txn result: truncated revision at byte 0"},
		{"missing succeeded", []byte{2}, "txn result: truncated succeeded at byte 1"},
		{"succeeded not a bool", []byte{2, 2, 0, 0}, "txn result: succeeded is 2, not 0 or 1 at byte 1"},
		{
			"prev count larger than input",
			[]byte{2, 1, 0xff, 0xff, 0x03},
			"txn result: count of prev key-values 65535 exceeds what the remaining 0 bytes can hold at byte 2",
		},
		{"missing current count", []byte{2, 1, 0}, "txn result: truncated count of current key-values at byte 3"},
		{"presence not a bool", []byte{2, 1, 1, 7, 0}, "prev key-value: presence is 7, not 0 or 1 at byte 3"},
		{"truncated key-value", []byte{2, 1, 0, 1, 1, 0, 0}, "current key-value: truncated create revision at byte 7"},
		{"value longer than input", []byte{2, 1, 0, 1, 1, 0, 3, 0}, "current key-value: length of value 2 exceeds the remaining 1 bytes at byte 6"},
		{"trailing byte", []byte{2, 1, 0, 0, 9}, "txn result: 1 trailing bytes at byte 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeTxnResult(tt.in)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeTxnResult(%x): got result %+v, error %v, want an error wrapping ErrMalformed", tt.in, got, err)
			}
			if !strings.HasSuffix(err.Error(), tt.want) {
				t.Errorf("DecodeTxnResult(%x): got error %q, want it to end in %q", tt.in, err, tt.want)
			}
			if got != nil {
				t.Errorf("DecodeTxnResult(%x): got result %+v with the error, want nil", tt.in, got)
			}
		})
	}
}

func TestDecodeKeyValueErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "key-value: truncated presence at byte 0"},
		{"presence not a bool", []byte{2}, "key-value: presence is 2, not 0 or 1 at byte 0"},
		{"key longer than input", []byte{1, 4, 'a'}, "key-value: length of key 4 exceeds the remaining 1 bytes at byte 1"},
		{"missing version", []byte{1, 0, 0, 0, 0}, "key-value: truncated version at byte 5"},
		{"non-minimal revision", []byte{1, 0, 0, 0x81, 0x00, 0, 0}, "key-value: create revision is not minimally encoded at byte 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kv, rest, err := DecodeKeyValue(tt.in)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeKeyValue(%x): got %+v, rest %x, error %v, want an error wrapping ErrMalformed", tt.in, kv, rest, err)
			}
			if !strings.HasSuffix(err.Error(), tt.want) {
				t.Errorf("DecodeKeyValue(%x): got error %q, want it to end in %q", tt.in, err, tt.want)
			}
			if kv != nil || rest != nil {
				t.Errorf("DecodeKeyValue(%x): got kv %+v, rest %x with the error, want nil, nil", tt.in, kv, rest)
			}
		})
	}
}
