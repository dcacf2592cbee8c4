// Package leadership runs a master's leader-only components (the
// controllers, later the scheduler) exactly while this master leads the
// Raft group, as DESIGN.md's "Leader-only work" asks:
//
//	r, err := leadership.New(cfg) // cfg from DefaultConfig: Source (the store) and Components set
//	err = r.Run(ctx)              // returns once ctx ends and every component has returned
//
// Each term of leadership the Source reports (after its Raft barrier) starts
// every component under an errgroup on a context scoped to the term. When
// the term ends the context is cancelled and Run waits for every component
// to return before it acts on the next report, so two terms' components
// never overlap. A component that fails, or returns while the term goes
// on, ends the term's run of all of them: they are started again after a
// back-off if this master still leads, or at its next term. Components must
// therefore be level-triggered and safe to start again at any moment.
package leadership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"
)

// Source reports this master's leadership: true when a term starts (after
// the leader has applied everything from earlier terms), false when it
// ends; values alternate starting with true, and the channel is closed when
// ctx ends or the source stops. raftstore.Store is the Source of a master.
type Source interface {
	Leadership(ctx context.Context) <-chan bool
}

// Component is one piece of leader-only work. Run is called at the start of
// each term (and again after a failure within one) with a context that ends
// with the term. It must return once ctx ends, after every goroutine it
// started has exited; returning earlier, with or without an error, is a
// failure that restarts every component.
type Component struct {
	// Name identifies the component in logs and errors.
	Name string
	Run  func(ctx context.Context) error
}

// Config configures a Runner.
type Config struct {
	Source     Source
	Components []Component
	Logger     *slog.Logger
	// RetryBackoff is the wait before the components start again after a
	// failure within a term; it doubles with each failure in the term, up
	// to MaxRetryBackoff.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// After is the clock of the back-off; time.After when nil.
	After func(time.Duration) <-chan time.Time
}

// DefaultConfig returns a Config without Source and Components.
func DefaultConfig() Config {
	return Config{Logger: slog.Default(), RetryBackoff: time.Second, MaxRetryBackoff: 30 * time.Second, After: time.After}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Source == nil:
		return errors.New("leadership: config: Source is required")
	case c.RetryBackoff <= 0 || c.MaxRetryBackoff < c.RetryBackoff:
		return errors.New("leadership: config: RetryBackoff must be positive and at most MaxRetryBackoff")
	}
	for i, comp := range c.Components {
		if comp.Name == "" || comp.Run == nil {
			return fmt.Errorf("leadership: config: component %d needs a Name and a Run", i)
		}
	}
	return nil
}

// Runner runs the components of Config while the Source reports leadership.
type Runner struct {
	cfg Config
	log *slog.Logger
}

// New validates cfg and returns a Runner.
func New(cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	return &Runner{cfg: cfg, log: cfg.Logger}, nil
}

// Run follows the Source until ctx ends or the Source closes its channel,
// running the components during each term. It returns nil, once every
// component it started has returned.
func (r *Runner) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := r.cfg.Source.Leadership(ctx)
	for {
		select {
		case leading, ok := <-ch:
			if !ok {
				return nil
			}
			for leading && ok {
				// A true while leading cannot happen with a Source that
				// alternates; should one come, it starts a fresh term.
				leading, ok = r.term(ctx, ch)
			}
			if !ok {
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// term runs the components until the Source reports again (returning that
// report) or its channel closes (ok false) or ctx ends (ok false). Every
// component has returned when term returns.
func (r *Runner) term(ctx context.Context, ch <-chan bool) (leading, ok bool) {
	start := time.Now()
	r.log.Info("leading: starting leader-only components", "components", len(r.cfg.Components))
	defer func() {
		r.log.Info("leadership ended: leader-only components stopped", "led_for", time.Since(start).Round(time.Millisecond))
	}()
	backoff := r.cfg.RetryBackoff
	for {
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.runAll(runCtx) }()
		select {
		case leading, ok = <-ch:
			stop()
			if err := <-done; err != nil {
				r.log.Debug("leader-only components stopped with an error", "err", err)
			}
			return leading, ok
		case <-ctx.Done():
			stop()
			<-done
			return false, false
		case err := <-done:
			stop()
			r.log.Error("leader-only component failed; restarting the components", "err", err, "backoff", backoff)
		}
		select {
		case leading, ok = <-ch:
			return leading, ok
		case <-ctx.Done():
			return false, false
		case <-r.cfg.After(backoff):
		}
		backoff = min(2*backoff, r.cfg.MaxRetryBackoff)
	}
}

// runAll runs every component under one errgroup on ctx: the first to fail
// (or to return while ctx lasts) cancels the others. It returns once all have
// returned, with that first failure, or nil if they all returned because ctx
// ended.
func (r *Runner) runAll(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range r.cfg.Components {
		g.Go(func() error {
			err := c.Run(gctx)
			switch {
			case ctx.Err() != nil:
				return nil // the term ended: whatever the component says about it is no failure
			case err == nil:
				return fmt.Errorf("leadership: component %s returned while leading", c.Name)
			default:
				return fmt.Errorf("leadership: component %s: %w", c.Name, err)
			}
		})
	}
	return g.Wait()
}
