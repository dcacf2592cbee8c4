package stream

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/agent/internal/podlogs"
)

// toStatus is err as an API status: its own when it is one, else an
// internal error.
func toStatus(err error) metav1.Status {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		s := st.Status()
		if s.Code == 0 {
			s.Code = http.StatusInternalServerError
		}
		return s
	}
	return apierrors.NewInternalError(err).ErrStatus
}

func statusJSON(st metav1.Status) ([]byte, error) {
	st.Kind, st.APIVersion = "Status", "v1"
	return json.Marshal(st)
}

// queryBool reads a boolean query parameter the way the API machinery
// converts one: absent is false, "0", "f" and "false" are false, anything
// else (even empty) is true.
func queryBool(q url.Values, name string) bool {
	v, ok := q[name]
	if !ok || len(v) == 0 {
		return false
	}
	switch strings.ToLower(v[0]) {
	case "0", "f", "false":
		return false
	}
	return true
}

// queryInt reads an optional integer query parameter.
func queryInt(q url.Values, name string) (int64, bool, error) {
	v := q.Get(name)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false, apierrors.NewBadRequest(fmt.Sprintf("%s: invalid value %q: %v", name, v, err))
	}
	return n, true, nil
}

// logOptions parses a containerLogs query (PodLogOptions) and validates
// it as the API server does.
func logOptions(q url.Values, now time.Time) (podlogs.ReadOptions, bool, error) {
	o := podlogs.ReadOptions{
		Follow:     queryBool(q, "follow"),
		Timestamps: queryBool(q, "timestamps"),
		TailLines:  -1,
	}
	previous := queryBool(q, "previous")
	if o.Follow && previous {
		// The previous attempt has ended: there is nothing to follow.
		o.Follow = false
	}
	tail, ok, err := queryInt(q, "tailLines")
	if err != nil {
		return o, false, err
	}
	if ok {
		if tail < 0 {
			return o, false, apierrors.NewBadRequest(fmt.Sprintf("tailLines: Invalid value: %d: must be greater than or equal to 0", tail))
		}
		o.TailLines = tail
	}
	limit, ok, err := queryInt(q, "limitBytes")
	if err != nil {
		return o, false, err
	}
	if ok {
		if limit < 1 {
			return o, false, apierrors.NewBadRequest(fmt.Sprintf("limitBytes: Invalid value: %d: must be greater than 0", limit))
		}
		o.LimitBytes = limit
	}
	secs, haveSecs, err := queryInt(q, "sinceSeconds")
	if err != nil {
		return o, false, err
	}
	sinceTime := q.Get("sinceTime")
	if haveSecs && sinceTime != "" {
		return o, false, apierrors.NewBadRequest("at most one of sinceTime or sinceSeconds may be specified")
	}
	if haveSecs {
		if secs < 1 {
			return o, false, apierrors.NewBadRequest(fmt.Sprintf("sinceSeconds: Invalid value: %d: must be greater than 0", secs))
		}
		o.Since = now.Add(-time.Duration(secs) * time.Second)
	}
	if sinceTime != "" {
		t, err := time.Parse(time.RFC3339, sinceTime)
		if err != nil {
			return o, false, apierrors.NewBadRequest(fmt.Sprintf("sinceTime: invalid value %q: %v", sinceTime, err))
		}
		o.Since = t
	}
	return o, previous, nil
}

// serveLogs streams a container's log as text/plain, each write flushed.
func (s *Server) serveLogs(w http.ResponseWriter, r *http.Request) {
	ns, pod, container := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	o, previous, err := logOptions(r.URL.Query(), time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	path, err := s.cfg.Backend.LogPath(ns, pod, container, previous)
	if err != nil {
		writeError(w, err)
		return
	}
	if !logExists(path) {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q has no log (%s)", container, pod, path)))
		return
	}
	if f, ok := s.cfg.Backend.(LogFollower); ok && o.Follow {
		o.Active = func() bool { return f.LogActive(ns, pod, container, path) }
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush() // a follow may wait long for its first line: the client has its headers
	err = podlogs.Read(r.Context(), path, o, &flushWriter{w: w, rc: rc})
	if err != nil && r.Context().Err() == nil {
		s.log.Debug("logs ended", "pod", ns+"/"+pod, "container", container, "err", err)
	}
}

// logExists reports whether path or its first rotated file exists.
func logExists(path string) bool {
	for _, p := range []string{path, path + ".1"} {
		if _, err := os.Stat(p); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}

// flushWriter flushes the response after every write.
type flushWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, f.rc.Flush()
}
