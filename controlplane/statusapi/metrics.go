package statusapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"

	"github.com/skiff-sh/skiff/raftstore"
)

// writeMetrics renders a master's metrics in the Prometheus text format.
func writeMetrics(w io.Writer, st raftstore.Status, m raftstore.Metrics) {
	gauge := func(name, help string, v float64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %s\n", name, help, name, name, strconv.FormatFloat(v, 'g', -1, 64))
	}
	counter := func(name, help string, v uint64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	leader := 0.0
	if st.State == "Leader" {
		leader = 1
	}
	hasLeader := 0.0
	if st.LeaderID != "" {
		hasLeader = 1
	}
	gauge("skiff_raft_is_leader", "1 if this master is the Raft leader.", leader)
	gauge("skiff_raft_has_leader", "1 if this master knows a Raft leader.", hasLeader)
	gauge("skiff_raft_term", "Current Raft term.", float64(st.Term))
	gauge("skiff_raft_commit_index", "Raft commit index.", float64(st.CommitIndex))
	gauge("skiff_raft_last_index", "Index of the last Raft log entry.", float64(st.LastIndex))
	gauge("skiff_raft_servers", "Servers in the Raft configuration.", float64(len(st.Servers)))
	gauge("skiff_store_revision", "Revision of the last entry applied to the store.", float64(st.AppliedIndex))
	gauge("skiff_store_compact_revision", "Oldest revision the store can still read.", float64(st.CompactRev))
	gauge("skiff_store_records", "Keys held, including deleted keys whose history is kept.", float64(st.Keys))

	fmt.Fprint(w, "# HELP skiff_store_writes_total Writes by outcome.\n# TYPE skiff_store_writes_total counter\n")
	outcomes := make([]string, 0, len(m.Writes))
	for k := range m.Writes {
		outcomes = append(outcomes, k)
	}
	sort.Strings(outcomes)
	for _, k := range outcomes {
		fmt.Fprintf(w, "skiff_store_writes_total{outcome=%q} %d\n", k, m.Writes[k])
	}
	counter("skiff_store_forwarded_writes_total", "Writes this master forwarded to the leader.", m.ForwardedWrites)
	counter("skiff_store_linearizable_reads_total", "Reads that confirmed a read index with the leader.", m.LinearizableReads)
	counter("skiff_store_linearizable_read_failures_total", "Reads that could not get a read index.", m.LinearizableReadFailures)

	fmt.Fprint(w, "# HELP skiff_store_write_duration_seconds Latency of applied writes.\n# TYPE skiff_store_write_duration_seconds histogram\n")
	for i, le := range raftstore.WriteLatencyBuckets {
		fmt.Fprintf(w, "skiff_store_write_duration_seconds_bucket{le=%q} %d\n", strconv.FormatFloat(le, 'g', -1, 64), m.WriteLatencyCounts[i])
	}
	fmt.Fprintf(w, "skiff_store_write_duration_seconds_bucket{le=\"+Inf\"} %d\n", m.WriteLatencyCount)
	fmt.Fprintf(w, "skiff_store_write_duration_seconds_sum %s\n", strconv.FormatFloat(m.WriteLatencySum, 'g', -1, 64))
	fmt.Fprintf(w, "skiff_store_write_duration_seconds_count %d\n", m.WriteLatencyCount)
}

// MetricsContentType is the Content-Type of a /metrics response.
const MetricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// WriteMetrics writes the Raft and store metrics of store to w in the
// Prometheus text format, as /metrics serves them, so that a caller can
// append metrics of its own. It returns the error of reading the store's
// status, before anything is written.
func WriteMetrics(ctx context.Context, w io.Writer, store *raftstore.Store) error {
	st, err := store.Status(ctx)
	if err != nil {
		return err
	}
	writeMetrics(w, st, store.Metrics())
	return nil
}

func metricsHandler(store *raftstore.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		if err := WriteMetrics(r.Context(), &buf, store); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", MetricsContentType)
		w.Write(buf.Bytes())
	}
}
