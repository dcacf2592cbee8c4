package raftstore

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// leadershipPoll is how often the leadership loop looks at Raft's state even
// without an observation: observations are dropped when their channel is
// full, so a missed one delays a change by at most this long.
const leadershipPoll = 250 * time.Millisecond

// leadership is what Store.Leadership's subscribers read: the term this
// node leads in (0 when it does not), published by leadershipLoop only
// after a barrier of that term.
type leadership struct {
	mu   sync.Mutex
	term uint64
	// ended is set once leadershipLoop has returned: nothing changes any more.
	ended bool
	// changed is closed and replaced whenever term or ended changes.
	changed chan struct{}
}

func newLeadership() *leadership { return &leadership{changed: make(chan struct{})} }

// set publishes term (0: not leading) and whether the loop has ended.
func (l *leadership) set(term uint64, ended bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term == term && l.ended == ended {
		return
	}
	l.term, l.ended = term, ended
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *leadership) get() (term uint64, ended bool, changed <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.term, l.ended, l.changed
}

// Leadership returns a channel that reports this node's Raft leadership as
// it changes: true once the node is the leader and has applied every entry
// committed before its term (it has completed a Raft barrier in that term),
// false once it is no longer the leader of that term. Values alternate,
// starting with true. A term lost and another won while the receiver was
// busy still reads as false, then true: a receiver never sees two terms as
// one. Slow receivers miss nothing but intermediate states.
//
// The channel is closed when ctx ends or the store stops; if the last value
// sent was true, a false is sent first (unless ctx has ended). Callers must
// keep receiving until the channel is closed or ctx ends. Leadership may be
// called at any time, before Run too, and by any number of callers.
//
// Raft leadership is not a lease: an old leader cut off from the others
// reports false only once Raft notices (LeaderLeaseTimeout), which may be
// after another node has reported true.
func (s *Store) Leadership(ctx context.Context) <-chan bool {
	ch := make(chan bool)
	go func() {
		defer close(ch)
		var reported uint64 // the term last reported as true; 0 if false
		send := func(v bool) bool {
			select {
			case ch <- v:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			term, ended, changed := s.leader.get()
			select {
			case <-s.stopped:
				term, ended = 0, true
			default:
			}
			if reported != 0 && term != reported {
				if !send(false) {
					return
				}
				reported = 0
			}
			if ended {
				return
			}
			if reported == 0 && term != 0 {
				if !send(true) {
					return
				}
				reported = term
			}
			select {
			case <-changed:
			case <-s.stopped:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// leadershipLoop follows Raft's state for Leadership: when this node
// becomes the leader it runs a barrier, then publishes its term; when it
// stops leading it publishes 0. It returns when ctx ends, publishing that
// leadership has ended.
func (s *Store) leadershipLoop(ctx context.Context) error {
	obs := make(chan raft.Observation, 64)
	observer := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.RaftState, raft.LeaderObservation:
			return true
		}
		return false
	})
	s.raft.RegisterObserver(observer)
	defer s.raft.DeregisterObserver(observer)
	defer s.leader.set(0, true)
	tick := time.NewTicker(leadershipPoll)
	defer tick.Stop()
	var published uint64
	for {
		if s.raft.State() == raft.Leader {
			term := s.raft.CurrentTerm()
			if published != 0 && published != term {
				s.leader.set(0, false) // a new term is a new leadership: report the old one lost first
				published = 0
			}
			if published == 0 {
				published = s.confirmLeadership(ctx)
				s.leader.set(published, false)
			}
		} else if published != 0 {
			s.log.Info("lost leadership", "term", published)
			published = 0
			s.leader.set(0, false)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-obs:
		case <-tick.C:
		}
	}
}

// confirmLeadership runs a barrier in the current term and returns the term
// if this node still leads in it afterwards, else 0 (the caller tries again
// on the next change or tick).
func (s *Store) confirmLeadership(ctx context.Context) uint64 {
	bctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	term, err := s.ensureBarrier(bctx)
	if err != nil {
		s.log.Debug("leadership barrier failed", "err", err)
		return 0
	}
	if s.raft.State() != raft.Leader || s.raft.CurrentTerm() != term {
		return 0
	}
	s.log.Info("leading", "term", term, "rev", s.fsm.appliedRev())
	return term
}
