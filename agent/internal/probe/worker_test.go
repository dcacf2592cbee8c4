package probe

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestTracker(t *testing.T) {
	S, F, U := Success, Failure, Unknown
	tests := []struct {
		name      string
		kind      Kind
		success   int32
		failure   int32
		outcomes  []Status
		reported  []Status // after each outcome
		changedAt []int    // indexes where observe returned true
	}{
		{name: "readiness starts not ready, one success", kind: Readiness, success: 1, failure: 3,
			outcomes: []Status{S, S}, reported: []Status{S, S}, changedAt: []int{0}},
		{name: "readiness success threshold 2", kind: Readiness, success: 2, failure: 3,
			outcomes: []Status{S, F, S, S, S}, reported: []Status{F, F, F, S, S}, changedAt: []int{3}},
		{name: "readiness failure threshold 2", kind: Readiness, success: 1, failure: 2,
			outcomes: []Status{S, F, S, F, F, F, S}, reported: []Status{S, S, S, S, F, F, S}, changedAt: []int{0, 4, 6}},
		{name: "liveness starts live, fails after 3", kind: Liveness, success: 1, failure: 3,
			outcomes: []Status{F, F, S, F, F, F}, reported: []Status{S, S, S, S, S, F}, changedAt: []int{5}},
		{name: "unknown outcomes are ignored", kind: Liveness, success: 1, failure: 2,
			outcomes: []Status{F, U, F}, reported: []Status{S, S, F}, changedAt: []int{2}},
		{name: "liveness success threshold forced to 1", kind: Liveness, success: 5, failure: 1,
			outcomes: []Status{F, S}, reported: []Status{F, S}, changedAt: []int{0, 1}},
		{name: "startup starts unknown", kind: Startup, success: 1, failure: 3,
			outcomes: []Status{F, S}, reported: []Status{U, S}, changedAt: []int{1}},
		{name: "defaults: failure threshold 3", kind: Liveness,
			outcomes: []Status{F, F, F}, reported: []Status{S, S, F}, changedAt: []int{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(tt.kind, thresholdsOf(&corev1.Probe{SuccessThreshold: tt.success, FailureThreshold: tt.failure}, tt.kind))
			var changed []int
			for i, o := range tt.outcomes {
				if tr.observe(Result{Status: o}) {
					changed = append(changed, i)
				}
				if tr.result.Status != tt.reported[i] {
					t.Fatalf("after outcome %d (%v): got %v, want %v", i, o, tr.result.Status, tt.reported[i])
				}
			}
			if len(changed) != len(tt.changedAt) {
				t.Fatalf("changed at %v, want %v", changed, tt.changedAt)
			}
			for i := range changed {
				if changed[i] != tt.changedAt[i] {
					t.Fatalf("changed at %v, want %v", changed, tt.changedAt)
				}
			}
		})
	}
}

// script is an exec fake: each command (cmd[0]) exits with the code set for
// it, and calls are counted.
type script struct {
	mu    sync.Mutex
	codes map[string]int
	calls map[string]int
}

func newScript() *script { return &script{codes: map[string]int{}, calls: map[string]int{}} }

func (s *script) set(cmd string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[cmd] = code
}

func (s *script) count(cmd string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[cmd]
}

func (s *script) exec(ctx context.Context, cmd []string) (int, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[cmd[0]]++
	return s.codes[cmd[0]], []byte(cmd[0]), nil
}

func execProbe(cmd string, delay, period, success, failure int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:        corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{cmd}}},
		InitialDelaySeconds: delay, PeriodSeconds: period, SuccessThreshold: success, FailureThreshold: failure,
	}
}

type harness struct {
	t       *testing.T
	clock   *clocktesting.FakeClock
	w       *Worker
	updates chan Update
	pending []Update
}

func startWorker(t *testing.T, c *corev1.Container, s *script) *harness {
	t.Helper()
	h := &harness{t: t, clock: clocktesting.NewFakeClock(time.Unix(1_000_000, 0)), updates: make(chan Update, 100)}
	cfg := DefaultConfig()
	cfg.Container = c
	cfg.Target = Target{PodIP: "127.0.0.1", Exec: s.exec}
	cfg.StartedAt = h.clock.Now()
	cfg.Clock = h.clock
	cfg.OnUpdate = func(u Update) { h.updates <- u }
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return h
}

// next returns the next update of the kind (others are kept for later).
func (h *harness) next(k Kind) Update {
	h.t.Helper()
	for i, u := range h.pending {
		if u.Kind == k {
			h.pending = append(h.pending[:i], h.pending[i+1:]...)
			return u
		}
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case u := <-h.updates:
			if u.Kind == k {
				return u
			}
			h.pending = append(h.pending, u)
		case <-deadline:
			h.t.Fatalf("no %s update within 10s", k)
		}
	}
}

// waitWaiters waits until the fake clock has n timers/tickers, so that a
// Step reaches every loop.
func (h *harness) waitWaiters(n int) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.clock.Waiters() < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("clock has %d waiters, want %d", h.clock.Waiters(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func expect(t *testing.T, u Update, kind Kind, probe, result Status, changed bool) {
	t.Helper()
	if u.Kind != kind || u.Probe.Status != probe || u.Result.Status != result || u.Changed != changed {
		t.Fatalf("got %s probe=%v result=%v changed=%v, want %s probe=%v result=%v changed=%v",
			u.Kind, u.Probe.Status, u.Result.Status, u.Changed, kind, probe, result, changed)
	}
}

func TestWorkerLivenessRestartsAfterThreshold(t *testing.T) {
	s := newScript()
	s.set("live", 1)
	c := &corev1.Container{Name: "app",
		LivenessProbe:  execProbe("live", 0, 10, 1, 3),
		ReadinessProbe: execProbe("ready", 0, 10, 1, 3),
	}
	h := startWorker(t, c, s)
	h.waitWaiters(2)
	expect(t, h.next(Liveness), Liveness, Failure, Success, false)
	expect(t, h.next(Readiness), Readiness, Success, Success, true)
	if !h.w.Ready() || !h.w.Started() {
		t.Fatalf("got ready=%v started=%v, want both", h.w.Ready(), h.w.Started())
	}
	h.clock.Step(10 * time.Second)
	expect(t, h.next(Liveness), Liveness, Failure, Success, false)
	h.next(Readiness)
	h.clock.Step(10 * time.Second)
	u := h.next(Liveness)
	expect(t, u, Liveness, Failure, Failure, true)
	if u.Result.Message != "live" {
		t.Errorf("failure message %q, want the exec output", u.Result.Message)
	}
	h.next(Readiness)
	calls := s.count("live")
	// On hold: readiness goes on, liveness is not probed again.
	for i := 0; i < 3; i++ {
		h.clock.Step(10 * time.Second)
		h.next(Readiness)
	}
	if got := s.count("live"); got != calls {
		t.Errorf("liveness probed %d more times after failing", got-calls)
	}
	if r, _ := h.w.Result(Liveness); r.Status != Failure {
		t.Errorf("liveness result %v, want Failure", r.Status)
	}
}

func TestWorkerStartupGatesOthers(t *testing.T) {
	s := newScript()
	s.set("start", 1)
	c := &corev1.Container{Name: "app",
		StartupProbe:   execProbe("start", 0, 10, 1, 5),
		LivenessProbe:  execProbe("live", 0, 10, 1, 3),
		ReadinessProbe: execProbe("ready", 0, 10, 1, 3),
	}
	h := startWorker(t, c, s)
	h.waitWaiters(3)
	expect(t, h.next(Startup), Startup, Failure, Unknown, false)
	h.clock.Step(10 * time.Second)
	expect(t, h.next(Startup), Startup, Failure, Unknown, false)
	if h.w.Started() || h.w.Ready() {
		t.Fatalf("started=%v ready=%v before the startup probe succeeded", h.w.Started(), h.w.Ready())
	}
	if s.count("live") != 0 || s.count("ready") != 0 {
		t.Fatalf("liveness/readiness probed before startup succeeded: %d/%d", s.count("live"), s.count("ready"))
	}
	s.set("start", 0)
	h.clock.Step(10 * time.Second)
	expect(t, h.next(Startup), Startup, Success, Success, true)
	// Readiness runs at once, without waiting for its tick.
	expect(t, h.next(Readiness), Readiness, Success, Success, true)
	if !h.w.Started() || !h.w.Ready() {
		t.Fatalf("started=%v ready=%v after startup and readiness succeeded", h.w.Started(), h.w.Ready())
	}
	h.clock.Step(10 * time.Second)
	expect(t, h.next(Liveness), Liveness, Success, Success, false)
	h.next(Readiness)
	if got := s.count("start"); got != 3 {
		t.Errorf("startup probed %d times, want 3 (no more after success)", got)
	}
}

func TestWorkerStartupFailureAndInitialDelay(t *testing.T) {
	s := newScript()
	s.set("start", 1)
	c := &corev1.Container{Name: "app", StartupProbe: execProbe("start", 30, 5, 1, 2)}
	h := startWorker(t, c, s)
	h.waitWaiters(1) // the initial-delay timer
	h.clock.Step(29 * time.Second)
	if n := s.count("start"); n != 0 {
		t.Fatalf("probed %d times before initialDelaySeconds", n)
	}
	h.clock.Step(1 * time.Second)
	expect(t, h.next(Startup), Startup, Failure, Unknown, false)
	h.waitWaiters(1) // the ticker
	h.clock.Step(5 * time.Second)
	expect(t, h.next(Startup), Startup, Failure, Failure, true)
	if h.w.Started() {
		t.Fatalf("started after the startup probe failed")
	}
}

func TestWorkerReadinessFlaps(t *testing.T) {
	s := newScript()
	c := &corev1.Container{Name: "app", ReadinessProbe: execProbe("ready", 0, 1, 2, 2)}
	h := startWorker(t, c, s)
	h.waitWaiters(1)
	expect(t, h.next(Readiness), Readiness, Success, Failure, false)
	h.clock.Step(time.Second)
	expect(t, h.next(Readiness), Readiness, Success, Success, true)
	s.set("ready", 1)
	h.clock.Step(time.Second)
	expect(t, h.next(Readiness), Readiness, Failure, Success, false)
	h.clock.Step(time.Second)
	expect(t, h.next(Readiness), Readiness, Failure, Failure, true)
	if h.w.Ready() {
		t.Fatalf("ready after two failures")
	}
	s.set("ready", 0)
	h.clock.Step(time.Second)
	h.next(Readiness)
	h.clock.Step(time.Second)
	expect(t, h.next(Readiness), Readiness, Success, Success, true)
	if !h.w.Ready() {
		t.Fatalf("not ready after two successes")
	}
}

func TestWorkerNoProbes(t *testing.T) {
	w, err := New(Config{Container: &corev1.Container{Name: "plain"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !w.Started() || !w.Ready() {
		t.Fatalf("a container without probes: started=%v ready=%v, want both", w.Started(), w.Ready())
	}
	w, err = New(Config{Container: &corev1.Container{Name: "app", ReadinessProbe: execProbe("ready", 0, 10, 1, 3)}})
	if err != nil {
		t.Fatal(err)
	}
	if w.Ready() || !w.Started() {
		t.Fatalf("before any probe: ready=%v started=%v, want not ready but started", w.Ready(), w.Started())
	}
	if _, err := New(Config{}); err == nil {
		t.Fatalf("New accepted a Config without a container")
	}
}
