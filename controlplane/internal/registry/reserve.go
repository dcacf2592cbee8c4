package registry

import (
	"context"
	"errors"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-sh/skiff/raftstore"
)

// Reservations describe what the objects of a resource hold beyond their
// own key: for services, their cluster IP and node ports. Each held thing is
// a key, written in the same Raft entry as the object that holds it, on the
// condition that no other object holds it, and deleted in the same entry as
// the object. So two objects never hold the same thing, whichever masters
// their writes arrive at, and nothing leaks when a write fails.
type Reservations struct {
	// Prefixes are where the keys lie; the registry reads the keys
	// Assign asks about to tell it what is held.
	Prefixes []string
	// Assign fills in what obj leaves to the server (an unset cluster IP
	// or node port), choosing keys held reports free, and checks what obj
	// asks for: 422 Invalid when it is out of range or held by another
	// object. old is the stored object on update, nil on create; the keys
	// old holds count as free. Assign may modify obj.
	Assign func(obj, old runtime.Object, held func(key string) bool) error
	// Keys returns the keys obj holds, under Prefixes.
	Keys func(obj runtime.Object) []string
}

// reserveAttempts bounds the retries of a write whose chosen keys another
// write took first. Each lost round means another write won, so the bound
// is only reached under unbounded contention for an almost full range.
const reserveAttempts = 200

// heldKeys returns held, which tells whether a key is held now by an
// object other than own (the stored object, on update), and failed, the
// first read error held met. held reads the key itself: the first call a
// linearizable read, the others the local replica, which is at least as
// recent. Assign looks at one key or a few (it picks at random in a
// mostly free range), so a write costs a read or a few, not a list of
// every key held: that list made creating the 10,000th service cost
// 10,000 keys. After a read error held says every key is free, so that
// Assign stops at once; assign then returns the error, not what Assign
// chose.
func (s *Store) heldKeys(ctx context.Context, res *Resource, own runtime.Object) (held func(string) bool, failed func() error) {
	var mine []string
	if own != nil {
		mine = res.Reservations.Keys(own)
	}
	var err error
	linearized := false
	held = func(k string) bool {
		if err != nil {
			return false
		}
		if slices.Contains(mine, k) {
			return false
		}
		kv, _, e := s.kv.Get(ctx, k, raftstore.ReadOptions{Stale: linearized})
		if e != nil {
			err = storeError(res, "", expiredList, e)
			return false
		}
		linearized = true
		return kv != nil
	}
	return held, func() error { return err }
}

// assign runs the resource's Assign on obj with what is held now.
func (s *Store) assign(ctx context.Context, res *Resource, obj, old runtime.Object) error {
	held, failed := s.heldKeys(ctx, res, old)
	err := res.Reservations.Assign(obj, old, held)
	if ferr := failed(); ferr != nil {
		return ferr
	}
	return err
}

// errReservationTaken says another write took a chosen key first: assign again.
var errReservationTaken = errors.New("registry: a reserved key was taken meanwhile")

// writeReserving writes data at k with expected mod revision (0: k must
// not exist), creating the keys obj holds that old (nil on create) did not,
// and deleting those old held that obj does not. It returns the revision of
// the write; raftstore.ErrKeyExists when k exists on create,
// raftstore.ErrConflict when k changed, errReservationTaken when a new key
// is held by someone else.
func (s *Store) writeReserving(ctx context.Context, res *Resource, k string, data []byte, expected int64, obj, old runtime.Object) (int64, error) {
	var newKeys, oldKeys []string
	if obj != nil {
		newKeys = res.Reservations.Keys(obj)
	}
	if old != nil {
		oldKeys = res.Reservations.Keys(old)
	}
	// Mod revision 0 is a key that does not exist.
	txn := &raftstore.Txn{Compares: []raftstore.Compare{{Key: k, Target: raftstore.TargetModRevision, Result: raftstore.Equal, Value: expected}}}
	if data == nil {
		txn.Success = append(txn.Success, raftstore.Request{Type: raftstore.RequestDelete, Key: k})
	} else {
		txn.Success = append(txn.Success, raftstore.Request{Type: raftstore.RequestPut, Key: k, Value: data})
	}
	for _, rk := range newKeys {
		if slices.Contains(oldKeys, rk) || !underAny(rk, res.Reservations.Prefixes) {
			continue
		}
		txn.Compares = append(txn.Compares, raftstore.Compare{Key: rk, Target: raftstore.TargetModRevision, Result: raftstore.Equal, Value: 0})
		txn.Success = append(txn.Success, raftstore.Request{Type: raftstore.RequestPut, Key: rk, Value: []byte(k)})
	}
	for _, rk := range oldKeys {
		if !slices.Contains(newKeys, rk) && underAny(rk, res.Reservations.Prefixes) {
			txn.Success = append(txn.Success, raftstore.Request{Type: raftstore.RequestDelete, Key: rk})
		}
	}
	out, err := s.kv.Txn(ctx, txn)
	if err != nil {
		return 0, err
	}
	if out.Succeeded {
		return out.Revision, nil
	}
	switch cur := out.Current[0]; {
	case expected == 0 && cur != nil:
		return 0, raftstore.ErrKeyExists
	case expected != 0 && (cur == nil || cur.ModRevision != expected):
		return 0, raftstore.ErrConflict
	}
	return 0, errReservationTaken
}

func underAny(k string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// tooManyReservationRetries is the error of a write that lost its chosen
// keys reserveAttempts times in a row.
func tooManyReservationRetries(res *Resource, name string) error {
	return apierrors.NewConflict(res.GroupResource, name, errors.New("the allocation was taken by concurrent writes too many times; please retry"))
}
