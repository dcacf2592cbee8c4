package apiserver

import (
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// metadataOnly renders obj (an object or a list) as PartialObjectMetadata
// or PartialObjectMetadataList, as the metadata clients of client-go (the
// garbage collector's and namespace controller's informers) ask. Asking
// for the one when obj is the other is 406 Not Acceptable, as in
// kube-apiserver.
func metadataOnly(accept string, obj runtime.Object) (runtime.Object, error) {
	as := acceptedAs(accept)
	if !meta.IsListType(obj) {
		if as != asMeta {
			return nil, notAcceptable(accept)
		}
		return partialMetadata(obj), nil
	}
	if as != asMetaList {
		return nil, notAcceptable(accept)
	}
	return metadataList(obj)
}

// metadataList is the PartialObjectMetadataList of the list obj.
func metadataList(obj runtime.Object) (*metav1.PartialObjectMetadataList, error) {
	items, err := meta.ExtractList(obj)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	out := &metav1.PartialObjectMetadataList{
		TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: asMetaList},
		Items:    make([]metav1.PartialObjectMetadata, 0, len(items)),
	}
	if lm, err := meta.ListAccessor(obj); err == nil {
		out.ResourceVersion, out.Continue, out.RemainingItemCount = lm.GetResourceVersion(), lm.GetContinue(), lm.GetRemainingItemCount()
	}
	for _, it := range items {
		out.Items = append(out.Items, *partialMetadata(it))
	}
	return out, nil
}

// partialMetadata is obj's PartialObjectMetadata.
func partialMetadata(obj runtime.Object) *metav1.PartialObjectMetadata {
	m, err := meta.Accessor(obj)
	if err != nil {
		return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: asMeta}}
	}
	p := meta.AsPartialObjectMetadata(m)
	p.TypeMeta = metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: asMeta}
	return p
}

// notAcceptable is kube-apiserver's 406 for a rendering it cannot give.
func notAcceptable(accept string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusNotAcceptable, Reason: metav1.StatusReasonNotAcceptable,
		Message: fmt.Sprintf("only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf (asked for %q)", accept),
	}}
}
