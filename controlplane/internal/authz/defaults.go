package authz

import (
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The labels and annotation of the default roles and bindings, as
// kube-apiserver's: AutoupdateAnnotation "true" lets masters add what a
// newer release grants; set it to "false" to keep an edited default as is.
const (
	BootstrappingLabel   = "kubernetes.io/bootstrapping"
	AutoupdateAnnotation = "rbac.authorization.kubernetes.io/autoupdate"
	aggregateLabelPrefix = "rbac.authorization.k8s.io/aggregate-to-"
)

// Groups Kubernetes gives users (GroupAuthenticated lives in authn).
const (
	groupAuthenticated   = "system:authenticated"
	groupUnauthenticated = "system:unauthenticated"
	// NodesGroup holds every node agent (system:node:NAME).
	NodesGroup      = "system:nodes"
	groupMonitoring = "system:monitoring"
)

var (
	read      = []string{"get", "list", "watch"}
	write     = []string{"create", "delete", "deletecollection", "patch", "update"}
	readWrite = []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
)

func rule(verbs []string, group string, resources ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{Verbs: verbs, APIGroups: []string{group}, Resources: resources}
}

func urls(verbs []string, paths ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{Verbs: verbs, NonResourceURLs: paths}
}

func meta(name string, labels map[string]string) metav1.ObjectMeta {
	l := map[string]string{BootstrappingLabel: "rbac-defaults"}
	for k, v := range labels {
		l[k] = v
	}
	return metav1.ObjectMeta{Name: name, Labels: l, Annotations: map[string]string{AutoupdateAnnotation: "true"}}
}

// aggregated is the role name, made of the roles labelled to join it;
// labels make it join others (view joins edit, edit joins admin).
func aggregated(name string, labels map[string]string) rbacv1.ClusterRole {
	return rbacv1.ClusterRole{
		ObjectMeta: meta(name, labels),
		AggregationRule: &rbacv1.AggregationRule{ClusterRoleSelectors: []metav1.LabelSelector{
			{MatchLabels: map[string]string{aggregateLabelPrefix + name: "true"}},
		}},
	}
}

// DefaultClusterRoles are the cluster roles every cluster has, as
// kube-apiserver's bootstrap policy defines them (the ones for the
// resources Skiff serves): cluster-admin; admin, edit and view, aggregated
// from the system:aggregate-to-* roles (and any role labelled to join
// them); system:discovery, system:basic-user, system:public-info-viewer,
// system:monitoring, system:auth-delegator; and system:node, what a node
// agent needs (kubelet, kube-proxy and cluster DNS in one).
func DefaultClusterRoles() []rbacv1.ClusterRole {
	podSubresources := []string{"pods/attach", "pods/exec", "pods/portforward", "pods/proxy"}
	return []rbacv1.ClusterRole{
		{ObjectMeta: meta("cluster-admin", nil), Rules: []rbacv1.PolicyRule{
			rule([]string{"*"}, "*", "*"),
			urls([]string{"*"}, "*"),
		}},
		aggregated("admin", nil),
		aggregated("edit", map[string]string{aggregateLabelPrefix + "admin": "true"}),
		aggregated("view", map[string]string{aggregateLabelPrefix + "edit": "true"}),
		{ObjectMeta: meta("system:aggregate-to-admin", map[string]string{aggregateLabelPrefix + "admin": "true"}), Rules: []rbacv1.PolicyRule{
			rule(readWrite, "rbac.authorization.k8s.io", "rolebindings", "roles"),
			rule([]string{"create"}, "authorization.k8s.io", "localsubjectaccessreviews"),
		}},
		{ObjectMeta: meta("system:aggregate-to-edit", map[string]string{aggregateLabelPrefix + "edit": "true"}), Rules: []rbacv1.PolicyRule{
			rule(read, "", append(podSubresources, "secrets", "services/proxy")...),
			rule([]string{"impersonate"}, "", "serviceaccounts"),
			rule(write, "", append(podSubresources, "pods")...),
			rule([]string{"create"}, "", "pods/eviction"),
			rule(write, "", "configmaps", "events", "persistentvolumeclaims", "replicationcontrollers", "replicationcontrollers/scale",
				"secrets", "serviceaccounts", "services", "services/proxy"),
			rule([]string{"create"}, "", "serviceaccounts/token"),
			rule(write, "apps", "daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
				"replicasets/scale", "statefulsets", "statefulsets/scale"),
			rule(write, "autoscaling", "horizontalpodautoscalers"),
			rule(write, "batch", "cronjobs", "jobs"),
			rule(write, "networking.k8s.io", "ingresses", "networkpolicies"),
			rule(write, "policy", "poddisruptionbudgets"),
			rule(write, "discovery.k8s.io", "endpointslices"),
			rule(write, "coordination.k8s.io", "leases"),
		}},
		{ObjectMeta: meta("system:aggregate-to-view", map[string]string{aggregateLabelPrefix + "view": "true"}), Rules: []rbacv1.PolicyRule{
			rule(read, "", "configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
				"replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services", "services/status"),
			rule(read, "", "bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
				"replicationcontrollers/status", "resourcequotas", "resourcequotas/status"),
			rule(read, "", "namespaces"),
			rule(read, "discovery.k8s.io", "endpointslices"),
			rule(read, "apps", "controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
				"deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets",
				"statefulsets/scale", "statefulsets/status"),
			rule(read, "autoscaling", "horizontalpodautoscalers", "horizontalpodautoscalers/status"),
			rule(read, "batch", "cronjobs", "cronjobs/status", "jobs", "jobs/status"),
			rule(read, "networking.k8s.io", "ingresses", "ingresses/status", "networkpolicies"),
			rule(read, "policy", "poddisruptionbudgets", "poddisruptionbudgets/status"),
			rule(read, "coordination.k8s.io", "leases"),
			rule(read, "events.k8s.io", "events"),
		}},
		{ObjectMeta: meta("system:discovery", nil), Rules: []rbacv1.PolicyRule{
			urls([]string{"get"}, "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"),
		}},
		{ObjectMeta: meta("system:basic-user", nil), Rules: []rbacv1.PolicyRule{
			rule([]string{"create"}, "authorization.k8s.io", "selfsubjectaccessreviews", "selfsubjectrulesreviews"),
			rule([]string{"create"}, "authentication.k8s.io", "selfsubjectreviews"),
		}},
		{ObjectMeta: meta("system:public-info-viewer", nil), Rules: []rbacv1.PolicyRule{
			urls([]string{"get"}, "/healthz", "/livez", "/readyz", "/version", "/version/"),
		}},
		{ObjectMeta: meta("system:monitoring", nil), Rules: []rbacv1.PolicyRule{
			urls([]string{"get"}, "/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/readyz", "/readyz/*"),
		}},
		{ObjectMeta: meta("system:auth-delegator", nil), Rules: []rbacv1.PolicyRule{
			rule([]string{"create"}, "authentication.k8s.io", "tokenreviews"),
			rule([]string{"create"}, "authorization.k8s.io", "subjectaccessreviews"),
		}},
		{ObjectMeta: meta("system:node", nil), Rules: []rbacv1.PolicyRule{
			rule([]string{"create"}, "authentication.k8s.io", "tokenreviews"),
			rule([]string{"create"}, "authorization.k8s.io", "localsubjectaccessreviews", "subjectaccessreviews"),
			rule(readWrite, "", "nodes", "nodes/status"),
			rule(readWrite, "", "pods", "pods/status"),
			rule([]string{"create"}, "", "pods/eviction", "serviceaccounts/token"),
			rule(readWrite, "", "events"),
			rule(readWrite, "events.k8s.io", "events"),
			rule(read, "", "configmaps", "endpoints", "namespaces", "persistentvolumeclaims", "persistentvolumes", "secrets",
				"serviceaccounts", "services"),
			rule(read, "discovery.k8s.io", "endpointslices"),
			rule(readWrite, "coordination.k8s.io", "leases"),
			rule([]string{"create", "get", "list", "watch"}, "certificates.k8s.io", "certificatesigningrequests"),
			rule(read, "storage.k8s.io", "csidrivers", "csinodes", "volumeattachments"),
			rule(read, "node.k8s.io", "runtimeclasses"),
		}},
	}
}

func binding(name, role string, subjects ...rbacv1.Subject) rbacv1.ClusterRoleBinding {
	return rbacv1.ClusterRoleBinding{
		ObjectMeta: meta(name, nil),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   subjects,
	}
}

func group(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: name}
}

// DefaultClusterRoleBindings bind the default roles as kube-apiserver
// does, and system:node to every node (NodesGroup), which kube-apiserver
// leaves to its Node authorizer.
func DefaultClusterRoleBindings() []rbacv1.ClusterRoleBinding {
	return []rbacv1.ClusterRoleBinding{
		binding("cluster-admin", "cluster-admin", group(SuperuserGroup)),
		binding("system:discovery", "system:discovery", group(groupAuthenticated)),
		binding("system:basic-user", "system:basic-user", group(groupAuthenticated)),
		binding("system:public-info-viewer", "system:public-info-viewer", group(groupAuthenticated), group(groupUnauthenticated)),
		binding("system:monitoring", "system:monitoring", group(groupMonitoring)),
		binding("system:node", "system:node", group(NodesGroup)),
	}
}
