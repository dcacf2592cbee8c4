package registry

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/raftstore"
)

// modifiedMsg is the reason of kube-apiserver's optimistic concurrency conflict.
const modifiedMsg = "the object has been modified; please apply your changes to the latest version and try again"

// kube-apiserver's messages for expired revisions and continue tokens.
const (
	expiredList     = "The resourceVersion for the provided list is too old."
	continueExpired = "The provided continue parameter is too old to display a consistent list result. " +
		"You can start a new list without the continue parameter."
)

// conflict is the 409 of a write whose resourceVersion is not the stored one.
func conflict(res *Resource, name string) error {
	return apierrors.NewConflict(res.GroupResource, name, errors.New(modifiedMsg))
}

// tooOldWatch is the 410 of a watch from before the kept history. from is the
// revision asked for, oldest the oldest revision a watch may start from.
func tooOldWatch(from, oldest int64) *apierrors.StatusError {
	return apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", from, oldest))
}

// storeError turns a raftstore error into the Kubernetes API error of
// kube-apiserver for the same situation. name is the object's, expired the
// message for a compacted read.
func storeError(res *Resource, name, expired string, err error) error {
	var (
		ce     *raftstore.CompactedError
		fe     *raftstore.FutureRevisionError
		status apierrors.APIStatus
	)
	if errors.As(err, &status) {
		return err
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raftstore.ErrKeyExists):
		return apierrors.NewAlreadyExists(res.GroupResource, name)
	case errors.Is(err, raftstore.ErrKeyNotFound):
		return apierrors.NewNotFound(res.GroupResource, name)
	case errors.Is(err, raftstore.ErrConflict):
		return conflict(res, name)
	case errors.As(err, &ce):
		return apierrors.NewResourceExpired(expired)
	case errors.As(err, &fe):
		return tooLargeRV(fe.Requested, fe.Current)
	case errors.Is(err, raftstore.ErrUnknownOutcome):
		// Never a false success or a false failure: the client must read.
		return apierrors.NewInternalError(fmt.Errorf("the outcome of the write is unknown, it may or may not have been applied: %w", err))
	case errors.Is(err, raftstore.ErrNoLeader):
		return apierrors.NewTimeoutError(fmt.Sprintf("the cluster has no leader, nothing was written or read (%v)", err), 1)
	case errors.Is(err, raftstore.ErrStopped):
		return apierrors.NewServiceUnavailable("the store of this server is not running")
	case errors.Is(err, context.DeadlineExceeded):
		return apierrors.NewTimeoutError(fmt.Sprintf("request did not complete within the allowed time (%v)", err), 1)
	}
	return apierrors.NewInternalError(err)
}

// tooLargeRV is kube-apiserver's 504 for a read that must see a revision
// this server has not reached; clients retry after retrySeconds.
func tooLargeRV(minimum, current int64) error {
	err := apierrors.NewTimeoutError(fmt.Sprintf("Too large resource version: %d, current: %d", minimum, current), 1)
	err.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: metav1.CauseTypeResourceVersionTooLarge, Message: "Too large resource version"}}
	return err
}
