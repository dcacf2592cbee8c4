package apiserver

import (
	"net/url"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/internalversion/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// watchListEnabled says the server supports the watch-list protocol
// (sendInitialEvents), as kube-apiserver with the WatchList feature does.
const watchListEnabled = true

// checkListQuery checks the combinations of list and watch parameters that
// kube-apiserver refuses (resourceVersionMatch, sendInitialEvents,
// allowWatchBookmarks), with its wording: 422 Invalid on ListOptions.
func checkListQuery(q url.Values, watch bool) error {
	opts := internalversion.ListOptions{
		Watch:                watch,
		ResourceVersion:      q.Get("resourceVersion"),
		ResourceVersionMatch: metav1.ResourceVersionMatch(q.Get("resourceVersionMatch")),
		Continue:             q.Get("continue"),
	}
	if v := q.Get("sendInitialEvents"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return apierrors.NewBadRequest("sendInitialEvents: invalid value " + strconv.Quote(v))
		}
		opts.SendInitialEvents = &b
	}
	errs := metavalidation.ValidateListOptions(&opts, watchListEnabled)
	if len(errs) > 0 {
		return apierrors.NewInvalid(schema.GroupKind{Group: metav1.GroupName, Kind: "ListOptions"}, "", errs)
	}
	return nil
}

// queryBool reads a boolean query parameter as kube-apiserver's conversion
// does: "true", "1" and the like are true; absent is false.
func queryBool(q url.Values, name string) bool {
	b, _ := strconv.ParseBool(q.Get(name))
	return b
}
