package apiserver

// The table columns of controllerrevisions (apps/v1), endpointslices
// (discovery.k8s.io/v1), leases (coordination.k8s.io/v1) and
// poddisruptionbudgets (policy/v1), as kube-apiserver 1.32 prints them.

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var controllerRevisionColumns = []column{
	nameColumn,
	{def: stringCol("Controller", "Controller of the object"), cell: func(obj runtime.Object, _ time.Time) any {
		ref := metav1.GetControllerOf(obj.(*appsv1.ControllerRevision))
		if ref == nil {
			return "<none>"
		}
		gv, err := schema.ParseGroupVersion(ref.APIVersion)
		if err != nil {
			return ref.Name
		}
		return strings.ToLower(gv.WithKind(ref.Kind).GroupKind().String()) + "/" + ref.Name
	}},
	{def: intCol("Revision", appsv1.ControllerRevision{}.SwaggerDoc()["revision"]), cell: func(obj runtime.Object, _ time.Time) any {
		return obj.(*appsv1.ControllerRevision).Revision
	}},
	ageColumn,
}

var endpointSliceColumns = []column{
	nameColumn,
	{def: stringCol("AddressType", discoveryv1.EndpointSlice{}.SwaggerDoc()["addressType"]), cell: func(obj runtime.Object, _ time.Time) any {
		return string(obj.(*discoveryv1.EndpointSlice).AddressType)
	}},
	{def: stringCol("Ports", discoveryv1.EndpointSlice{}.SwaggerDoc()["ports"]), cell: func(obj runtime.Object, _ time.Time) any {
		var list []string
		for _, p := range obj.(*discoveryv1.EndpointSlice).Ports {
			switch {
			case p.Port != nil:
				list = append(list, strconv.Itoa(int(*p.Port)))
			case p.Name != nil:
				list = append(list, *p.Name)
			default:
				list = append(list, "*")
			}
		}
		return firstThree(list)
	}},
	{def: stringCol("Endpoints", discoveryv1.EndpointSlice{}.SwaggerDoc()["endpoints"]), cell: func(obj runtime.Object, _ time.Time) any {
		var list []string
		for _, e := range obj.(*discoveryv1.EndpointSlice).Endpoints {
			list = append(list, e.Addresses...)
		}
		return firstThree(list)
	}},
	ageColumn,
}

// firstThree is upstream's listWithMoreString for the endpoint slice
// columns: the first three entries, then " + N more..."; <unset> when empty.
func firstThree(list []string) string {
	if len(list) == 0 {
		return "<unset>"
	}
	if len(list) > maxEndpoints {
		return strings.Join(list[:maxEndpoints], ",") + fmt.Sprintf(" + %d more...", len(list)-maxEndpoints)
	}
	return strings.Join(list, ",")
}

var leaseColumns = []column{
	nameColumn,
	{def: stringCol("Holder", coordinationv1.LeaseSpec{}.SwaggerDoc()["holderIdentity"]), cell: func(obj runtime.Object, _ time.Time) any {
		if h := obj.(*coordinationv1.Lease).Spec.HolderIdentity; h != nil {
			return *h
		}
		return ""
	}},
	ageColumn,
}

var pdbColumns = []column{
	nameColumn,
	{def: stringCol("Min Available", policyv1.PodDisruptionBudgetSpec{}.SwaggerDoc()["minAvailable"]), cell: func(obj runtime.Object, _ time.Time) any {
		if v := obj.(*policyv1.PodDisruptionBudget).Spec.MinAvailable; v != nil {
			return v.String()
		}
		return "N/A"
	}},
	{def: stringCol("Max Unavailable", policyv1.PodDisruptionBudgetSpec{}.SwaggerDoc()["maxUnavailable"]), cell: func(obj runtime.Object, _ time.Time) any {
		if v := obj.(*policyv1.PodDisruptionBudget).Spec.MaxUnavailable; v != nil {
			return v.String()
		}
		return "N/A"
	}},
	{def: intCol("Allowed Disruptions", policyv1.PodDisruptionBudgetStatus{}.SwaggerDoc()["disruptionsAllowed"]), cell: func(obj runtime.Object, _ time.Time) any {
		return int64(obj.(*policyv1.PodDisruptionBudget).Status.DisruptionsAllowed)
	}},
	ageColumn,
}
