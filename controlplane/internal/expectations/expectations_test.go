package expectations

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

func TestExpectations(t *testing.T) {
	for _, c := range []struct {
		name string
		act  func(e *Expectations, advance func(time.Duration))
		want bool
	}{
		{"nothing expected", func(*Expectations, func(time.Duration)) {}, true},
		{"a create pending", func(e *Expectations, advance func(time.Duration)) { e.ExpectCreate("a") }, false},
		{"a create seen", func(e *Expectations, advance func(time.Duration)) { e.ExpectCreate("a"); e.Created("a") }, true},
		{"two creates, one seen", func(e *Expectations, advance func(time.Duration)) {
			e.ExpectCreate("a")
			e.ExpectCreate("a")
			e.Created("a")
		}, false},
		{"a create seen before expected does not go negative", func(e *Expectations, advance func(time.Duration)) { e.Created("a"); e.ExpectCreate("a") }, false},
		{"a delete pending", func(e *Expectations, advance func(time.Duration)) { e.ExpectDelete("a", "u1") }, false},
		{"another pod's delete seen", func(e *Expectations, advance func(time.Duration)) { e.ExpectDelete("a", "u1"); e.Deleted("a", "u2") }, false},
		{"the delete seen", func(e *Expectations, advance func(time.Duration)) { e.ExpectDelete("a", "u1"); e.Deleted("a", "u1") }, true},
		{"another owner's", func(e *Expectations, advance func(time.Duration)) {
			e.ExpectCreate("b")
			e.ExpectDelete("b", types.UID("u"))
		}, true},
		{"forgotten", func(e *Expectations, advance func(time.Duration)) { e.ExpectCreate("a"); e.Forget("a") }, true},
		{"expired", func(e *Expectations, advance func(time.Duration)) {
			e.ExpectCreate("a")
			advance(time.Minute + time.Second)
		}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			e := New(func() time.Time { return now }, time.Minute)
			c.act(e, func(d time.Duration) { now = now.Add(d) })
			if got := e.Satisfied("a"); got != c.want {
				t.Errorf("Satisfied: got %v, want %v", got, c.want)
			}
		})
	}
}
