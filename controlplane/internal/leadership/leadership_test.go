package leadership

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeSource is a Source the test drives: each report is received by the
// runner before report returns.
type fakeSource struct {
	t  *testing.T
	ch chan bool
}

func newFakeSource(t *testing.T) *fakeSource { return &fakeSource{t: t, ch: make(chan bool)} }

func (f *fakeSource) Leadership(ctx context.Context) <-chan bool { return f.ch }

func (f *fakeSource) report(v bool) {
	f.t.Helper()
	select {
	case f.ch <- v:
	case <-time.After(10 * time.Second):
		f.t.Fatalf("runner did not take leadership report %v within 10s", v)
	}
}

// probe is a component that records its runs. Each run blocks until its
// context ends, or fails when the test sends on fail.
type probe struct {
	t      *testing.T
	name   string
	active atomic.Int32
	starts chan int      // run number, sent when a run starts
	stops  chan int      // run number, sent when a run returns
	fail   chan error    // a value makes the current run return it
	linger chan struct{} // when set, a run waits for it to close after ctx ends
	runs   atomic.Int32
}

func newProbe(t *testing.T, name string) *probe {
	return &probe{t: t, name: name, starts: make(chan int, 16), stops: make(chan int, 16), fail: make(chan error)}
}

func (p *probe) component() Component { return Component{Name: p.name, Run: p.run} }

func (p *probe) run(ctx context.Context) error {
	n := int(p.runs.Add(1))
	if a := p.active.Add(1); a > 1 {
		p.t.Errorf("%s: run %d started while %d runs are active, want runs never to overlap", p.name, n, a-1)
	}
	defer func() {
		p.active.Add(-1)
		p.stops <- n
	}()
	p.starts <- n
	select {
	case <-ctx.Done():
		if p.linger != nil {
			<-p.linger
		}
		return ctx.Err()
	case err := <-p.fail:
		return err
	}
}

// next waits for a value on ch and checks it.
func next(t *testing.T, what string, ch chan int, want int) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("%s: got run %d, want run %d", what, got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no run %d within 10s", what, want)
	}
}

// none checks that ch holds no value now.
func none(t *testing.T, what string, ch chan int) {
	t.Helper()
	select {
	case got := <-ch:
		t.Fatalf("%s: got run %d, want none", what, got)
	default:
	}
}

// fakeClock hands the runner's back-off timers to the test.
type fakeClock struct {
	mu     sync.Mutex
	timers []chan time.Time
	asked  chan time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{asked: make(chan time.Duration, 16)} }

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	c.timers = append(c.timers, ch)
	c.mu.Unlock()
	c.asked <- d
	return ch
}

// fire fires the latest timer.
func (c *fakeClock) fire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers[len(c.timers)-1] <- time.Now()
}

func (c *fakeClock) waitAsked(t *testing.T, want time.Duration) {
	t.Helper()
	select {
	case got := <-c.asked:
		if got != want {
			t.Fatalf("back-off: got %v, want %v", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the runner did not start a back-off within 10s")
	}
}

// startRunner runs a Runner over src and probes until the test ends; the
// returned function ends it and waits for Run to return.
func startRunner(t *testing.T, src Source, clock *fakeClock, probes ...*probe) (stop func()) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Source, cfg.Logger = src, slog.New(slog.DiscardHandler)
	cfg.RetryBackoff, cfg.MaxRetryBackoff = time.Second, 4*time.Second
	if clock != nil {
		cfg.After = clock.After
	}
	for _, p := range probes {
		cfg.Components = append(cfg.Components, p.component())
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: got %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return within 10s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestRunsOnlyWhileLeading: components start with a term, are cancelled and
// waited for when it ends, and start again with the next term.
func TestRunsOnlyWhileLeading(t *testing.T) {
	src := newFakeSource(t)
	a, b := newProbe(t, "a"), newProbe(t, "b")
	a.linger = make(chan struct{})
	startRunner(t, src, nil, a, b)
	none(t, "before leadership", a.starts)

	src.report(true)
	next(t, "a, first term", a.starts, 1)
	next(t, "b, first term", b.starts, 1)

	// a lingers after its context ends: the runner must wait for it
	// before it takes the next report.
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		for _, v := range []bool{false, true} {
			select {
			case src.ch <- v:
			case <-time.After(10 * time.Second):
				t.Errorf("runner did not take leadership report %v within 10s", v)
				return
			}
		}
	}()
	next(t, "b stopped at the end of the term", b.stops, 1)
	select {
	case <-reported:
		t.Fatal("the runner took the next term's report while a component of the last one was still running")
	default:
	}
	none(t, "b while a lingers", b.starts)
	close(a.linger)
	next(t, "a stopped", a.stops, 1)
	<-reported
	next(t, "a, second term", a.starts, 2)
	next(t, "b, second term", b.starts, 2)
}

// TestFailureRestartsAllAfterBackoff: a failing component ends the run of
// every component; they start again after a back-off that doubles, while
// the master still leads.
func TestFailureRestartsAllAfterBackoff(t *testing.T) {
	src := newFakeSource(t)
	clock := newFakeClock()
	a, b := newProbe(t, "a"), newProbe(t, "b")
	startRunner(t, src, clock, a, b)
	src.report(true)
	next(t, "a", a.starts, 1)
	next(t, "b", b.starts, 1)

	a.fail <- errors.New("boom")
	next(t, "a failed", a.stops, 1)
	next(t, "b cancelled by a's failure", b.stops, 1)
	clock.waitAsked(t, time.Second)
	none(t, "a during the back-off", a.starts)
	clock.fire()
	next(t, "a restarted", a.starts, 2)
	next(t, "b restarted", b.starts, 2)

	// Returning nil while leading is a failure too; the back-off doubles.
	b.fail <- nil
	next(t, "b returned", b.stops, 2)
	next(t, "a cancelled", a.stops, 2)
	clock.waitAsked(t, 2*time.Second)
	clock.fire()
	next(t, "a restarted again", a.starts, 3)
	next(t, "b restarted again", b.starts, 3)
}

// TestLeadershipLostDuringBackoff: components that failed are not started
// again once leadership is lost, only at the next term, with the back-off
// reset.
func TestLeadershipLostDuringBackoff(t *testing.T) {
	src := newFakeSource(t)
	clock := newFakeClock()
	a := newProbe(t, "a")
	startRunner(t, src, clock, a)
	src.report(true)
	next(t, "a", a.starts, 1)
	a.fail <- errors.New("boom")
	next(t, "a failed", a.stops, 1)
	clock.waitAsked(t, time.Second)
	src.report(false)
	clock.fire() // too late: the term is over
	none(t, "a after the term ended", a.starts)
	src.report(true)
	next(t, "a, next term", a.starts, 2)
	a.fail <- errors.New("boom")
	clock.waitAsked(t, time.Second)
}

// TestRunEnds: Run returns when its context ends, after the components
// return, and when the Source closes its channel.
func TestRunEnds(t *testing.T) {
	src := newFakeSource(t)
	a := newProbe(t, "a")
	stop := startRunner(t, src, nil, a)
	src.report(true)
	next(t, "a", a.starts, 1)
	stop()
	next(t, "a stopped with Run", a.stops, 1)

	src2 := newFakeSource(t)
	b := newProbe(t, "b")
	cfg := DefaultConfig()
	cfg.Source, cfg.Components = src2, []Component{b.component()}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(t.Context()) }()
	src2.report(true)
	next(t, "b", b.starts, 1)
	close(src2.ch)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after the source closed: got %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of the source closing")
	}
	next(t, "b stopped when the source closed", b.stops, 1)
}

func TestConfigValidate(t *testing.T) {
	src := newFakeSource(t)
	noop := func(context.Context) error { return nil }
	for _, tc := range []struct {
		name string
		tune func(*Config)
		ok   bool
	}{
		{"default with a source", func(c *Config) {}, true},
		{"no source", func(c *Config) { c.Source = nil }, false},
		{"zero backoff", func(c *Config) { c.RetryBackoff = 0 }, false},
		{"max below backoff", func(c *Config) { c.MaxRetryBackoff = c.RetryBackoff / 2 }, false},
		{"unnamed component", func(c *Config) { c.Components = []Component{{Run: noop}} }, false},
		{"component without Run", func(c *Config) { c.Components = []Component{{Name: "x"}} }, false},
	} {
		cfg := DefaultConfig()
		cfg.Source = src
		tc.tune(&cfg)
		if err := cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
