// Package expectations remembers the pods a controller has just created or
// deleted until its informer shows them, so that a sync working from a
// cache that lags behind its own writes does not create or delete them a
// second time (Kubernetes' controller expectations).
//
//	e := expectations.New(clock, ttl)
//	e.ExpectCreate(owner)            // before a create; e.Created(owner) if it fails
//	e.ExpectDelete(owner, pod.UID)   // before a delete; e.Deleted(owner, uid) if it fails
//	e.Created(owner)                 // from the informer's add handler
//	e.Deleted(owner, uid)            // from its delete handler (or deletionTimestamp set)
//	if !e.Satisfied(owner) { skip }  // at the start of a sync
//
// Expectations are raised before the write, never after: the informer may
// deliver the write's event before the write call returns.
// Expectations live in memory only: a controller that starts again starts
// with none, from a fresh list. An expectation not met within ttl is
// dropped, so a lost event delays a sync and never blocks it.
package expectations

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Expectations is safe for concurrent use.
type Expectations struct {
	now func() time.Time
	ttl time.Duration

	mu      sync.Mutex
	pending map[string]*pending
}

type pending struct {
	creates int
	deletes map[types.UID]bool
	since   time.Time // of the oldest expectation still pending
}

// New returns empty expectations that expire after ttl by the clock now.
func New(now func() time.Time, ttl time.Duration) *Expectations {
	return &Expectations{now: now, ttl: ttl, pending: map[string]*pending{}}
}

func (e *Expectations) get(owner string) *pending {
	p := e.pending[owner]
	if p == nil {
		p = &pending{deletes: map[types.UID]bool{}, since: e.now()}
		e.pending[owner] = p
	}
	return p
}

// ExpectCreate records that owner is about to create a pod.
func (e *Expectations) ExpectCreate(owner string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.get(owner).creates++
}

// ExpectDelete records that owner is about to delete the pod with uid.
func (e *Expectations) ExpectDelete(owner string, uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.get(owner).deletes[uid] = true
}

// Created records that the informer showed a new pod of owner's, or that
// a create failed.
func (e *Expectations) Created(owner string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.pending[owner]; p != nil {
		p.creates = max(p.creates-1, 0)
		e.tidy(owner, p)
	}
}

// Deleted records that the informer showed owner's pod with uid deleted
// (or being deleted), or that its delete failed.
func (e *Expectations) Deleted(owner string, uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.pending[owner]; p != nil {
		delete(p.deletes, uid)
		e.tidy(owner, p)
	}
}

func (e *Expectations) tidy(owner string, p *pending) {
	if p.creates == 0 && len(p.deletes) == 0 {
		delete(e.pending, owner)
	}
}

// Satisfied reports whether owner has nothing pending, or waited longer
// than the ttl (then it forgets what was pending).
func (e *Expectations) Satisfied(owner string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pending[owner]
	if p == nil {
		return true
	}
	if e.now().Sub(p.since) > e.ttl {
		delete(e.pending, owner)
		return true
	}
	return false
}

// Forget drops owner's expectations (the owner is gone).
func (e *Expectations) Forget(owner string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.pending, owner)
}
