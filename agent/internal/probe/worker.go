package probe

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
)

// Kind is which probe of a container.
type Kind string

// The kinds, named as in the kubelet's events ("Liveness probe failed: ...").
const (
	Liveness  Kind = "Liveness"
	Readiness Kind = "Readiness"
	Startup   Kind = "Startup"
)

// Update reports one probe run of a Worker.
type Update struct {
	Kind Kind
	// Probe is this run's outcome (for Unhealthy events when Failure).
	Probe Result
	// Result is the kind's result after the thresholds: what counts.
	Result Result
	// Changed is set when Result.Status differs from the one before.
	Changed bool
}

// Config configures a Worker for one container start.
type Config struct {
	// Container supplies the probes and, for named ports, the ports.
	Container *corev1.Container
	// Target is where the probes go; Target.Ports defaults to the
	// container's ports.
	Target Target
	// StartedAt is when the container started; initialDelaySeconds counts
	// from it.
	StartedAt time.Time
	// OnUpdate, if set, is called after every probe run, from the Worker's
	// goroutines but never concurrently. It must not block for long.
	OnUpdate func(Update)
	// Clock defaults to the real clock.
	Clock  clock.WithTicker
	Logger *slog.Logger
}

// DefaultConfig returns a Config with the real clock and the default logger.
func DefaultConfig() Config {
	return Config{Clock: clock.RealClock{}, Logger: slog.Default()}
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	if c.Container == nil {
		return errors.New("probe: Container is required")
	}
	return nil
}

// thresholds is a probe's timing and thresholds with the API's defaults
// filled in.
type thresholds struct {
	initialDelay, period time.Duration
	success, failure     int
}

func thresholdsOf(p *corev1.Probe, kind Kind) thresholds {
	t := thresholds{
		initialDelay: time.Duration(p.InitialDelaySeconds) * time.Second,
		period:       time.Duration(p.PeriodSeconds) * time.Second,
		success:      int(p.SuccessThreshold),
		failure:      int(p.FailureThreshold),
	}
	if t.period <= 0 {
		t.period = 10 * time.Second
	}
	if t.success <= 0 || kind != Readiness { // must be 1 for liveness and startup
		t.success = 1
	}
	if t.failure <= 0 {
		t.failure = 3
	}
	return t
}

// tracker is the pure threshold state of one probe kind: no clock, no
// goroutines.
type tracker struct {
	th     thresholds
	result Result // reported
	last   Status // status of the current run of equal outcomes
	run    int
}

// newTracker starts in the kubelet's initial state: readiness Failure (not
// ready until a success), liveness Success, startup Unknown.
func newTracker(kind Kind, th thresholds) *tracker {
	t := &tracker{th: th}
	switch kind {
	case Readiness:
		t.result = Result{Status: Failure}
	case Liveness:
		t.result = Result{Status: Success}
	}
	return t
}

// observe counts one probe outcome and returns whether the reported
// status changed. Unknown outcomes (the probe could not run) are ignored.
// The reported status moves to Success after success consecutive successes
// and to Failure after failure consecutive failures.
func (t *tracker) observe(r Result) bool {
	if r.Status == Unknown {
		return false
	}
	if r.Status == t.last {
		t.run++
	} else {
		t.last, t.run = r.Status, 1
	}
	need := t.th.success
	if r.Status == Failure {
		need = t.th.failure
	}
	if t.run < need {
		return false
	}
	changed := t.result.Status != r.Status
	t.result = r
	return changed
}

// kindState is a tracker plus the Worker's bookkeeping for one kind.
type kindState struct {
	kind    Kind
	probe   *corev1.Probe
	tracker *tracker
	// onHold: liveness or startup failed; the container is to be restarted
	// and this Worker stops probing the kind (the kubelet's onHold).
	onHold bool
	// trigger wakes the loop early (readiness once startup succeeded).
	trigger chan struct{}
}

// Worker probes one started container until its Run context ends.
type Worker struct {
	cfg   Config
	clock clock.WithTicker
	log   *slog.Logger
	kinds []*kindState

	mu      sync.Mutex // guards the trackers, onHold, started
	started bool
	cbMu    sync.Mutex // serializes OnUpdate
}

// New returns a Worker for the container's probes.
func New(cfg Config) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Target.Ports == nil {
		cfg.Target.Ports = cfg.Container.Ports
	}
	w := &Worker{cfg: cfg, clock: cfg.Clock, log: cfg.Logger}
	c := cfg.Container
	for _, kp := range []struct {
		kind Kind
		p    *corev1.Probe
	}{{Startup, c.StartupProbe}, {Liveness, c.LivenessProbe}, {Readiness, c.ReadinessProbe}} {
		if kp.p == nil {
			continue
		}
		w.kinds = append(w.kinds, &kindState{
			kind: kp.kind, probe: kp.p,
			tracker: newTracker(kp.kind, thresholdsOf(kp.p, kp.kind)),
			trigger: make(chan struct{}, 1),
		})
	}
	w.started = w.state(Startup) == nil
	return w, nil
}

func (w *Worker) state(k Kind) *kindState {
	for _, s := range w.kinds {
		if s.kind == k {
			return s
		}
	}
	return nil
}

// Started reports whether the container has started: it has no startup
// probe or its startup probe succeeded.
func (w *Worker) Started() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.started
}

// Ready reports whether the container is ready: started, and no readiness
// probe or its result is Success.
func (w *Worker) Ready() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.started {
		return false
	}
	s := w.state(Readiness)
	return s == nil || s.tracker.result.Status == Success
}

// Result returns the current result of a probe kind and whether the
// container has that probe.
func (w *Worker) Result(k Kind) (Result, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.state(k)
	if s == nil {
		return Result{}, false
	}
	return s.tracker.result, true
}

// Run probes until ctx ends and returns nil; it returns at once when the
// container has no probes. Each kind has its own loop: the first probe at
// StartedAt+initialDelaySeconds, then one every periodSeconds; liveness and
// readiness wait for the startup probe to succeed.
func (w *Worker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range w.kinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx, s)
		}()
	}
	wg.Wait()
	return nil
}

func (w *Worker) loop(ctx context.Context, s *kindState) {
	th := s.tracker.th
	if d := w.cfg.StartedAt.Add(th.initialDelay).Sub(w.clock.Now()); d > 0 {
		t := w.clock.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
	ticker := w.clock.NewTicker(th.period)
	defer ticker.Stop()
	for {
		if !w.probeOnce(ctx, s) {
			// Startup succeeded, or liveness/startup failed for good: nothing
			// more to probe for this container.
			<-ctx.Done()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
		case <-s.trigger:
		}
	}
}

// probeOnce runs one probe of the kind if it is due and records it; it
// returns false when the kind needs no more probing.
func (w *Worker) probeOnce(ctx context.Context, s *kindState) bool {
	w.mu.Lock()
	if s.onHold {
		w.mu.Unlock()
		return false
	}
	if s.kind == Startup && w.started {
		w.mu.Unlock()
		return false
	}
	if s.kind != Startup && !w.started {
		w.mu.Unlock()
		return true // gated by the startup probe
	}
	w.mu.Unlock()

	r := Check(ctx, s.probe, w.cfg.Target)
	if ctx.Err() != nil {
		return true // cancelled, not a probe outcome
	}

	w.mu.Lock()
	changed := s.tracker.observe(r)
	u := Update{Kind: s.kind, Probe: r, Result: s.tracker.result, Changed: changed}
	more := true
	if u.Result.Status == Failure && (s.kind == Liveness || s.kind == Startup) {
		s.onHold, more = true, false
	}
	if s.kind == Startup && u.Result.Status == Success {
		w.started, more = true, false
		// Probe readiness now rather than at its next tick.
		if rs := w.state(Readiness); rs != nil {
			select {
			case rs.trigger <- struct{}{}:
			default:
			}
		}
	}
	w.mu.Unlock()

	if r.Status == Unknown {
		w.log.Warn("probe errored", "kind", string(s.kind), "container", w.cfg.Container.Name, "err", r.Message)
	}
	if changed {
		w.log.Debug("probe result changed", "kind", string(s.kind), "container", w.cfg.Container.Name, "result", u.Result.Status.String())
	}
	if w.cfg.OnUpdate != nil {
		w.cbMu.Lock()
		w.cfg.OnUpdate(u)
		w.cbMu.Unlock()
	}
	return more
}
