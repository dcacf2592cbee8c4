package apiserver

import (
	"reflect"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-sh/skiff/controlplane/internal/registry"
	"github.com/skiff-sh/skiff/controlplane/internal/strategy"
)

// NewScheme returns the scheme of every type the server encodes or decodes:
// the served core/v1, apps/v1, batch/v1, policy/v1,
// rbac.authorization.k8s.io/v1, discovery.k8s.io/v1 and
// coordination.k8s.io/v1 kinds with their lists and options, autoscaling/v1 (Scale, the scale
// subresource's kind), policy/v1 (Eviction, pods/eviction's kind), and the
// meta.k8s.io/v1 types (Status, WatchEvent, Table, PartialObjectMetadata).
// The registry must be built with the same scheme.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	// The k8s.io/api AddToScheme functions also register the meta types
	// (options, Status, WatchEvent) in their group versions.
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, autoscalingv1.AddToScheme, policyv1.AddToScheme, rbacv1.AddToScheme,
		authenticationv1.AddToScheme, authorizationv1.AddToScheme,
		discoveryv1.AddToScheme, coordinationv1.AddToScheme, metav1.AddMetaToScheme,
	} {
		if err := add(s); err != nil {
			panic("apiserver: scheme: " + err.Error()) // static registrations cannot fail
		}
	}
	metav1.AddToGroupVersion(s, metav1.SchemeGroupVersion)
	return s
}

// resource is one served resource: its discovery entry, its registry
// description and its table columns.
type resource struct {
	gvr        schema.GroupVersionResource
	singular   string
	kind       string
	namespaced bool
	shortNames []string
	categories []string
	verbs      []string
	// fieldLabels are the field selector labels beyond metadata.name and
	// metadata.namespace; reg.Fields returns their values.
	fieldLabels []string
	reg         *registry.Resource
	// columns of the server-side Table; nil means Name and Age.
	columns []column
	// review, if set, makes this a create-only review resource
	// (reviews.go): nothing stored, no list kind.
	review reviewFunc
}

// allVerbs are the verbs of every served resource.
var allVerbs = []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

// resources returns the resource table. The order is the order of discovery.
// Pods created get tolerations of tolerationSeconds for the not-ready and
// unreachable taints (admitPod).
func resources(tolerationSeconds int64) []*resource {
	core := schema.GroupVersion{Version: "v1"}
	apps := appsv1.SchemeGroupVersion
	return []*resource{
		{
			gvr: core.WithResource("namespaces"), singular: "namespace", kind: "Namespace", shortNames: []string{"ns"},
			verbs:       []string{"create", "delete", "get", "list", "patch", "update", "watch"},
			fieldLabels: []string{"status.phase"},
			reg: &registry.Resource{
				New: func() runtime.Object { return &corev1.Namespace{} }, NewList: func() runtime.Object { return &corev1.NamespaceList{} },
				ValidateName: validation.NameIsDNSLabel,
				PrepareForCreate: func(obj runtime.Object) {
					obj.(*corev1.Namespace).Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
				},
				PrepareForUpdate: func(obj, old runtime.Object) {
					// spec.finalizers is written through namespaces/finalize only.
					keepStatus(obj, old)
					obj.(*corev1.Namespace).Spec.Finalizers = old.(*corev1.Namespace).Spec.Finalizers
				},
				// A deleted namespace is Terminating until the namespace
				// controller has deleted its contents and finalized it.
				Finalizing: func(obj runtime.Object) bool { return len(obj.(*corev1.Namespace).Spec.Finalizers) > 0 },
				PrepareForDelete: func(obj runtime.Object) {
					obj.(*corev1.Namespace).Status.Phase = corev1.NamespaceTerminating
				},
				Fields: func(obj runtime.Object) fields.Set {
					return fields.Set{"status.phase": string(obj.(*corev1.Namespace).Status.Phase)}
				},
			},
			columns: namespaceColumns,
		},
		{
			gvr: core.WithResource("nodes"), singular: "node", kind: "Node", shortNames: []string{"no"},
			fieldLabels: []string{"spec.unschedulable"},
			reg: &registry.Resource{
				New: func() runtime.Object { return &corev1.Node{} }, NewList: func() runtime.Object { return &corev1.NodeList{} },
				PrepareForUpdate: keepStatus,
				Fields: func(obj runtime.Object) fields.Set {
					return fields.Set{"spec.unschedulable": boolString(obj.(*corev1.Node).Spec.Unschedulable)}
				},
			},
			columns: nodeColumns,
		},
		{
			gvr: core.WithResource("pods"), singular: "pod", kind: "Pod", namespaced: true,
			shortNames: []string{"po"}, categories: []string{"all"},
			fieldLabels: []string{"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"},
			reg: &registry.Resource{
				New: func() runtime.Object { return &corev1.Pod{} }, NewList: func() runtime.Object { return &corev1.PodList{} },
				PrepareForCreate: func(obj runtime.Object) {
					pod := obj.(*corev1.Pod)
					admitPod(pod, tolerationSeconds)
					pod.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: strategy.PodQOSClass(&pod.Spec)}
				},
				PrepareForUpdate: keepStatus,
				GracePeriod:      podGracePeriod,
				Fields: func(obj runtime.Object) fields.Set {
					p := obj.(*corev1.Pod)
					return fields.Set{
						"spec.nodeName": p.Spec.NodeName, "spec.restartPolicy": string(p.Spec.RestartPolicy),
						"spec.schedulerName": p.Spec.SchedulerName, "spec.serviceAccountName": p.Spec.ServiceAccountName,
						"spec.hostNetwork": boolString(p.Spec.HostNetwork), "status.phase": string(p.Status.Phase),
						"status.podIP": p.Status.PodIP, "status.nominatedNodeName": p.Status.NominatedNodeName,
					}
				},
			},
			columns: podColumns,
		},
		{
			gvr: core.WithResource("services"), singular: "service", kind: "Service", namespaced: true,
			shortNames: []string{"svc"}, categories: []string{"all"},
			reg: &registry.Resource{
				New: func() runtime.Object { return &corev1.Service{} }, NewList: func() runtime.Object { return &corev1.ServiceList{} },
				ValidateName:     validation.NameIsDNS1035Label,
				PrepareForCreate: func(obj runtime.Object) { obj.(*corev1.Service).Status = corev1.ServiceStatus{} },
				PrepareForUpdate: func(obj, old runtime.Object) {
					keepStatus(obj, old)
					strategy.PrepareServiceUpdate(obj.(*corev1.Service), old.(*corev1.Service))
					keepAllocated(obj, old)
				},
			},
			columns: serviceColumns,
		},
		{
			gvr: core.WithResource("endpoints"), singular: "endpoints", kind: "Endpoints", namespaced: true, shortNames: []string{"ep"},
			//lint:ignore SA1019 Kubernetes still serves core/v1 Endpoints and kubectl reads them
			reg:     &registry.Resource{New: func() runtime.Object { return &corev1.Endpoints{} }, NewList: func() runtime.Object { return &corev1.EndpointsList{} }},
			columns: endpointsColumns,
		},
		{
			gvr: core.WithResource("configmaps"), singular: "configmap", kind: "ConfigMap", namespaced: true, shortNames: []string{"cm"},
			reg:     &registry.Resource{New: func() runtime.Object { return &corev1.ConfigMap{} }, NewList: func() runtime.Object { return &corev1.ConfigMapList{} }},
			columns: configMapColumns,
		},
		{
			gvr: core.WithResource("secrets"), singular: "secret", kind: "Secret", namespaced: true,
			fieldLabels: []string{"type"},
			reg: &registry.Resource{
				New: func() runtime.Object { return &corev1.Secret{} }, NewList: func() runtime.Object { return &corev1.SecretList{} },
				Fields: func(obj runtime.Object) fields.Set { return fields.Set{"type": string(obj.(*corev1.Secret).Type)} },
			},
			columns: secretColumns,
		},
		{
			gvr: core.WithResource("serviceaccounts"), singular: "serviceaccount", kind: "ServiceAccount", namespaced: true, shortNames: []string{"sa"},
			reg:     &registry.Resource{New: func() runtime.Object { return &corev1.ServiceAccount{} }, NewList: func() runtime.Object { return &corev1.ServiceAccountList{} }},
			columns: serviceAccountColumns,
		},
		{
			gvr: core.WithResource("events"), singular: "event", kind: "Event", namespaced: true, shortNames: []string{"ev"},
			fieldLabels: []string{"involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"},
			reg: &registry.Resource{
				New: func() runtime.Object { return &corev1.Event{} }, NewList: func() runtime.Object { return &corev1.EventList{} },
				Fields: func(obj runtime.Object) fields.Set {
					e := obj.(*corev1.Event)
					return fields.Set{
						"involvedObject.kind": e.InvolvedObject.Kind, "involvedObject.namespace": e.InvolvedObject.Namespace,
						"involvedObject.name": e.InvolvedObject.Name, "involvedObject.uid": string(e.InvolvedObject.UID),
						"involvedObject.apiVersion": e.InvolvedObject.APIVersion, "involvedObject.resourceVersion": e.InvolvedObject.ResourceVersion,
						"involvedObject.fieldPath": e.InvolvedObject.FieldPath, "reason": e.Reason,
						"reportingComponent": e.ReportingController, "source": e.Source.Component, "type": e.Type,
					}
				},
			},
			columns: eventColumns,
		},
		workload(apps.WithResource("deployments"), "deployment", "Deployment", "deploy",
			func() runtime.Object { return &appsv1.Deployment{} }, func() runtime.Object { return &appsv1.DeploymentList{} }, deploymentColumns),
		workload(apps.WithResource("replicasets"), "replicaset", "ReplicaSet", "rs",
			func() runtime.Object { return &appsv1.ReplicaSet{} }, func() runtime.Object { return &appsv1.ReplicaSetList{} }, replicaSetColumns),
		workload(apps.WithResource("statefulsets"), "statefulset", "StatefulSet", "sts",
			func() runtime.Object { return &appsv1.StatefulSet{} }, func() runtime.Object { return &appsv1.StatefulSetList{} }, statefulSetColumns),
		workload(apps.WithResource("daemonsets"), "daemonset", "DaemonSet", "ds",
			func() runtime.Object { return &appsv1.DaemonSet{} }, func() runtime.Object { return &appsv1.DaemonSetList{} }, daemonSetColumns),
		{
			gvr: apps.WithResource("controllerrevisions"), singular: "controllerrevision", kind: "ControllerRevision", namespaced: true,
			reg: &registry.Resource{
				New: func() runtime.Object { return &appsv1.ControllerRevision{} }, NewList: func() runtime.Object { return &appsv1.ControllerRevisionList{} },
			},
			columns: controllerRevisionColumns,
		},
		jobs(),
		disruptionBudgets(),
		workload(batchv1.SchemeGroupVersion.WithResource("cronjobs"), "cronjob", "CronJob", "cj",
			func() runtime.Object { return &batchv1.CronJob{} }, func() runtime.Object { return &batchv1.CronJobList{} }, cronJobColumns),
		rbac("clusterrolebindings", "ClusterRoleBinding", false, func() runtime.Object { return &rbacv1.ClusterRoleBinding{} },
			func() runtime.Object { return &rbacv1.ClusterRoleBindingList{} }, clusterRoleBindingColumns),
		rbac("clusterroles", "ClusterRole", false, func() runtime.Object { return &rbacv1.ClusterRole{} },
			func() runtime.Object { return &rbacv1.ClusterRoleList{} }, roleColumns),
		rbac("rolebindings", "RoleBinding", true, func() runtime.Object { return &rbacv1.RoleBinding{} },
			func() runtime.Object { return &rbacv1.RoleBindingList{} }, roleBindingColumns),
		rbac("roles", "Role", true, func() runtime.Object { return &rbacv1.Role{} },
			func() runtime.Object { return &rbacv1.RoleList{} }, roleColumns),
		{
			gvr: discoveryv1.SchemeGroupVersion.WithResource("endpointslices"), singular: "endpointslice", kind: "EndpointSlice", namespaced: true,
			reg: &registry.Resource{
				New: func() runtime.Object { return &discoveryv1.EndpointSlice{} }, NewList: func() runtime.Object { return &discoveryv1.EndpointSliceList{} },
			},
			columns: endpointSliceColumns,
		},
		{
			gvr: coordinationv1.SchemeGroupVersion.WithResource("leases"), singular: "lease", kind: "Lease", namespaced: true,
			reg: &registry.Resource{
				New: func() runtime.Object { return &coordinationv1.Lease{} }, NewList: func() runtime.Object { return &coordinationv1.LeaseList{} },
			},
			columns: leaseColumns,
		},
	}
}

// workload describes an apps/v1 workload: status is owned by controllers,
// which write it through the status subresource, and generation counts spec
// changes.
func workload(gvr schema.GroupVersionResource, singular, kind, short string, newObj, newList func() runtime.Object, cols []column) *resource {
	r := &resource{
		gvr: gvr, singular: singular, kind: kind, namespaced: true,
		categories: []string{"all"},
		reg: &registry.Resource{
			New: newObj, NewList: newList, Generation: true,
			PrepareForCreate: func(obj runtime.Object) { clearField(obj, "Status") },
			PrepareForUpdate: func(obj, old runtime.Object) {
				keepStatus(obj, old)
				if !apiequality.Semantic.DeepEqual(structField(obj, "Spec"), structField(old, "Spec")) {
					m, o := obj.(metav1.Object), old.(metav1.Object)
					m.SetGeneration(o.GetGeneration() + 1)
				}
			},
		},
		columns: cols,
	}
	if short != "" {
		r.shortNames = []string{short}
	}
	return r
}

// jobs describes batch/v1 jobs: a workload without a short name whose
// new objects get their generated selector once their uid is known, and
// whose delete without a propagation policy orphans the pods.
func jobs() *resource {
	r := workload(batchv1.SchemeGroupVersion.WithResource("jobs"), "job", "Job", "",
		func() runtime.Object { return &batchv1.Job{} }, func() runtime.Object { return &batchv1.JobList{} }, jobColumns)
	r.reg.PrepareNamed = func(obj runtime.Object) { strategy.PrepareJob(obj.(*batchv1.Job)) }
	r.reg.OrphanByDefault = true // kube-apiserver's default for batch/v1, "for backward compatibility"
	r.fieldLabels = []string{"status.successful"}
	r.reg.Fields = func(obj runtime.Object) fields.Set {
		return fields.Set{"status.successful": strconv.Itoa(int(obj.(*batchv1.Job).Status.Succeeded))}
	}
	return r
}

// disruptionBudgets describes policy/v1 poddisruptionbudgets: a spec the
// disruption controller observes (generation) and a status it writes,
// which evictions also spend (pods/eviction).
func disruptionBudgets() *resource {
	r := workload(policyv1.SchemeGroupVersion.WithResource("poddisruptionbudgets"), "poddisruptionbudget", "PodDisruptionBudget", "pdb",
		func() runtime.Object { return &policyv1.PodDisruptionBudget{} }, func() runtime.Object { return &policyv1.PodDisruptionBudgetList{} }, pdbColumns)
	r.categories = nil
	return r
}

// rbac describes an rbac.authorization.k8s.io/v1 resource: stored as
// written (no status, no generation), named by path segments
// ("system:controller:x"). Nothing enforces them yet: like a
// kube-apiserver with --authorization-mode=AlwaysAllow, Skiff keeps roles
// and bindings for the charts and tools that create them.
func rbac(plural, kind string, namespaced bool, newObj, newList func() runtime.Object, cols []column) *resource {
	return &resource{
		gvr: rbacv1.SchemeGroupVersion.WithResource(plural), singular: strings.ToLower(kind), kind: kind, namespaced: namespaced,
		reg:     &registry.Resource{New: newObj, NewList: newList, ValidateName: strategy.RBACName},
		columns: cols,
	}
}

// complete fills in what the table leaves implicit: the verbs, the
// registry's names of each resource, and the defaulting and validation of
// its kind (package strategy).
func complete(rs []*resource) []*resource {
	for _, r := range rs {
		if r.verbs == nil {
			r.verbs = allVerbs
		}
		r.reg.Default, r.reg.Validate, r.reg.ValidateUpdate = strategy.Default, strategy.Validate, strategy.ValidateUpdate
		r.reg.GroupResource = r.gvr.GroupResource()
		r.reg.Kind = r.gvr.GroupVersion().WithKind(r.kind)
		r.reg.Namespaced = r.namespaced
	}
	return rs
}

// keepStatus is the PrepareForUpdate of resources whose status is not
// written through the main resource but through the status subresource
// (subresources.go): the stored status is kept.
func keepStatus(obj, old runtime.Object) {
	reflect.ValueOf(obj).Elem().FieldByName("Status").Set(reflect.ValueOf(old).Elem().FieldByName("Status"))
}

// structField returns the named struct field of a pointer-to-struct object.
func structField(obj runtime.Object, name string) any {
	return reflect.ValueOf(obj).Elem().FieldByName(name).Interface()
}

// clearField sets the named struct field of obj to its zero value.
func clearField(obj runtime.Object, name string) {
	f := reflect.ValueOf(obj).Elem().FieldByName(name)
	f.Set(reflect.Zero(f.Type()))
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// admitPod sets what kube-apiserver's default admission plugins set on a
// new pod: the namespace's default service account (ServiceAccount) and
// priority 0 with the PreemptLowerPriority policy when the pod names no
// priority class (Priority).
func admitPod(pod *corev1.Pod, tolerationSeconds int64) {
	spec := &pod.Spec
	addDefaultTolerations(spec, tolerationSeconds)
	if spec.ServiceAccountName == "" {
		spec.ServiceAccountName = spec.DeprecatedServiceAccount
	}
	if spec.ServiceAccountName == "" {
		spec.ServiceAccountName = "default"
	}
	spec.DeprecatedServiceAccount = spec.ServiceAccountName
	if spec.PriorityClassName == "" && spec.Priority == nil {
		zero := int32(0)
		spec.Priority = &zero
	}
	if spec.PreemptionPolicy == nil {
		p := corev1.PreemptLowerPriority
		spec.PreemptionPolicy = &p
	}
}

// NotReadyTaint and UnreachableTaint are the NoExecute taints the node
// lifecycle controller puts on a node whose Ready condition is False and
// Unknown.
const (
	NotReadyTaint    = "node.kubernetes.io/not-ready"
	UnreachableTaint = "node.kubernetes.io/unreachable"
)

// addDefaultTolerations is kube-apiserver's DefaultTolerationSeconds
// admission: a pod that tolerates neither taint's NoExecute effect gets a
// toleration of seconds for it, so that it is evicted that long after its
// node fails (Kubernetes: 300 s).
func addDefaultTolerations(spec *corev1.PodSpec, seconds int64) {
	for _, key := range []string{NotReadyTaint, UnreachableTaint} {
		taint := corev1.Taint{Key: key, Effect: corev1.TaintEffectNoExecute}
		if slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool {
			return (t.Effect == "" || t.Effect == corev1.TaintEffectNoExecute) && (t.Key == key || t.Key == "" && t.Operator == corev1.TolerationOpExists)
		}) {
			continue
		}
		s := seconds
		spec.Tolerations = append(spec.Tolerations, corev1.Toleration{Key: taint.Key, Operator: corev1.TolerationOpExists, Effect: taint.Effect, TolerationSeconds: &s})
	}
}

// podGracePeriod is the grace period of a pod's deletion, as
// kube-apiserver's pod strategy decides it: the one asked for, else the
// pod's terminationGracePeriodSeconds; 0 for a pod no node runs (not
// scheduled, or finished), which goes at once.
func podGracePeriod(obj runtime.Object, requested *int64) int64 {
	pod := obj.(*corev1.Pod)
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return 0
	}
	if requested != nil {
		return *requested
	}
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil && *g >= 0 {
		return *g
	}
	return corev1.DefaultTerminationGracePeriodSeconds
}
