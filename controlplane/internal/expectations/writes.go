package expectations

import (
	"strconv"
	"sync"
)

// Writes remembers the resourceVersion of a controller's last write of
// each object (its status, typically), so that a sync working from a
// cache older than that write waits for the write's own event instead of
// acting a second time on what it already did:
//
//	if w.Behind(key, cached.ResourceVersion) { return } // the event comes next
//	updated, err := client.UpdateStatus(...)
//	w.Wrote(key, updated.ResourceVersion)
//
// resourceVersions are compared as numbers (Skiff's are Raft revisions).
// It is safe for concurrent use.
type Writes struct {
	mu sync.Mutex
	rv map[string]int64
}

// NewWrites returns a Writes that remembers nothing yet.
func NewWrites() *Writes { return &Writes{rv: map[string]int64{}} }

// Wrote records that the write of key stored resourceVersion.
func (w *Writes) Wrote(key, resourceVersion string) {
	rv, err := strconv.ParseInt(resourceVersion, 10, 64)
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rv[key] = max(w.rv[key], rv)
}

// Behind reports whether a cached object of key at resourceVersion is
// older than the last write recorded for key.
func (w *Writes) Behind(key, resourceVersion string) bool {
	rv, err := strconv.ParseInt(resourceVersion, 10, 64)
	if err != nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return rv < w.rv[key]
}

// Forget drops what is recorded for key (the object is gone).
func (w *Writes) Forget(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.rv, key)
}
