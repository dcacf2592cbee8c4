package apiserver

// The core/v1 table columns. Column names, types, priorities and cell
// formats follow kube-apiserver 1.32 (pkg/printers/internalversion), so that
// kubectl get prints what Kubernetes users know; each function names the
// upstream printer it matches.

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

var podColumns = []column{
	nameColumn,
	{def: stringCol("Ready", "The aggregate readiness state of this pod for accepting traffic."), cell: func(obj runtime.Object, now time.Time) any {
		return podSummary(obj.(*corev1.Pod), now).ready
	}},
	{def: stringCol("Status", "The aggregate status of the containers in this pod."), cell: func(obj runtime.Object, now time.Time) any {
		return podSummary(obj.(*corev1.Pod), now).status
	}},
	{def: stringCol("Restarts", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."), cell: func(obj runtime.Object, now time.Time) any {
		return podSummary(obj.(*corev1.Pod), now).restarts
	}},
	ageColumn,
	{def: wide(stringCol("IP", corev1.PodStatus{}.SwaggerDoc()["podIP"])), cell: func(obj runtime.Object, _ time.Time) any {
		st := obj.(*corev1.Pod).Status
		if len(st.PodIPs) > 0 {
			return orNone(st.PodIPs[0].IP)
		}
		return orNone(st.PodIP)
	}},
	{def: wide(stringCol("Node", corev1.PodSpec{}.SwaggerDoc()["nodeName"])), cell: func(obj runtime.Object, _ time.Time) any {
		return orNone(obj.(*corev1.Pod).Spec.NodeName)
	}},
	{def: wide(stringCol("Nominated Node", corev1.PodStatus{}.SwaggerDoc()["nominatedNodeName"])), cell: func(obj runtime.Object, _ time.Time) any {
		return orNone(obj.(*corev1.Pod).Status.NominatedNodeName)
	}},
	{def: wide(stringCol("Readiness Gates", corev1.PodSpec{}.SwaggerDoc()["readinessGates"])), cell: func(obj runtime.Object, _ time.Time) any {
		return readinessGates(obj.(*corev1.Pod))
	}},
}

// podRow is the READY, STATUS and RESTARTS cells of a pod, which upstream's
// printPod computes together.
type podRow struct {
	ready, status, restarts string
}

// podSummary is upstream's printPod: STATUS starts from the phase (or
// status.reason), is replaced by the first unfinished init container's
// state ("Init:1/2", "Init:CrashLoopBackOff") and then by the last
// non-running container's waiting or terminated reason ("CrashLoopBackOff",
// "Completed", "ExitCode:1"); a pod being deleted is "Terminating". Sidecars
// (init containers with restartPolicy Always) count as containers.
func podSummary(p *corev1.Pod, now time.Time) podRow {
	var (
		restarts, sidecarRestarts     int32
		total                         = len(p.Spec.Containers)
		ready                         int
		lastRestart, lastSidecarStart metav1.Time
	)
	reason := string(p.Status.Phase)
	if p.Status.Reason != "" {
		reason = p.Status.Reason
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonSchedulingGated {
			reason = corev1.PodReasonSchedulingGated
		}
	}
	sidecars := map[string]bool{}
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars[c.Name] = true
			total++
		}
	}
	later := func(latest *metav1.Time, s corev1.ContainerStatus) {
		if t := s.LastTerminationState.Terminated; t != nil && latest.Before(&t.FinishedAt) {
			*latest = t.FinishedAt
		}
	}

	initializing := false
	for i, s := range p.Status.InitContainerStatuses {
		restarts += s.RestartCount
		later(&lastRestart, s)
		if sidecars[s.Name] {
			sidecarRestarts += s.RestartCount
			later(&lastSidecarStart, s)
		}
		term := s.State.Terminated
		switch {
		case term != nil && term.ExitCode == 0:
			continue
		case sidecars[s.Name] && s.Started != nil && *s.Started:
			if s.Ready {
				ready++
			}
			continue
		case term != nil:
			switch {
			case term.Reason != "":
				reason = "Init:" + term.Reason
			case term.Signal != 0:
				reason = fmt.Sprintf("Init:Signal:%d", term.Signal)
			default:
				reason = fmt.Sprintf("Init:ExitCode:%d", term.ExitCode)
			}
		case s.State.Waiting != nil && s.State.Waiting.Reason != "" && s.State.Waiting.Reason != "PodInitializing":
			reason = "Init:" + s.State.Waiting.Reason
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(p.Spec.InitContainers))
		}
		initializing = true
		break
	}

	if !initializing || podCondition(p, corev1.PodInitialized) {
		restarts, lastRestart = sidecarRestarts, lastSidecarStart
		running := false
		for i := len(p.Status.ContainerStatuses) - 1; i >= 0; i-- {
			s := p.Status.ContainerStatuses[i]
			restarts += s.RestartCount
			later(&lastRestart, s)
			switch term := s.State.Terminated; {
			case s.State.Waiting != nil && s.State.Waiting.Reason != "":
				reason = s.State.Waiting.Reason
			case term != nil && term.Reason != "":
				reason = term.Reason
			case term != nil && term.Signal != 0:
				reason = fmt.Sprintf("Signal:%d", term.Signal)
			case term != nil:
				reason = fmt.Sprintf("ExitCode:%d", term.ExitCode)
			case s.Ready && s.State.Running != nil:
				running = true
				ready++
			}
		}
		// A pod whose last container completed while another still runs
		// is not Completed.
		if reason == "Completed" && running {
			reason = "NotReady"
			if podCondition(p, corev1.PodReady) {
				reason = "Running"
			}
		}
	}

	terminal := p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	switch {
	case p.DeletionTimestamp != nil && p.Status.Reason == "NodeLost":
		reason = "Unknown"
	case p.DeletionTimestamp != nil && !terminal:
		reason = "Terminating"
	}

	restartCell := strconv.Itoa(int(restarts))
	if restarts != 0 && !lastRestart.IsZero() {
		restartCell = fmt.Sprintf("%d (%s ago)", restarts, since(lastRestart, now))
	}
	return podRow{ready: fmt.Sprintf("%d/%d", ready, total), status: reason, restarts: restartCell}
}

// podRowConditions marks the rows of finished pods Completed, as upstream
// does, so that clients can tell them from live ones.
func podRowConditions(p *corev1.Pod) []metav1.TableRowCondition {
	switch p.Status.Phase {
	case corev1.PodSucceeded:
		return []metav1.TableRowCondition{{Type: metav1.RowCompleted, Status: metav1.ConditionTrue, Reason: string(p.Status.Phase), Message: "The pod has completed successfully."}}
	case corev1.PodFailed:
		return []metav1.TableRowCondition{{Type: metav1.RowCompleted, Status: metav1.ConditionTrue, Reason: string(p.Status.Phase), Message: "The pod failed."}}
	}
	return nil
}

// podCondition reports whether the pod's condition of type t is True.
func podCondition(p *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readinessGates is "true/total" over the pod's readiness gates, or <none>.
func readinessGates(p *corev1.Pod) string {
	if len(p.Spec.ReadinessGates) == 0 {
		return "<none>"
	}
	n := 0
	for _, g := range p.Spec.ReadinessGates {
		if podCondition(p, g.ConditionType) {
			n++
		}
	}
	return fmt.Sprintf("%d/%d", n, len(p.Spec.ReadinessGates))
}

var serviceDoc = corev1.ServiceSpec{}.SwaggerDoc()

var serviceColumns = []column{
	nameColumn,
	{def: stringCol("Type", serviceDoc["type"]), cell: func(obj runtime.Object, _ time.Time) any {
		return string(obj.(*corev1.Service).Spec.Type)
	}},
	{def: stringCol("Cluster-IP", serviceDoc["clusterIP"]), cell: func(obj runtime.Object, _ time.Time) any {
		spec := obj.(*corev1.Service).Spec
		if len(spec.ClusterIPs) > 0 {
			return spec.ClusterIPs[0]
		}
		// Upstream reads only clusterIPs, which its defaulting always
		// fills from clusterIP; Skiff may store clusterIP alone.
		return orNone(spec.ClusterIP)
	}},
	{def: stringCol("External-IP", serviceDoc["externalIPs"]), cell: func(obj runtime.Object, _ time.Time) any {
		return serviceExternalIP(obj.(*corev1.Service))
	}},
	{def: stringCol("Port(s)", serviceDoc["ports"]), cell: func(obj runtime.Object, _ time.Time) any {
		ports := obj.(*corev1.Service).Spec.Ports
		parts := make([]string, len(ports))
		for i, p := range ports {
			if p.NodePort > 0 {
				parts[i] = fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol)
			} else {
				parts[i] = fmt.Sprintf("%d/%s", p.Port, p.Protocol)
			}
		}
		return orNone(strings.Join(parts, ","))
	}},
	ageColumn,
	{def: wide(stringCol("Selector", serviceDoc["selector"])), cell: func(obj runtime.Object, _ time.Time) any {
		return labels.FormatLabels(obj.(*corev1.Service).Spec.Selector)
	}},
}

// serviceExternalIP is upstream's getServiceExternalIP (in wide mode, as
// the server always renders): external IPs, load balancer ingress, or
// <pending> for a load balancer without either.
func serviceExternalIP(svc *corev1.Service) string {
	switch svc.Spec.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort:
		return orNone(strings.Join(svc.Spec.ExternalIPs, ","))
	case corev1.ServiceTypeLoadBalancer:
		var ips []string
		for _, in := range svc.Status.LoadBalancer.Ingress {
			switch {
			case in.IP != "":
				ips = append(ips, in.IP)
			case in.Hostname != "":
				ips = append(ips, in.Hostname)
			}
		}
		ips = append(ips, svc.Spec.ExternalIPs...)
		if len(ips) == 0 {
			return "<pending>"
		}
		return strings.Join(ips, ",")
	case corev1.ServiceTypeExternalName:
		return svc.Spec.ExternalName
	}
	return "<unknown>"
}

var nodeInfoDoc = corev1.NodeSystemInfo{}.SwaggerDoc()

var nodeColumns = []column{
	nameColumn,
	{def: stringCol("Status", "The status of the node"), cell: func(obj runtime.Object, _ time.Time) any {
		n := obj.(*corev1.Node)
		status := "Unknown"
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				status = "NotReady"
				if c.Status == corev1.ConditionTrue {
					status = "Ready"
				}
			}
		}
		if n.Spec.Unschedulable {
			status += ",SchedulingDisabled"
		}
		return status
	}},
	{def: stringCol("Roles", "The roles of the node"), cell: func(obj runtime.Object, _ time.Time) any {
		return nodeRoles(obj.(*corev1.Node))
	}},
	ageColumn,
	{def: stringCol("Version", nodeInfoDoc["kubeletVersion"]), cell: func(obj runtime.Object, _ time.Time) any {
		return obj.(*corev1.Node).Status.NodeInfo.KubeletVersion
	}},
	{def: wide(stringCol("Internal-IP", corev1.NodeStatus{}.SwaggerDoc()["addresses"])), cell: func(obj runtime.Object, _ time.Time) any {
		return nodeAddress(obj.(*corev1.Node), corev1.NodeInternalIP)
	}},
	{def: wide(stringCol("External-IP", corev1.NodeStatus{}.SwaggerDoc()["addresses"])), cell: func(obj runtime.Object, _ time.Time) any {
		return nodeAddress(obj.(*corev1.Node), corev1.NodeExternalIP)
	}},
	{def: wide(stringCol("OS-Image", nodeInfoDoc["osImage"])), cell: func(obj runtime.Object, _ time.Time) any {
		return orUnknown(obj.(*corev1.Node).Status.NodeInfo.OSImage)
	}},
	{def: wide(stringCol("Kernel-Version", nodeInfoDoc["kernelVersion"])), cell: func(obj runtime.Object, _ time.Time) any {
		return orUnknown(obj.(*corev1.Node).Status.NodeInfo.KernelVersion)
	}},
	{def: wide(stringCol("Container-Runtime", nodeInfoDoc["containerRuntimeVersion"])), cell: func(obj runtime.Object, _ time.Time) any {
		return orUnknown(obj.(*corev1.Node).Status.NodeInfo.ContainerRuntimeVersion)
	}},
}

// nodeRoles lists the roles of the node-role.kubernetes.io/<role> labels
// and the legacy kubernetes.io/role label, sorted and comma-separated.
func nodeRoles(n *corev1.Node) string {
	const prefix = "node-role.kubernetes.io/"
	set := map[string]bool{}
	for k, v := range n.Labels {
		switch {
		case strings.HasPrefix(k, prefix) && len(k) > len(prefix):
			set[k[len(prefix):]] = true
		case k == "kubernetes.io/role" && v != "":
			set[v] = true
		}
	}
	roles := make([]string, 0, len(set))
	for r := range set {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	return orNone(strings.Join(roles, ","))
}

// nodeAddress is the node's first address of type t, or <none>.
func nodeAddress(n *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range n.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return "<none>"
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}

var namespaceColumns = []column{
	nameColumn,
	{def: stringCol("Status", "The status of the namespace"), cell: func(obj runtime.Object, _ time.Time) any {
		return string(obj.(*corev1.Namespace).Status.Phase)
	}},
	ageColumn,
}

var configMapColumns = []column{
	nameColumn,
	{def: intCol("Data", "Number of data entries"), cell: func(obj runtime.Object, _ time.Time) any {
		cm := obj.(*corev1.ConfigMap)
		return int64(len(cm.Data) + len(cm.BinaryData))
	}},
	ageColumn,
}

var secretColumns = []column{
	nameColumn,
	{def: stringCol("Type", corev1.Secret{}.SwaggerDoc()["type"]), cell: func(obj runtime.Object, _ time.Time) any {
		return string(obj.(*corev1.Secret).Type)
	}},
	{def: intCol("Data", "Number of data entries"), cell: func(obj runtime.Object, _ time.Time) any {
		return int64(len(obj.(*corev1.Secret).Data))
	}},
	ageColumn,
}

var serviceAccountColumns = []column{
	nameColumn,
	{def: intCol("Secrets", corev1.ServiceAccount{}.SwaggerDoc()["secrets"]), cell: func(obj runtime.Object, _ time.Time) any {
		return int64(len(obj.(*corev1.ServiceAccount).Secrets))
	}},
	ageColumn,
}

var endpointsColumns = []column{
	nameColumn,
	//lint:ignore SA1019 Kubernetes still serves core/v1 Endpoints and kubectl reads them
	{def: stringCol("Endpoints", corev1.Endpoints{}.SwaggerDoc()["subsets"]), cell: func(obj runtime.Object, _ time.Time) any {
		return formatEndpoints(obj.(*corev1.Endpoints)) //lint:ignore SA1019 see above
	}},
	ageColumn,
}

// maxEndpoints is how many addresses the ENDPOINTS cell lists before
// " + N more...".
const maxEndpoints = 3

// formatEndpoints is upstream's formatEndpoints: "ip:port" for every port
// of every ready address (bare IPs for port-less subsets), at most
// maxEndpoints of them, then " + N more..."; <none> without subsets.
//
//lint:ignore SA1019 Kubernetes still serves core/v1 Endpoints and kubectl reads them
func formatEndpoints(ep *corev1.Endpoints) string {
	if len(ep.Subsets) == 0 {
		return "<none>"
	}
	var list []string
	count := 0
	add := func(s string) {
		count++
		if len(list) < maxEndpoints {
			list = append(list, s)
		}
	}
	for _, ss := range ep.Subsets {
		if len(ss.Ports) == 0 {
			for _, a := range ss.Addresses {
				add(a.IP)
			}
			continue
		}
		for _, p := range ss.Ports {
			for _, a := range ss.Addresses {
				add(net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
			}
		}
	}
	s := strings.Join(list, ",")
	if count > maxEndpoints {
		s += fmt.Sprintf(" + %d more...", count-maxEndpoints)
	}
	return s
}

var eventDoc = corev1.Event{}.SwaggerDoc()

var eventColumns = []column{
	{def: stringCol("Last Seen", eventDoc["lastTimestamp"]), cell: func(obj runtime.Object, now time.Time) any {
		return eventTimes(obj.(*corev1.Event), now).last
	}},
	{def: stringCol("Type", eventDoc["type"]), cell: func(obj runtime.Object, _ time.Time) any {
		return obj.(*corev1.Event).Type
	}},
	{def: stringCol("Reason", eventDoc["reason"]), cell: func(obj runtime.Object, _ time.Time) any {
		return obj.(*corev1.Event).Reason
	}},
	{def: stringCol("Object", eventDoc["involvedObject"]), cell: func(obj runtime.Object, _ time.Time) any {
		o := obj.(*corev1.Event).InvolvedObject
		if o.Name == "" {
			return strings.ToLower(o.Kind)
		}
		return strings.ToLower(o.Kind) + "/" + o.Name
	}},
	{def: wide(stringCol("Subobject", corev1.ObjectReference{}.SwaggerDoc()["fieldPath"])), cell: func(obj runtime.Object, _ time.Time) any {
		return obj.(*corev1.Event).InvolvedObject.FieldPath
	}},
	{def: wide(stringCol("Source", eventDoc["source"])), cell: func(obj runtime.Object, _ time.Time) any {
		e := obj.(*corev1.Event)
		component, instance := firstNonEmpty(e.Source.Component, e.ReportingController), firstNonEmpty(e.Source.Host, e.ReportingInstance)
		if instance == "" {
			return component
		}
		return component + ", " + instance
	}},
	{def: stringCol("Message", eventDoc["message"]), cell: func(obj runtime.Object, _ time.Time) any {
		return strings.TrimSpace(obj.(*corev1.Event).Message)
	}},
	{def: wide(stringCol("First Seen", eventDoc["firstTimestamp"])), cell: func(obj runtime.Object, now time.Time) any {
		return eventTimes(obj.(*corev1.Event), now).first
	}},
	// Upstream declares Count a string column but fills it with a number.
	{def: wide(stringCol("Count", eventDoc["count"])), cell: func(obj runtime.Object, now time.Time) any {
		return eventTimes(obj.(*corev1.Event), now).count
	}},
	{def: wide(nameColumn.def), cell: nameColumn.cell},
}

type eventRow struct {
	last, first string
	count       int64
}

// eventTimes is upstream's printEvent timing: events.k8s.io-style events
// (eventTime, series) fill in for the core timestamps and count.
func eventTimes(e *corev1.Event, now time.Time) eventRow {
	first := since(e.FirstTimestamp, now)
	if e.FirstTimestamp.IsZero() {
		first = sinceMicro(e.EventTime, now)
	}
	last := since(e.LastTimestamp, now)
	if e.LastTimestamp.IsZero() {
		last = first
	}
	count := e.Count
	if e.Series != nil {
		last, count = sinceMicro(e.Series.LastObservedTime, now), e.Series.Count
	} else if count == 0 {
		count = 1 // singleton events of the new API have no count
	}
	return eventRow{last: last, first: first, count: int64(count)}
}

func sinceMicro(t metav1.MicroTime, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return since(metav1.NewTime(t.Time), now)
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
