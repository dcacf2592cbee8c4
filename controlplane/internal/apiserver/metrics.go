package apiserver

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// requestDurationBuckets are the upper bounds, in seconds, of
// apiserver_request_duration_seconds: kube-apiserver's buckets.
var requestDurationBuckets = [...]float64{0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60}

// knownSubresources are the subresource names used as a label value; any
// other path segment is reported as "" so that clients cannot grow the
// metric's label set with arbitrary URLs.
var knownSubresources = []string{"status", "scale", "binding", "eviction", "log", "exec", "attach", "portforward", "proxy", "ephemeralcontainers", "resize", "token", "approval"}

// requestLabels are the labels of one request series, as kube-apiserver
// names them. For a path that is not a served resource only verb is set.
type requestLabels struct {
	verb, group, version, resource, subresource, scope string
}

// requestSeries is what requestMetrics keeps for one requestLabels.
type requestSeries struct {
	codes map[int]uint64
	// buckets[i] counts durations in (requestDurationBuckets[i-1], requestDurationBuckets[i]];
	// durations above the last bound only reach count.
	buckets [len(requestDurationBuckets)]uint64
	count   uint64
	sum     float64
}

// requestMetrics counts the requests of a Server. Its zero value is ready;
// every method is safe for concurrent use (one mutex, held only to update or
// copy a few numbers).
type requestMetrics struct {
	mu     sync.Mutex
	series map[requestLabels]*requestSeries
	// watches counts open watches by their labels (verb is "watch").
	watches map[requestLabels]int64
}

// instrument wraps next so that every request is counted by verb, resource
// and response code, timed (except watches, which last as long as the
// client wants), and every open watch shows in apiserver_longrunning_requests.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.cfg.Now()
		labels := s.requestLabels(r)
		m := &s.metrics
		if labels.verb == "watch" {
			m.addWatch(labels, 1)
			defer m.addWatch(labels, -1)
		}
		rec := &codeRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		m.observe(labels, rec.code(), s.cfg.Now().Sub(start))
	})
}

// requestLabels classifies r the way kube-apiserver's request info does:
// the verb from the method and the shape of the path, the resource only if
// this server serves it.
func (s *Server) requestLabels(r *http.Request) requestLabels {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var l requestLabels
	var rest []string
	switch {
	case segs[0] == "api" && len(segs) >= 3:
		l.version, rest = segs[1], segs[2:]
	case segs[0] == "apis" && len(segs) >= 4:
		l.group, l.version, rest = segs[1], segs[2], segs[3:]
	}
	gv := l.version
	if l.group != "" {
		gv = l.group + "/" + l.version
	}
	byName := s.byGV[gv]
	namespaced := false
	if len(rest) >= 3 && rest[0] == "namespaces" {
		if res := byName[rest[2]]; res != nil && res.namespaced {
			namespaced, rest = true, rest[2:]
		}
	}
	if len(rest) == 0 || byName == nil || byName[rest[0]] == nil {
		return requestLabels{verb: plainVerb(r.Method)}
	}
	l.resource = rest[0]
	item := len(rest) >= 2
	if len(rest) >= 3 && slices.Contains(knownSubresources, rest[2]) {
		l.subresource = rest[2]
	}
	switch {
	case item:
		l.scope = "resource"
	case namespaced:
		l.scope = "namespace"
	default:
		l.scope = "cluster"
	}
	switch {
	case r.Method == http.MethodGet && item:
		l.verb = "get"
	case r.Method == http.MethodGet:
		l.verb = "list"
		if w := r.URL.Query().Get("watch"); w == "true" || w == "1" {
			l.verb = "watch"
		}
	case r.Method == http.MethodDelete && !item:
		l.verb = "deletecollection"
	default:
		l.verb = plainVerb(r.Method)
	}
	return l
}

// plainVerb is the Kubernetes verb of a method on a single object, or the
// lower-cased method for one that has none.
func plainVerb(method string) string {
	switch method {
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodGet:
		return "get"
	}
	return strings.ToLower(method)
}

func (m *requestMetrics) observe(l requestLabels, code int, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.series == nil {
		m.series = map[requestLabels]*requestSeries{}
	}
	s := m.series[l]
	if s == nil {
		s = &requestSeries{codes: map[int]uint64{}}
		m.series[l] = s
	}
	s.codes[code]++
	if l.verb == "watch" {
		return
	}
	secs := d.Seconds()
	if i, _ := slices.BinarySearch(requestDurationBuckets[:], secs); i < len(s.buckets) {
		s.buckets[i]++
	}
	s.count++
	s.sum += secs
}

func (m *requestMetrics) addWatch(l requestLabels, n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.watches == nil {
		m.watches = map[requestLabels]int64{}
	}
	m.watches[l] += n
}

// WriteMetrics writes the request metrics of s in the Prometheus text
// format (version 0.0.4):
//
//	apiserver_request_total{verb,group,version,resource,subresource,scope,code}   counter
//	apiserver_request_duration_seconds{verb,group,version,resource,subresource,scope} histogram, without watches
//	apiserver_longrunning_requests{verb,group,version,resource,subresource,scope}  gauge of open watches
//
// It may be called concurrently with requests; it returns the error of
// writing to w.
func (s *Server) WriteMetrics(w io.Writer) error {
	var b strings.Builder
	s.metrics.write(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

func (m *requestMetrics) write(b *strings.Builder) {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := sortedLabels(m.series)

	b.WriteString("# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, group, version, resource, subresource, scope and HTTP response code.\n# TYPE apiserver_request_total counter\n")
	for _, l := range keys {
		s := m.series[l]
		codes := make([]int, 0, len(s.codes))
		for c := range s.codes {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		for _, c := range codes {
			fmt.Fprintf(b, "apiserver_request_total{%s,code=\"%d\"} %d\n", l.render(), c, s.codes[c])
		}
	}

	b.WriteString("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb, group, version, resource, subresource and scope; watches are not included.\n# TYPE apiserver_request_duration_seconds histogram\n")
	for _, l := range keys {
		s := m.series[l]
		if s.count == 0 {
			continue
		}
		var cum uint64
		for i, le := range requestDurationBuckets {
			cum += s.buckets[i]
			fmt.Fprintf(b, "apiserver_request_duration_seconds_bucket{%s,le=\"%s\"} %d\n", l.render(), strconv.FormatFloat(le, 'g', -1, 64), cum)
		}
		fmt.Fprintf(b, "apiserver_request_duration_seconds_bucket{%s,le=\"+Inf\"} %d\n", l.render(), s.count)
		fmt.Fprintf(b, "apiserver_request_duration_seconds_sum{%s} %s\n", l.render(), strconv.FormatFloat(s.sum, 'g', -1, 64))
		fmt.Fprintf(b, "apiserver_request_duration_seconds_count{%s} %d\n", l.render(), s.count)
	}

	b.WriteString("# HELP apiserver_longrunning_requests Gauge of all active long-running apiserver requests (watches) broken out by verb, group, version, resource, subresource and scope.\n# TYPE apiserver_longrunning_requests gauge\n")
	for _, l := range sortedLabels(m.watches) {
		fmt.Fprintf(b, "apiserver_longrunning_requests{%s} %d\n", l.render(), m.watches[l])
	}
}

func sortedLabels[V any](m map[requestLabels]V) []requestLabels {
	keys := make([]requestLabels, 0, len(m))
	for l := range m {
		keys = append(keys, l)
	}
	slices.SortFunc(keys, func(a, b requestLabels) int { return strings.Compare(a.render(), b.render()) })
	return keys
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// render formats l as Prometheus labels, without braces.
func (l requestLabels) render() string {
	return fmt.Sprintf(`verb="%s",group="%s",version="%s",resource="%s",subresource="%s",scope="%s"`,
		labelEscaper.Replace(l.verb), labelEscaper.Replace(l.group), labelEscaper.Replace(l.version),
		labelEscaper.Replace(l.resource), labelEscaper.Replace(l.subresource), labelEscaper.Replace(l.scope))
}

// codeRecorder remembers the status code a handler writes. It passes
// Flush through (watches need it) and unwraps for http.ResponseController.
type codeRecorder struct {
	http.ResponseWriter
	status int
}

func (c *codeRecorder) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *codeRecorder) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return c.ResponseWriter.Write(p)
}

func (c *codeRecorder) Flush() {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *codeRecorder) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// code is the status sent, 200 if the handler wrote nothing.
func (c *codeRecorder) code() int {
	if c.status == 0 {
		return http.StatusOK
	}
	return c.status
}
