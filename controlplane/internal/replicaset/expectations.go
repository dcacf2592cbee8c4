package replicaset

import (
	"sync"
	"time"
)

// expectations remembers, per ReplicaSet key, how many pod creations and
// which pod deletions the controller has asked for and its informer has not
// shown yet. A sync that works from a cache lagging behind the controller's
// own writes would otherwise create or delete the same pods twice. They
// live in memory only: a controller that starts again starts with none,
// from a fresh list, which is exactly the state its writes left. An
// expectation not met within ttl is dropped, so a lost event delays a sync
// and never blocks it. Safe for concurrent use.
type expectations struct {
	now func() time.Time
	ttl time.Duration

	mu  sync.Mutex
	all map[string]*expected
}

type expected struct {
	creates int
	deletes map[string]bool // pod keys
	since   time.Time
}

func newExpectations(now func() time.Time, ttl time.Duration) *expectations {
	return &expectations{now: now, ttl: ttl, all: map[string]*expected{}}
}

// satisfied reports whether rs may act: nothing pending, or what is pending
// has waited longer than ttl.
func (e *expectations) satisfied(rs string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.all[rs]
	if x == nil || (x.creates <= 0 && len(x.deletes) == 0) {
		return true
	}
	if e.now().Sub(x.since) > e.ttl {
		delete(e.all, rs)
		return true
	}
	return false
}

// expectCreates replaces rs's expectations with n creations.
func (e *expectations) expectCreates(rs string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all[rs] = &expected{creates: n, deletes: map[string]bool{}, since: e.now()}
}

// expectDeletes replaces rs's expectations with the deletion of pods.
func (e *expectations) expectDeletes(rs string, pods []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := &expected{deletes: map[string]bool{}, since: e.now()}
	for _, p := range pods {
		x.deletes[p] = true
	}
	e.all[rs] = x
}

// created records that one expected creation was seen (or will never be).
func (e *expectations) created(rs string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x := e.all[rs]; x != nil && x.creates > 0 {
		x.creates--
	}
}

// deleted records that pod is gone or going (or will never go by us).
func (e *expectations) deleted(rs, pod string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x := e.all[rs]; x != nil {
		delete(x.deletes, pod)
	}
}

// forget drops rs's expectations (rs is gone).
func (e *expectations) forget(rs string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.all, rs)
}
