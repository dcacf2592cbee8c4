package raftstore

import (
	"errors"
	"sync/atomic"
	"time"
)

// WriteLatencyBuckets are the upper bounds, in seconds, of the write latency
// histogram in Metrics.
var WriteLatencyBuckets = []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Metrics are a node's counters since it started.
type Metrics struct {
	// Writes counts writes by outcome: "ok" (applied, including writes whose
	// compare failed or that a rule rejected), "no_leader" (not applied),
	// "unknown" (outcome unknown), "stopped", "error".
	Writes map[string]uint64
	// ForwardedWrites counts writes this node sent on to the leader.
	ForwardedWrites uint64
	// LinearizableReads counts reads that waited for a read index, and
	// LinearizableReadFailures those that could not get one.
	LinearizableReads, LinearizableReadFailures uint64
	// WriteLatencyCounts[i] counts applied writes that took at most
	// WriteLatencyBuckets[i] seconds (cumulative, as Prometheus buckets are);
	// WriteLatencySum is their total in seconds and WriteLatencyCount their number.
	WriteLatencyCounts []uint64
	WriteLatencySum    float64
	WriteLatencyCount  uint64
}

// metrics are the live counters behind Metrics. Safe for concurrent use.
type metrics struct {
	writesOK, writesNoLeader, writesUnknown, writesStopped, writesError atomic.Uint64
	forwarded                                                           atomic.Uint64
	reads, readFailures                                                 atomic.Uint64
	latency                                                             [16]atomic.Uint64 // per bucket, not cumulative; last is +Inf
	latencySumNanos                                                     atomic.Uint64
}

// observeWrite records one finished write.
func (m *metrics) observeWrite(took time.Duration, err error) {
	switch {
	case errors.Is(err, ErrNoLeader):
		m.writesNoLeader.Add(1)
		return
	case errors.Is(err, ErrUnknownOutcome):
		m.writesUnknown.Add(1)
		return
	case errors.Is(err, ErrStopped):
		m.writesStopped.Add(1)
		return
	case err != nil && !errors.Is(err, ErrDuplicateKey) && !isRuleError(err):
		m.writesError.Add(1)
		return
	}
	m.writesOK.Add(1)
	sec := took.Seconds()
	i := 0
	for i < len(WriteLatencyBuckets) && sec > WriteLatencyBuckets[i] {
		i++
	}
	m.latency[i].Add(1)
	m.latencySumNanos.Add(uint64(took.Nanoseconds()))
}

// isRuleError reports whether err is the FSM rejecting an applied entry.
func isRuleError(err error) bool {
	var ce *CompactedError
	var fe *FutureRevisionError
	return errors.As(err, &ce) || errors.As(err, &fe)
}

// Metrics returns the node's counters.
func (s *Store) Metrics() Metrics {
	m := &s.metrics
	out := Metrics{
		Writes: map[string]uint64{
			"ok": m.writesOK.Load(), "no_leader": m.writesNoLeader.Load(), "unknown": m.writesUnknown.Load(),
			"stopped": m.writesStopped.Load(), "error": m.writesError.Load(),
		},
		ForwardedWrites:          m.forwarded.Load(),
		LinearizableReads:        m.reads.Load(),
		LinearizableReadFailures: m.readFailures.Load(),
		WriteLatencySum:          float64(m.latencySumNanos.Load()) / 1e9,
	}
	var cum uint64
	for i := range WriteLatencyBuckets {
		cum += m.latency[i].Load()
		out.WriteLatencyCounts = append(out.WriteLatencyCounts, cum)
	}
	out.WriteLatencyCount = cum + m.latency[len(WriteLatencyBuckets)].Load()
	return out
}
