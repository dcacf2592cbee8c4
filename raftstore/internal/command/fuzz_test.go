package command

import (
	"bytes"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
)

// addGoldenSeeds adds each golden file matching pattern to f's corpus, with
// the same bytes truncated by one and with a garbage byte appended.
func addGoldenSeeds(f *testing.F, pattern string) {
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil {
		f.Fatal(err)
	}
	if len(files) == 0 {
		f.Fatalf("no golden files match testdata/%s, want seeds (run go test with -update)", pattern)
	}
	for _, file := range files {
		b := readGolden(f, file)
		f.Add(b)
		f.Add(b[:len(b)-1])
		f.Add(append(bytes.Clone(b), 0xff))
	}
}

// FuzzDecode checks that Decode never panics, that it fails only with
// ErrMalformed, and that the encoding is canonical: a decoded entry encodes
// back to the input, which decodes to the same entry again.
func FuzzDecode(f *testing.F) {
	addGoldenSeeds(f, "entry_*.golden")
	for _, b := range [][]byte{
		{},
		{0},
		{1},
		{2},
		{3, 0},
		{1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		{2, 0x80, 0x00},
		{1, 1, 0, 9, 1, 0, 0, 0},
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode(%x): got error %v, want one wrapping ErrMalformed", b, err)
			}
			return
		}
		switch {
		case e.Op == OpTxn && e.Txn != nil && e.Compact == nil:
		case e.Op == OpCompact && e.Compact != nil && e.Txn == nil:
		default:
			t.Fatalf("Decode(%x): got %+v, want exactly the payload that Op names", b, e)
		}
		enc := encodeEntry(t, e)
		if !bytes.Equal(enc, b) {
			t.Fatalf("encoding Decode(%x): got %x, want the input back", b, enc)
		}
		again, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(%x) of a re-encoded entry: got error %v, want nil", enc, err)
		}
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("Decode of a re-encoded entry: got %+v, want %+v", again, e)
		}
	})
}

// FuzzTxnResultDecode checks DecodeTxnResult the way FuzzDecode checks Decode.
// Its name must not start with "FuzzDecode": go test -fuzz FuzzDecode would
// then match two targets and refuse to fuzz either.
func FuzzTxnResultDecode(f *testing.F) {
	addGoldenSeeds(f, "result_*.golden")
	for _, b := range [][]byte{
		{},
		{0},
		{0, 2},
		{0, 0, 0xff, 0xff, 0x03},
		{0, 0, 1, 7},
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeTxnResult(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeTxnResult(%x): got error %v, want one wrapping ErrMalformed", b, err)
			}
			return
		}
		enc := AppendTxnResult(nil, r)
		if !bytes.Equal(enc, b) {
			t.Fatalf("encoding DecodeTxnResult(%x): got %x, want the input back", b, enc)
		}
		again, err := DecodeTxnResult(enc)
		if err != nil {
			t.Fatalf("DecodeTxnResult(%x) of a re-encoded result: got error %v, want nil", enc, err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("DecodeTxnResult of a re-encoded result: got %+v, want %+v", again, r)
		}
	})
}
