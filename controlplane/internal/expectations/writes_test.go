package expectations

import "testing"

func TestWrites(t *testing.T) {
	w := NewWrites()
	if w.Behind("a", "5") {
		t.Error("behind with nothing written")
	}
	w.Wrote("a", "7")
	w.Wrote("a", "6") // a late answer does not move it back
	for rv, want := range map[string]bool{"5": true, "6": true, "7": false, "8": false, "junk": false} {
		if got := w.Behind("a", rv); got != want {
			t.Errorf("Behind(a, %s) = %v, want %v", rv, got, want)
		}
	}
	if w.Behind("b", "1") {
		t.Error("another key is behind")
	}
	w.Forget("a")
	if w.Behind("a", "5") {
		t.Error("behind after Forget")
	}
}
