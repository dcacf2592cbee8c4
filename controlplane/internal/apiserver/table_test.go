package apiserver

import (
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestTableColumns checks every served resource's header against the
// kube-apiserver 1.32 column list: names in order, with the wide
// (priority 1) columns marked by a trailing "*".
func TestTableColumns(t *testing.T) {
	want := map[string]string{
		"namespaces":           "Name Status Age",
		"nodes":                "Name Status Roles Age Version Internal-IP* External-IP* OS-Image* Kernel-Version* Container-Runtime*",
		"pods":                 "Name Ready Status Restarts Age IP* Node* Nominated_Node* Readiness_Gates*",
		"services":             "Name Type Cluster-IP External-IP Port(s) Age Selector*",
		"endpoints":            "Name Endpoints Age",
		"configmaps":           "Name Data Age",
		"secrets":              "Name Type Data Age",
		"serviceaccounts":      "Name Secrets Age",
		"events":               "Last_Seen Type Reason Object Subobject* Source* Message First_Seen* Count* Name*",
		"deployments":          "Name Ready Up-to-date Available Age Containers* Images* Selector*",
		"replicasets":          "Name Desired Current Ready Age Containers* Images* Selector*",
		"statefulsets":         "Name Ready Age Containers* Images*",
		"daemonsets":           "Name Desired Current Ready Up-to-date Available Node_Selector Age Containers* Images* Selector*",
		"controllerrevisions":  "Name Controller Revision Age",
		"endpointslices":       "Name AddressType Ports Endpoints Age",
		"leases":               "Name Holder Age",
		"jobs":                 "Name Status Completions Duration Age Containers* Images* Selector*",
		"cronjobs":             "Name Schedule Timezone Suspend Active Last_Schedule Age Containers* Images* Selector*",
		"poddisruptionbudgets": "Name Min_Available Max_Unavailable Allowed_Disruptions Age",
		"clusterrolebindings":  "Name Role Age Users* Groups* ServiceAccounts*",
		"clusterroles":         "Name Created_At",
		"rolebindings":         "Name Role Age Users* Groups* ServiceAccounts*",
		"roles":                "Name Created_At",
	}
	rs := resources(DefaultTolerationSeconds)
	if len(rs) != len(want) {
		t.Errorf("got %d served resources, want %d: a new resource needs its columns here", len(rs), len(want))
	}
	for _, r := range rs {
		var got []string
		for _, c := range r.columns {
			name := strings.ReplaceAll(c.def.Name, " ", "_")
			if c.def.Priority == 1 {
				name += "*"
			}
			got = append(got, name)
			if c.def.Description == "" {
				t.Errorf("%s: column %s has no description", r.gvr.Resource, c.def.Name)
			}
		}
		if g := strings.Join(got, " "); g != want[r.gvr.Resource] {
			t.Errorf("%s: got columns %q, want %q", r.gvr.Resource, g, want[r.gvr.Resource])
		}

		// An empty object renders one cell per column, typed as declared
		// (upstream's event Count is a "string" column holding a number).
		tab, err := table(r, []runtime.Object{r.reg.New()}, time.Now(), includeNone, true)
		if err != nil {
			t.Fatalf("%s: rendering an empty object: %v", r.gvr.Resource, err)
		}
		cells := tab.Rows[0].Cells
		if len(cells) != len(r.columns) {
			t.Fatalf("%s: got %d cells, want %d", r.gvr.Resource, len(cells), len(r.columns))
		}
		for i, c := range r.columns {
			wantType := map[string]string{"string": "string", "date": "string", "integer": "int64"}[c.def.Type]
			if r.gvr.Resource == "events" && c.def.Name == "Count" {
				wantType = "int64"
			}
			if got := fmt.Sprintf("%T", cells[i]); got != wantType {
				t.Errorf("%s: column %s: got a %s cell, want %s", r.gvr.Resource, c.def.Name, got, wantType)
			}
		}
	}
}

var tableNow = time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)

// ago is a metav1.Time d before tableNow.
func ago(d time.Duration) metav1.Time { return metav1.NewTime(tableNow.Add(-d)) }

func agoPtr(d time.Duration) *metav1.Time {
	t := ago(d)
	return &t
}

func int32Ptr(i int32) *int32 { return &i }

func runningStatus(name string, restarts int32, lastExit time.Duration) corev1.ContainerStatus {
	s := corev1.ContainerStatus{Name: name, Ready: true, RestartCount: restarts,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ago(time.Minute)}}}
	if lastExit > 0 {
		s.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", FinishedAt: ago(lastExit)}
	}
	return s
}

func TestTableRows(t *testing.T) {
	meta := func(name string, age time.Duration) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: "default", CreationTimestamp: ago(age)}
	}
	twoContainers := corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "app", Image: "nginx:1.26"}, {Name: "log", Image: "busybox"}}}
	oneContainer := corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.26"}}}
	tests := []struct {
		name string
		cols []column
		obj  runtime.Object
		want []any
	}{
		{name: "running pod with restarts", cols: podColumns, obj: &corev1.Pod{
			ObjectMeta: meta("p1", 50*time.Hour), Spec: twoContainers,
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.5", PodIPs: []corev1.PodIP{{IP: "10.0.0.5"}},
				ContainerStatuses: []corev1.ContainerStatus{runningStatus("app", 3, 5*time.Minute), runningStatus("log", 1, time.Hour)}},
		}, want: []any{"p1", "2/2", "Running", "4 (5m ago)", "2d2h", "10.0.0.5", "node-1", "<none>", "<none>"}},
		{name: "pending pod", cols: podColumns, obj: &corev1.Pod{
			ObjectMeta: meta("p2", 30*time.Second), Spec: oneContainer, Status: corev1.PodStatus{Phase: corev1.PodPending},
		}, want: []any{"p2", "0/1", "Pending", "0", "30s", "<none>", "<none>", "<none>", "<none>"}},
		{name: "pending pod waiting for its image", cols: podColumns, obj: &corev1.Pod{
			ObjectMeta: meta("p3", 90*time.Second), Spec: oneContainer,
			Status: corev1.PodStatus{Phase: corev1.PodPending, NominatedNodeName: "node-2", ContainerStatuses: []corev1.ContainerStatus{
				{Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}},
		}, want: []any{"p3", "0/1", "ContainerCreating", "0", "90s", "<none>", "<none>", "node-2", "<none>"}},
		{name: "terminating pod", cols: podColumns, obj: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p4", CreationTimestamp: ago(10 * time.Minute), DeletionTimestamp: agoPtr(0)}, Spec: oneContainer,
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: "10.0.0.6"}}, ContainerStatuses: []corev1.ContainerStatus{runningStatus("app", 0, 0)}},
		}, want: []any{"p4", "1/1", "Terminating", "0", "10m", "10.0.0.6", "<none>", "<none>", "<none>"}},
		{name: "crash looping pod", cols: podColumns, obj: &corev1.Pod{
			ObjectMeta: meta("p5", 3*time.Hour), Spec: oneContainer,
			Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
				Name: "app", RestartCount: 5,
				State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error", FinishedAt: ago(2 * time.Minute)}},
			}}},
		}, want: []any{"p5", "0/1", "CrashLoopBackOff", "5 (2m ago)", "3h", "<none>", "<none>", "<none>", "<none>"}},
		{name: "completed pod", cols: podColumns, obj: &corev1.Pod{
			ObjectMeta: meta("p6", time.Hour), Spec: oneContainer,
			Status: corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{{
				Name: "app", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}}}},
		}, want: []any{"p6", "0/1", "Completed", "0", "60m", "<none>", "<none>", "<none>", "<none>"}},
		{name: "completed pod being deleted stays Completed", cols: podColumns, obj: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p7", CreationTimestamp: ago(time.Hour), DeletionTimestamp: agoPtr(0)}, Spec: oneContainer,
			Status: corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{{
				Name: "app", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}}}},
		}, want: []any{"p7", "0/1", "Completed", "0", "60m", "<none>", "<none>", "<none>", "<none>"}},
		{name: "container exited without a reason", cols: podColumns, obj: &corev1.Pod{
			ObjectMeta: meta("p8", time.Minute), Spec: oneContainer,
			Status: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{
				Name: "app", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137}}}}},
		}, want: []any{"p8", "0/1", "ExitCode:137", "0", "60s", "<none>", "<none>", "<none>", "<none>"}},
		{name: "pod initializing", cols: podColumns, obj: &corev1.Pod{
			ObjectMeta: meta("p9", 5*time.Second),
			Spec:       corev1.PodSpec{InitContainers: []corev1.Container{{Name: "i1"}, {Name: "i2"}}, Containers: oneContainer.Containers},
			Status: corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
				{Name: "i1", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}},
				{Name: "i2", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}},
		}, want: []any{"p9", "0/1", "Init:1/2", "0", "5s", "<none>", "<none>", "<none>", "<none>"}},
		{name: "pod with readiness gates", cols: podColumns, obj: &corev1.Pod{
			ObjectMeta: meta("p10", 2*time.Minute),
			Spec:       corev1.PodSpec{Containers: oneContainer.Containers, ReadinessGates: []corev1.PodReadinessGate{{ConditionType: "lb/ready"}, {ConditionType: "other"}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: "lb/ready", Status: corev1.ConditionTrue}, {Type: "other", Status: corev1.ConditionFalse}},
				ContainerStatuses: []corev1.ContainerStatus{runningStatus("app", 0, 0)}},
		}, want: []any{"p10", "1/1", "Running", "0", "2m", "<none>", "<none>", "<none>", "1/2"}},
		{name: "deployment 2/3", cols: deploymentColumns, obj: &appsv1.Deployment{
			ObjectMeta: meta("web", 10*time.Minute),
			Spec: appsv1.DeploymentSpec{Replicas: int32Ptr(3), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: corev1.PodTemplateSpec{Spec: twoContainers}},
			Status: appsv1.DeploymentStatus{Replicas: 3, ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 2},
		}, want: []any{"web", "2/3", int64(3), int64(2), "10m", "app,log", "nginx:1.26,busybox", "app=web"}},
		{name: "replicaset", cols: replicaSetColumns, obj: &appsv1.ReplicaSet{
			ObjectMeta: meta("web-5d4f", 10*time.Minute),
			Spec: appsv1.ReplicaSetSpec{Replicas: int32Ptr(3), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "pod-template-hash": "5d4f"}},
				Template: corev1.PodTemplateSpec{Spec: oneContainer}},
			Status: appsv1.ReplicaSetStatus{Replicas: 3, ReadyReplicas: 1},
		}, want: []any{"web-5d4f", int64(3), int64(3), int64(1), "10m", "app", "nginx:1.26", "app=web,pod-template-hash=5d4f"}},
		{name: "statefulset", cols: statefulSetColumns, obj: &appsv1.StatefulSet{
			ObjectMeta: meta("db", 26*time.Hour),
			Spec:       appsv1.StatefulSetSpec{Replicas: int32Ptr(2), Template: corev1.PodTemplateSpec{Spec: oneContainer}},
			Status:     appsv1.StatefulSetStatus{ReadyReplicas: 1},
		}, want: []any{"db", "1/2", "26h", "app", "nginx:1.26"}},
		{name: "daemonset", cols: daemonSetColumns, obj: &appsv1.DaemonSet{
			ObjectMeta: meta("agent", 8*24*time.Hour),
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}},
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/os": "linux"}, Containers: oneContainer.Containers}}},
			Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, NumberReady: 2, UpdatedNumberScheduled: 1, NumberAvailable: 2},
		}, want: []any{"agent", int64(3), int64(3), int64(2), int64(1), int64(2), "kubernetes.io/os=linux", "8d", "app", "nginx:1.26", "app in (a,b)"}},
		{name: "NodePort service", cols: serviceColumns, obj: &corev1.Service{
			ObjectMeta: meta("np", time.Hour),
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"}, Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP}, {Port: 443, NodePort: 30443, Protocol: corev1.ProtocolTCP}}},
		}, want: []any{"np", "NodePort", "10.96.0.10", "<none>", "80:30080/TCP,443:30443/TCP", "60m", "app=web"}},
		{name: "headless service", cols: serviceColumns, obj: &corev1.Service{
			ObjectMeta: meta("hl", 3*time.Hour),
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "None", ClusterIPs: []string{"None"},
				Ports: []corev1.ServicePort{{Port: 5353, Protocol: corev1.ProtocolUDP}}},
		}, want: []any{"hl", "ClusterIP", "None", "<none>", "5353/UDP", "3h", "<none>"}},
		{name: "pending load balancer", cols: serviceColumns, obj: &corev1.Service{
			ObjectMeta: meta("lb", time.Minute),
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.96.0.11"},
		}, want: []any{"lb", "LoadBalancer", "10.96.0.11", "<pending>", "<none>", "60s", "<none>"}},
		{name: "external name service", cols: serviceColumns, obj: &corev1.Service{
			ObjectMeta: meta("ext", time.Minute),
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"},
		}, want: []any{"ext", "ExternalName", "<none>", "example.com", "<none>", "60s", "<none>"}},
		{name: "ready node with roles", cols: nodeColumns, obj: &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "node-1", CreationTimestamp: ago(7 * time.Second), Labels: map[string]string{
				"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "", "kubernetes.io/hostname": "node-1"}},
			Status: corev1.NodeStatus{
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse}, {Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
				Addresses:  []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "node-1"}, {Type: corev1.NodeInternalIP, Address: "192.168.0.10"}},
				NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: "v1.32.4", OSImage: "Debian GNU/Linux 12", KernelVersion: "6.1.0", ContainerRuntimeVersion: "containerd://1.7.0"},
			},
		}, want: []any{"node-1", "Ready", "control-plane,worker", "7s", "v1.32.4", "192.168.0.10", "<none>", "Debian GNU/Linux 12", "6.1.0", "containerd://1.7.0"}},
		{name: "cordoned node not ready", cols: nodeColumns, obj: &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "node-2", CreationTimestamp: ago(49 * time.Hour)},
			Spec:       corev1.NodeSpec{Unschedulable: true},
			Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown}}},
		}, want: []any{"node-2", "NotReady,SchedulingDisabled", "<none>", "2d1h", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"}},
		{name: "new node without conditions", cols: nodeColumns, obj: &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "node-3", CreationTimestamp: ago(time.Second), Labels: map[string]string{"kubernetes.io/role": "edge"}},
		}, want: []any{"node-3", "Unknown", "edge", "1s", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"}},
		{name: "event", cols: eventColumns, obj: &corev1.Event{
			ObjectMeta:     meta("p1.17f3a", time.Hour),
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "p1", FieldPath: "spec.containers{app}"},
			Type:           corev1.EventTypeWarning, Reason: "BackOff", Message: "Back-off restarting failed container\n",
			Source:         corev1.EventSource{Component: "kubelet", Host: "node-1"},
			FirstTimestamp: ago(time.Hour), LastTimestamp: ago(5 * time.Minute), Count: 7,
		}, want: []any{"5m", "Warning", "BackOff", "pod/p1", "spec.containers{app}", "kubelet, node-1", "Back-off restarting failed container", "60m", int64(7), "p1.17f3a"}},
		{name: "events.k8s.io style event", cols: eventColumns, obj: &corev1.Event{
			ObjectMeta:     meta("web.1", 3*time.Minute),
			InvolvedObject: corev1.ObjectReference{Kind: "Deployment", Name: "web"},
			Type:           corev1.EventTypeNormal, Reason: "ScalingReplicaSet", Message: "Scaled up replica set web-5d4f to 3",
			EventTime: metav1.NewMicroTime(tableNow.Add(-3 * time.Minute)), ReportingController: "deployment-controller",
		}, want: []any{"3m", "Normal", "ScalingReplicaSet", "deployment/web", "", "deployment-controller", "Scaled up replica set web-5d4f to 3", "3m", int64(1), "web.1"}},
		{name: "endpoints with more than three addresses", cols: endpointsColumns, obj: &corev1.Endpoints{ //lint:ignore SA1019 core/v1 Endpoints are served
			ObjectMeta: meta("web", 20*time.Minute),
			Subsets: []corev1.EndpointSubset{ //lint:ignore SA1019 core/v1 Endpoints are served
				{Addresses: []corev1.EndpointAddress{{IP: "10.0.0.1"}, {IP: "10.0.0.2"}}, Ports: []corev1.EndpointPort{{Port: 80}}},
				{Addresses: []corev1.EndpointAddress{{IP: "10.0.0.3"}, {IP: "fd00::4"}}, Ports: []corev1.EndpointPort{{Port: 8080}}},
			},
		}, want: []any{"web", "10.0.0.1:80,10.0.0.2:80,10.0.0.3:8080 + 1 more...", "20m"}},
		{name: "endpoints without subsets", cols: endpointsColumns, obj: &corev1.Endpoints{ObjectMeta: meta("empty", time.Minute)}, //lint:ignore SA1019 core/v1 Endpoints are served
			want: []any{"empty", "<none>", "60s"}},
		{name: "namespace", cols: namespaceColumns, obj: &corev1.Namespace{ObjectMeta: meta("team-a", 400*24*time.Hour), Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating}},
			want: []any{"team-a", "Terminating", "400d"}},
		{name: "configmap", cols: configMapColumns, obj: &corev1.ConfigMap{ObjectMeta: meta("c1", time.Minute), Data: map[string]string{"a": "b"}, BinaryData: map[string][]byte{"c": nil}},
			want: []any{"c1", int64(2), "60s"}},
		{name: "secret", cols: secretColumns, obj: &corev1.Secret{ObjectMeta: meta("tls", time.Minute), Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": nil, "tls.key": nil}},
			want: []any{"tls", "kubernetes.io/tls", int64(2), "60s"}},
		{name: "serviceaccount", cols: serviceAccountColumns, obj: &corev1.ServiceAccount{ObjectMeta: meta("default", time.Minute), Secrets: []corev1.ObjectReference{{Name: "t"}}},
			want: []any{"default", int64(1), "60s"}},
		{name: "controllerrevision", cols: controllerRevisionColumns, obj: &appsv1.ControllerRevision{
			ObjectMeta: metav1.ObjectMeta{Name: "ds-1", CreationTimestamp: ago(time.Minute), OwnerReferences: []metav1.OwnerReference{
				{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "ds", Controller: ptr(true)}}},
			Revision: 3,
		}, want: []any{"ds-1", "daemonset.apps/ds", int64(3), "60s"}},
		{name: "controllerrevision without controller", cols: controllerRevisionColumns, obj: &appsv1.ControllerRevision{ObjectMeta: meta("r", time.Minute)},
			want: []any{"r", "<none>", int64(0), "60s"}},
		{name: "endpointslice", cols: endpointSliceColumns, obj: &discoveryv1.EndpointSlice{
			ObjectMeta: meta("web-abc", time.Minute), AddressType: discoveryv1.AddressTypeIPv4,
			Ports:     []discoveryv1.EndpointPort{{Port: ptr(int32(80))}, {Name: ptr("metrics")}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}}, {Addresses: []string{"10.0.0.2", "10.0.0.3"}}, {Addresses: []string{"10.0.0.4"}}},
		}, want: []any{"web-abc", "IPv4", "80,metrics", "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...", "60s"}},
		{name: "empty endpointslice", cols: endpointSliceColumns, obj: &discoveryv1.EndpointSlice{ObjectMeta: meta("e", time.Minute), AddressType: discoveryv1.AddressTypeIPv4},
			want: []any{"e", "IPv4", "<unset>", "<unset>", "60s"}},
		{name: "lease", cols: leaseColumns, obj: &coordinationv1.Lease{ObjectMeta: meta("node-1", time.Minute), Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr("node-1")}},
			want: []any{"node-1", "node-1", "60s"}},
		{name: "role", cols: roleColumns, obj: &rbacv1.Role{ObjectMeta: meta("pod-reader", 90*time.Minute)},
			want: []any{"pod-reader", "2026-01-02T10:30:00Z"}},
		{name: "rolebinding", cols: roleBindingColumns, obj: &rbacv1.RoleBinding{ObjectMeta: meta("read", time.Minute),
			RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "view"},
			Subjects: []rbacv1.Subject{{Kind: "User", Name: "jane"}, {Kind: "ServiceAccount", Namespace: "ci", Name: "runner"},
				{Kind: "Group", Name: "devs"}, {Kind: "User", Name: "joe"}},
		}, want: []any{"read", "ClusterRole/view", "60s", "jane, joe", "devs", "ci/runner"}},
		{name: "clusterrolebinding without subjects", cols: clusterRoleBindingColumns, obj: &rbacv1.ClusterRoleBinding{ObjectMeta: meta("admins", time.Minute),
			RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "cluster-admin"}},
			want: []any{"admins", "ClusterRole/cluster-admin", "60s", "", "", ""}},
		{name: "zero creation time", cols: configMapColumns, obj: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c0"}},
			want: []any{"c0", int64(0), "<unknown>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := table(&resource{columns: tt.cols}, []runtime.Object{tt.obj}, tableNow, includeNone, true)
			if err != nil {
				t.Fatal(err)
			}
			if got := tab.Rows[0].Cells; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got cells %#v, want %#v", got, tt.want)
			}
		})
	}
}

// TestKubectlTables prints the server's tables with the real kubectl and
// compares whole lines: the header exactly, rows up to the AGE value.
func TestKubectlTables(t *testing.T) {
	ts := startServer(t)
	k := newKubectl(t, ts.URL)
	api := ts.URL + "/api/v1"
	now := time.Now().UTC()
	// Whole days: the event's LAST SEEN and FIRST SEEN cannot tick while
	// the test runs (HumanDuration drops seconds beyond an hour).
	stamp := func(d time.Duration) string { return now.Add(-d).Format(time.RFC3339) }
	mustDo(t, http.StatusCreated, "POST", api+"/nodes", "application/json", `{"metadata":{"name":"node-1","labels":{"node-role.kubernetes.io/control-plane":""}},
		"status":{"conditions":[{"type":"Ready","status":"True"}],"addresses":[{"type":"InternalIP","address":"192.168.0.10"}],
		"nodeInfo":{"kubeletVersion":"v1.32.4","osImage":"Debian GNU/Linux 12","kernelVersion":"6.1.0","containerRuntimeVersion":"containerd://1.7.0"}}}`, nil)
	mustDo(t, http.StatusCreated, "POST", api+"/namespaces/default/pods", "application/json",
		`{"metadata":{"name":"p1"},"spec":{"nodeName":"node-1","containers":[{"name":"app","image":"nginx:1.26"}]}}`, nil)
	// The finalizer keeps the deleted pod, Terminating, until removed.
	mustDo(t, http.StatusCreated, "POST", api+"/namespaces/default/pods", "application/json",
		`{"metadata":{"name":"p2","finalizers":["skiff.test/hold"]},"spec":{"containers":[{"name":"app","image":"nginx:1.26"}]}}`, nil)
	mustDo(t, http.StatusOK, "DELETE", api+"/namespaces/default/pods/p2", "", "", nil)
	mustDo(t, http.StatusCreated, "POST", api+"/namespaces/default/services", "application/json",
		`{"metadata":{"name":"np"},"spec":{"type":"NodePort","clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10"],"selector":{"app":"web"},
		"ports":[{"name":"http","port":80,"nodePort":30080},{"name":"https","port":443,"nodePort":30443}]}}`, nil)
	mustDo(t, http.StatusCreated, "POST", api+"/namespaces/default/services", "application/json",
		`{"metadata":{"name":"hl"},"spec":{"clusterIP":"None","clusterIPs":["None"],"ports":[{"port":53,"protocol":"UDP"}]}}`, nil)
	mustDo(t, http.StatusCreated, "POST", api+"/namespaces/default/endpoints", "application/json",
		`{"metadata":{"name":"np"},"subsets":[{"addresses":[{"ip":"10.0.0.1"},{"ip":"10.0.0.2"},{"ip":"10.0.0.3"},{"ip":"10.0.0.4"}],"ports":[{"port":80}]}]}`, nil)
	mustDo(t, http.StatusCreated, "POST", api+"/namespaces/default/events", "application/json", fmt.Sprintf(
		`{"metadata":{"name":"p1.1"},"involvedObject":{"kind":"Pod","name":"p1","namespace":"default"},"type":"Normal","reason":"Scheduled",
		"message":"Successfully assigned default/p1 to node-1","source":{"component":"default-scheduler"},"firstTimestamp":%q,"lastTimestamp":%q,"count":2}`,
		stamp(72*time.Hour), stamp(48*time.Hour)), nil)
	for _, args := range [][]string{
		{"create", "deployment", "web", "--image=nginx:1.26"},
		{"create", "role", "pod-reader", "--verb=get,list", "--resource=pods"},
		{"create", "rolebinding", "read-pods", "--role=pod-reader", "--user=jane", "--group=devs", "--serviceaccount=ci:runner"},
	} {
		if _, errOut, code := k.run(t, args...); code != 0 {
			t.Fatalf("kubectl %s: exit code %d: %s", strings.Join(args, " "), code, errOut)
		}
	}

	const age = `\d+s +` // AGE: seconds since this test created the object
	tests := []struct {
		args   []string
		header string   // the exact first line
		rows   []string // regular expressions for the following lines, in order
	}{
		{args: []string{"get", "deploy", "-o", "wide"},
			header: "NAME   READY   UP-TO-DATE   AVAILABLE   AGE   CONTAINERS   IMAGES       SELECTOR",
			rows:   []string{`^web    0/1     0            0           ` + age + `nginx        nginx:1\.26   app=web$`}},
		{args: []string{"get", "svc"},
			header: "NAME   TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)                      AGE",
			rows: []string{
				`^hl     ClusterIP   None         <none>        53/UDP                       \d+s$`,
				`^np     NodePort    10\.96\.0\.10   <none>        80:30080/TCP,443:30443/TCP   \d+s$`,
			}},
		{args: []string{"get", "pods", "-o", "wide"},
			header: "NAME   READY   STATUS        RESTARTS   AGE   IP       NODE     NOMINATED NODE   READINESS GATES",
			rows: []string{
				`^p1     0/1     Pending       0          ` + age + `<none>   node-1   <none>           <none>$`,
				`^p2     0/1     Terminating   0          ` + age + `<none>   <none>   <none>           <none>$`,
			}},
		{args: []string{"get", "events"},
			header: "LAST SEEN   TYPE     REASON      OBJECT   MESSAGE",
			rows:   []string{`^2d          Normal   Scheduled   pod/p1   Successfully assigned default/p1 to node-1$`}},
		{args: []string{"get", "events", "-o", "wide"},
			header: "LAST SEEN   TYPE     REASON      OBJECT   SUBOBJECT   SOURCE              MESSAGE                                      FIRST SEEN   COUNT   NAME",
			rows:   []string{`^2d          Normal   Scheduled   pod/p1               default-scheduler   Successfully assigned default/p1 to node-1   3d           2       p1\.1$`}},
		{args: []string{"get", "nodes", "-o", "wide"},
			header: "NAME     STATUS   ROLES           AGE   VERSION   INTERNAL-IP    EXTERNAL-IP   OS-IMAGE              KERNEL-VERSION   CONTAINER-RUNTIME",
			rows:   []string{`^node-1   Ready    control-plane   ` + age + `v1\.32\.4   192\.168\.0\.10   <none>        Debian GNU/Linux 12   6\.1\.0            containerd://1\.7\.0$`}},
		{args: []string{"get", "roles"},
			header: "NAME         CREATED AT",
			rows:   []string{`^pod-reader   \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`}},
		{args: []string{"get", "rolebindings", "-o", "wide"},
			header: "NAME        ROLE              AGE   USERS   GROUPS   SERVICEACCOUNTS",
			rows:   []string{`^read-pods   Role/pod-reader   ` + age + `jane    devs     ci/runner$`}},
		{args: []string{"get", "ep"},
			header: "NAME   ENDPOINTS                                         AGE",
			rows:   []string{`^np     10\.0\.0\.1:80,10\.0\.0\.2:80,10\.0\.0\.3:80 \+ 1 more\.\.\.   \d+s$`}},
	}
	for _, tt := range tests {
		cmd := "kubectl " + strings.Join(tt.args, " ")
		out, errOut, code := k.run(t, tt.args...)
		if code != 0 {
			t.Errorf("%s: got exit code %d, want 0 (stderr %q)", cmd, code, errOut)
			continue
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if lines[0] != tt.header {
			t.Errorf("%s: got header\n%q, want\n%q", cmd, lines[0], tt.header)
		}
		if len(lines)-1 != len(tt.rows) {
			t.Errorf("%s: got %d rows, want %d:\n%s", cmd, len(lines)-1, len(tt.rows), out)
			continue
		}
		for i, re := range tt.rows {
			if !regexp.MustCompile(re).MatchString(lines[i+1]) {
				t.Errorf("%s: got row %q, want it to match %q", cmd, lines[i+1], re)
			}
		}
	}
}

func TestTablePodRowConditions(t *testing.T) {
	tests := []struct {
		phase      corev1.PodPhase
		wantReason string // of the Completed condition; "" for none
	}{
		{corev1.PodRunning, ""},
		{corev1.PodPending, ""},
		{corev1.PodSucceeded, "Succeeded"},
		{corev1.PodFailed, "Failed"},
	}
	for _, tt := range tests {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: corev1.PodStatus{Phase: tt.phase}}
		tab, err := table(&resource{columns: podColumns}, []runtime.Object{p}, tableNow, includeNone, true)
		if err != nil {
			t.Fatal(err)
		}
		conds := tab.Rows[0].Conditions
		var got string
		if len(conds) == 1 && conds[0].Type == metav1.RowCompleted && conds[0].Status == metav1.ConditionTrue {
			got = conds[0].Reason
		}
		if got != tt.wantReason || (tt.wantReason == "" && len(conds) != 0) {
			t.Errorf("%s pod: got row conditions %+v, want Completed=%q", tt.phase, conds, tt.wantReason)
		}
	}
}

func ptr[T any](v T) *T { return &v }
