package strategy

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// check compares one defaulted field.
func check[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestDefaultPod(t *testing.T) {
	pod := newPod()
	pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox"}}
	c := &pod.Spec.Containers[0]
	c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(80)}}}
	c.Env = []corev1.EnvVar{{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}}
	c.Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "scratch"},
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
		{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}},
		{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/log"}}},
	}
	Default(pod)

	s := &pod.Spec
	check(t, "restartPolicy", s.RestartPolicy, corev1.RestartPolicyAlways)
	check(t, "dnsPolicy", s.DNSPolicy, corev1.DNSClusterFirst)
	check(t, "schedulerName", s.SchedulerName, "default-scheduler")
	check(t, "terminationGracePeriodSeconds", deref(s.TerminationGracePeriodSeconds), any(int64(30)))
	check(t, "enableServiceLinks", deref(s.EnableServiceLinks), any(true))
	check(t, "securityContext set", s.SecurityContext != nil, true)
	check(t, "serviceAccountName", s.ServiceAccountName, "") // admission's job, not defaulting's

	for _, c := range []corev1.Container{s.Containers[0], s.InitContainers[0]} {
		check(t, c.Name+" terminationMessagePath", c.TerminationMessagePath, "/dev/termination-log")
		check(t, c.Name+" terminationMessagePolicy", c.TerminationMessagePolicy, corev1.TerminationMessageReadFile)
	}
	check(t, "imagePullPolicy of a tagged image", s.Containers[0].ImagePullPolicy, corev1.PullIfNotPresent)
	check(t, "imagePullPolicy of an untagged image", s.InitContainers[0].ImagePullPolicy, corev1.PullAlways)
	check(t, "ports[0].protocol", s.Containers[0].Ports[0].Protocol, corev1.ProtocolTCP)
	p := s.Containers[0].LivenessProbe
	check(t, "probe timeoutSeconds", p.TimeoutSeconds, 1)
	check(t, "probe periodSeconds", p.PeriodSeconds, 10)
	check(t, "probe successThreshold", p.SuccessThreshold, 1)
	check(t, "probe failureThreshold", p.FailureThreshold, 3)
	check(t, "probe httpGet.path", p.HTTPGet.Path, "/")
	check(t, "probe httpGet.scheme", p.HTTPGet.Scheme, corev1.URISchemeHTTP)
	check(t, "env fieldRef apiVersion", s.Containers[0].Env[0].ValueFrom.FieldRef.APIVersion, "v1")
	req := s.Containers[0].Resources.Requests[corev1.ResourceCPU]
	check(t, "cpu request defaulted from limit", req.String(), "500m")

	check(t, "volume without source is emptyDir", s.Volumes[0].EmptyDir != nil, true)
	check(t, "configMap defaultMode", deref(s.Volumes[1].ConfigMap.DefaultMode), any(int32(0o644)))
	check(t, "secret defaultMode", deref(s.Volumes[2].Secret.DefaultMode), any(int32(0o644)))
	check(t, "hostPath type", deref(s.Volumes[3].HostPath.Type), any(corev1.HostPathUnset))
}

func TestImagePullPolicy(t *testing.T) {
	for _, tc := range []struct {
		image string
		want  corev1.PullPolicy
	}{
		{"nginx", corev1.PullAlways},
		{"nginx:latest", corev1.PullAlways},
		{"nginx:1.27", corev1.PullIfNotPresent},
		{"localhost:5000/busybox", corev1.PullAlways},
		{"localhost:5000/busybox:1.36", corev1.PullIfNotPresent},
		{"busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", corev1.PullIfNotPresent},
		{"busybox:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", corev1.PullAlways},
	} {
		c := corev1.Container{Image: tc.image}
		defaultContainer(&c)
		check(t, tc.image, c.ImagePullPolicy, tc.want)
	}
}

func TestDefaultHostNetworkPorts(t *testing.T) {
	pod := newPod()
	pod.Spec.HostNetwork = true
	Default(pod)
	check(t, "hostPort", pod.Spec.Containers[0].Ports[0].HostPort, 80)

	// A template leaves hostPort to the pods created from it.
	d := newDeployment()
	d.Spec.Template.Spec.HostNetwork = true
	Default(d)
	check(t, "template hostPort", d.Spec.Template.Spec.Containers[0].Ports[0].HostPort, 0)
}

func TestDefaultKeepsUserValues(t *testing.T) {
	pod := newPod()
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.Spec.DNSPolicy = corev1.DNSDefault
	pod.Spec.TerminationGracePeriodSeconds = ptrTo(int64(5))
	pod.Spec.Containers[0].ImagePullPolicy = corev1.PullNever
	pod.Spec.Containers[0].Ports[0].Protocol = corev1.ProtocolUDP
	Default(pod)
	check(t, "restartPolicy", pod.Spec.RestartPolicy, corev1.RestartPolicyNever)
	check(t, "dnsPolicy", pod.Spec.DNSPolicy, corev1.DNSDefault)
	check(t, "terminationGracePeriodSeconds", *pod.Spec.TerminationGracePeriodSeconds, 5)
	check(t, "imagePullPolicy", pod.Spec.Containers[0].ImagePullPolicy, corev1.PullNever)
	check(t, "protocol", pod.Spec.Containers[0].Ports[0].Protocol, corev1.ProtocolUDP)
}

func TestDefaultWorkloads(t *testing.T) {
	d := defaulted(newDeployment())
	check(t, "deployment replicas", *d.Spec.Replicas, 1)
	check(t, "deployment strategy", d.Spec.Strategy.Type, appsv1.RollingUpdateDeploymentStrategyType)
	check(t, "deployment maxUnavailable", *d.Spec.Strategy.RollingUpdate.MaxUnavailable, intstr.FromString("25%"))
	check(t, "deployment maxSurge", *d.Spec.Strategy.RollingUpdate.MaxSurge, intstr.FromString("25%"))
	check(t, "deployment revisionHistoryLimit", *d.Spec.RevisionHistoryLimit, 10)
	check(t, "deployment progressDeadlineSeconds", *d.Spec.ProgressDeadlineSeconds, 600)
	check(t, "deployment template restartPolicy", d.Spec.Template.Spec.RestartPolicy, corev1.RestartPolicyAlways)
	check(t, "deployment template pull policy", d.Spec.Template.Spec.Containers[0].ImagePullPolicy, corev1.PullIfNotPresent)
	check(t, "deployment template enableServiceLinks (pods only)", d.Spec.Template.Spec.EnableServiceLinks == nil, true)

	recreate := newDeployment()
	recreate.Spec.Strategy.Type = appsv1.RecreateDeploymentStrategyType
	Default(recreate)
	check(t, "recreate has no rollingUpdate", recreate.Spec.Strategy.RollingUpdate == nil, true)

	rs := defaulted(newReplicaSet())
	check(t, "replicaset replicas", *rs.Spec.Replicas, 1)
	check(t, "replicaset template dnsPolicy", rs.Spec.Template.Spec.DNSPolicy, corev1.DNSClusterFirst)

	s := defaulted(newStatefulSet())
	check(t, "statefulset replicas", *s.Spec.Replicas, 1)
	check(t, "statefulset podManagementPolicy", s.Spec.PodManagementPolicy, appsv1.OrderedReadyPodManagement)
	check(t, "statefulset updateStrategy", s.Spec.UpdateStrategy.Type, appsv1.RollingUpdateStatefulSetStrategyType)
	check(t, "statefulset partition", *s.Spec.UpdateStrategy.RollingUpdate.Partition, 0)
	check(t, "statefulset revisionHistoryLimit", *s.Spec.RevisionHistoryLimit, 10)
	check(t, "statefulset whenDeleted", s.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted, appsv1.RetainPersistentVolumeClaimRetentionPolicyType)
	check(t, "statefulset whenScaled", s.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled, appsv1.RetainPersistentVolumeClaimRetentionPolicyType)
	check(t, "statefulset claim volumeMode", *s.Spec.VolumeClaimTemplates[0].Spec.VolumeMode, corev1.PersistentVolumeFilesystem)

	ds := defaulted(newDaemonSet())
	check(t, "daemonset updateStrategy", ds.Spec.UpdateStrategy.Type, appsv1.RollingUpdateDaemonSetStrategyType)
	check(t, "daemonset maxUnavailable", *ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable, intstr.FromInt32(1))
	check(t, "daemonset maxSurge", *ds.Spec.UpdateStrategy.RollingUpdate.MaxSurge, intstr.FromInt32(0))
	check(t, "daemonset revisionHistoryLimit", *ds.Spec.RevisionHistoryLimit, 10)
}

func TestDefaultService(t *testing.T) {
	svc := newService()
	svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "metrics", Port: 9090})
	Default(svc)
	s := &svc.Spec
	check(t, "type", s.Type, corev1.ServiceTypeClusterIP)
	check(t, "sessionAffinity", s.SessionAffinity, corev1.ServiceAffinityNone)
	check(t, "ports[0].protocol", s.Ports[0].Protocol, corev1.ProtocolTCP)
	check(t, "ports[0].targetPort kept", s.Ports[0].TargetPort, intstr.FromString("http"))
	check(t, "ports[1].targetPort is the port", s.Ports[1].TargetPort, intstr.FromInt32(9090))
	check(t, "internalTrafficPolicy", deref(s.InternalTrafficPolicy), any(corev1.ServiceInternalTrafficPolicyCluster))
	check(t, "externalTrafficPolicy (ClusterIP)", s.ExternalTrafficPolicy, "")
	check(t, "clusterIP not allocated", s.ClusterIP, "")
	check(t, "ipFamilyPolicy left to allocation", s.IPFamilyPolicy == nil, true)

	np := newService()
	np.Spec.Type = corev1.ServiceTypeNodePort
	Default(np)
	check(t, "NodePort externalTrafficPolicy", np.Spec.ExternalTrafficPolicy, corev1.ServiceExternalTrafficPolicyCluster)
	check(t, "NodePort nodePort not allocated", np.Spec.Ports[0].NodePort, 0)

	lb := newService()
	lb.Spec.Type = corev1.ServiceTypeLoadBalancer
	Default(lb)
	check(t, "LoadBalancer externalTrafficPolicy", lb.Spec.ExternalTrafficPolicy, corev1.ServiceExternalTrafficPolicyCluster)
	check(t, "LoadBalancer allocateLoadBalancerNodePorts", deref(lb.Spec.AllocateLoadBalancerNodePorts), any(true))

	hl := newService()
	hl.Spec.ClusterIP = corev1.ClusterIPNone
	Default(hl)
	check(t, "headless clusterIPs", len(hl.Spec.ClusterIPs) == 1 && hl.Spec.ClusterIPs[0] == "None", true)
	check(t, "headless ipFamilyPolicy", deref(hl.Spec.IPFamilyPolicy), any(corev1.IPFamilyPolicySingleStack))
	check(t, "headless ipFamilies", len(hl.Spec.IPFamilies) == 1 && hl.Spec.IPFamilies[0] == corev1.IPv4Protocol, true)

	aff := newService()
	aff.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	Default(aff)
	check(t, "ClientIP timeout", *aff.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds, 10800)

	ips := newService()
	ips.Spec.ClusterIPs = []string{"10.96.0.20"}
	Default(ips)
	check(t, "clusterIP from clusterIPs", ips.Spec.ClusterIP, "10.96.0.20")
}

func TestDefaultSecret(t *testing.T) {
	s := newSecret()
	s.StringData = map[string]string{"user": "admin", "password": "override"}
	Default(s)
	check(t, "type", s.Type, corev1.SecretTypeOpaque)
	check(t, "stringData cleared", s.StringData == nil, true)
	check(t, "data[user]", string(s.Data["user"]), "admin")
	check(t, "stringData wins over data", string(s.Data["password"]), "override")
}

func TestDefaultNamespace(t *testing.T) {
	ns := defaulted(newNamespace())
	if !reflect.DeepEqual(ns.Spec.Finalizers, []corev1.FinalizerName{corev1.FinalizerKubernetes}) {
		t.Errorf("finalizers: got %v, want [kubernetes]", ns.Spec.Finalizers)
	}
	check(t, "metadata.name label", ns.Labels[corev1.LabelMetadataName], "team-a")
}

func TestDefaultNode(t *testing.T) {
	n := defaulted(newNode())
	if !reflect.DeepEqual(n.Spec.PodCIDRs, []string{"10.244.1.0/24"}) {
		t.Errorf("podCIDRs: got %v, want [10.244.1.0/24]", n.Spec.PodCIDRs)
	}
	n = newNode()
	n.Spec.PodCIDR, n.Spec.PodCIDRs = "", []string{"10.244.2.0/24"}
	n.Status.Capacity = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}
	Default(n)
	check(t, "podCIDR from podCIDRs", n.Spec.PodCIDR, "10.244.2.0/24")
	alloc := n.Status.Allocatable[corev1.ResourceCPU]
	check(t, "allocatable from capacity", alloc.String(), "2")
}

func TestDefaultEndpoints(t *testing.T) {
	e := defaulted(newEndpoints())
	check(t, "endpoints port protocol", e.Subsets[0].Ports[0].Protocol, corev1.ProtocolTCP)

	s := newEndpointSlice()
	s.Ports = append(s.Ports, discoveryv1.EndpointPort{Port: ptrTo(int32(9090))})
	Default(s)
	check(t, "slice port protocol", deref(s.Ports[0].Protocol), any(corev1.ProtocolTCP))
	check(t, "slice port name", deref(s.Ports[1].Name), any(""))
}
