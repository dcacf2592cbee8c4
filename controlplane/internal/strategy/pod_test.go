package strategy

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestValidatePod(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Pod)
		want   []string
	}{
		{"valid", func(*corev1.Pod) {}, nil},
		{"no containers", func(p *corev1.Pod) { p.Spec.Containers = nil }, []string{"spec.containers: Required value"}},
		{"no image", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "" }, []string{"spec.containers[0].image: Required value"}},
		{"image with spaces", func(p *corev1.Pod) { p.Spec.Containers[0].Image = " nginx" }, []string{"spec.containers[0].image: Invalid value"}},
		{"no container name", func(p *corev1.Pod) { p.Spec.Containers[0].Name = "" }, []string{"spec.containers[0].name: Required value"}},
		{"container name not a DNS label", func(p *corev1.Pod) { p.Spec.Containers[0].Name = "Web_1" }, []string{"spec.containers[0].name: Invalid value"}},
		{"duplicate container names", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, *p.Spec.Containers[0].DeepCopy())
			p.Spec.Containers[1].Ports = nil
		}, []string{"spec.containers[1].name: Duplicate value"}},
		{"init container named like a container", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{withContainerDefaults(corev1.Container{Name: "web", Image: "busybox"})}
		}, []string{"spec.initContainers[0].name: Duplicate value"}},
		{"port 0", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 0 }, []string{"spec.containers[0].ports[0].containerPort: Required value"}},
		{"port too high", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 70000 }, []string{"spec.containers[0].ports[0].containerPort: Invalid value"}},
		{"port name not IANA_SVC_NAME", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].Name = "http_port" }, []string{"spec.containers[0].ports[0].name: Invalid value"}},
		{"duplicate port names", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP})
		}, []string{"spec.containers[0].ports[1].name: Duplicate value"}},
		{"bad protocol", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].Protocol = "ICMP" }, []string{"spec.containers[0].ports[0].protocol: Unsupported value"}},
		{"host port used twice", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{
				{ContainerPort: 80, HostPort: 8080, Protocol: corev1.ProtocolTCP},
				{ContainerPort: 81, HostPort: 8080, Protocol: corev1.ProtocolTCP},
			}
		}, []string{"spec.containers[0].ports[1].hostPort: Duplicate value"}},
		{"env name with '='", func(p *corev1.Pod) { p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A=B"}} }, []string{"spec.containers[0].env[0].name: Invalid value"}},
		{"env name empty", func(p *corev1.Pod) { p.Spec.Containers[0].Env = []corev1.EnvVar{{Value: "x"}} }, []string{"spec.containers[0].env[0].name: Required value"}},
		{"env valueFrom and value", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "x", ValueFrom: &corev1.EnvVarSource{
				SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "k"}}}}
		}, []string{"spec.containers[0].env[0].valueFrom: Invalid value"}},
		{"env fieldRef path unknown", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", ValueFrom: &corev1.EnvVarSource{
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "spec.containers"}}}}
		}, []string{"spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value"}},
		{"envFrom with no source", func(p *corev1.Pod) { p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{Prefix: "X_"}} }, []string{"spec.containers[0].envFrom: Invalid value"}},
		{"duplicate volume names", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{emptyDirVolume("data"), emptyDirVolume("data")}
		}, []string{"spec.volumes[1].name: Duplicate value"}},
		{"volume name not a DNS label", func(p *corev1.Pod) { p.Spec.Volumes = []corev1.Volume{emptyDirVolume("Data")} }, []string{"spec.volumes[0].name: Invalid value"}},
		{"volume with two sources", func(p *corev1.Pod) {
			v := emptyDirVolume("data")
			v.HostPath = &corev1.HostPathVolumeSource{Path: "/tmp", Type: ptrTo(corev1.HostPathUnset)}
			p.Spec.Volumes = []corev1.Volume{v}
		}, []string{"spec.volumes[0].hostPath: Forbidden"}},
		{"volume with no source", func(p *corev1.Pod) { p.Spec.Volumes = []corev1.Volume{{Name: "data"}} }, []string{"spec.volumes[0]: Required value"}},
		{"secret volume without name", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{DefaultMode: ptrTo(int32(0o1777))}}}}
		}, []string{"spec.volumes[0].secret.secretName: Required value", "spec.volumes[0].secret.defaultMode: Invalid value"}},
		{"hostPath with ..", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/../etc"}}}}
		}, []string{"spec.volumes[0].hostPath.path: Invalid value"}},
		{"mount of a missing volume", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
		}, []string{"spec.containers[0].volumeMounts[0].name: Not found"}},
		{"mount without path", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{emptyDirVolume("data")}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data"}}
		}, []string{"spec.containers[0].volumeMounts[0].mountPath: Required value"}},
		{"two mounts at one path", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{emptyDirVolume("a"), emptyDirVolume("b")}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "a", MountPath: "/data"}, {Name: "b", MountPath: "/data"}}
		}, []string{"spec.containers[0].volumeMounts[1].mountPath: Invalid value"}},
		{"restartPolicy", func(p *corev1.Pod) { p.Spec.RestartPolicy = "Sometimes" }, []string{"spec.restartPolicy: Unsupported value"}},
		{"restartPolicy empty", func(p *corev1.Pod) { p.Spec.RestartPolicy = "" }, []string{"spec.restartPolicy: Required value"}},
		{"dnsPolicy", func(p *corev1.Pod) { p.Spec.DNSPolicy = "Cluster" }, []string{"spec.dnsPolicy: Unsupported value"}},
		{"dnsPolicy None without config", func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSNone }, []string{"spec.dnsConfig: Required value"}},
		{"request above limit", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources = corev1.ResourceRequirements{
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")},
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
			}
		}, []string{"spec.containers[0].resources.requests: Invalid value"}},
		{"negative quantity", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("-1Mi")}
		}, []string{"spec.containers[0].resources.requests[memory]: Invalid value"}},
		{"unknown resource", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{"gpu": resource.MustParse("1")}
		}, []string{"spec.containers[0].resources.limits[gpu]: Invalid value"}},
		{"extended resource request without limit", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{"example.com/gpu": resource.MustParse("1")}
		}, []string{"spec.containers[0].resources.limits: Required value"}},
		{"negative grace period", func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptrTo(int64(-1)) }, []string{"spec.terminationGracePeriodSeconds: Invalid value"}},
		{"no grace period", func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = nil }, []string{"spec.terminationGracePeriodSeconds: Required value"}},
		{"nodeName not a DNS subdomain", func(p *corev1.Pod) { p.Spec.NodeName = "Node_1" }, []string{"spec.nodeName: Invalid value"}},
		{"nodeName and scheduling gates", func(p *corev1.Pod) {
			p.Spec.NodeName = "node-1"
			p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/wait"}}
		}, []string{"spec.nodeName: Forbidden"}},
		{"activeDeadlineSeconds 0", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptrTo(int64(0)) }, []string{"spec.activeDeadlineSeconds: Invalid value"}},
		{"probe without handler", func(p *corev1.Pod) {
			p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3}
		}, []string{"spec.containers[0].readinessProbe: Required value"}},
		{"liveness successThreshold", func(p *corev1.Pod) {
			p.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}},
				TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 2, FailureThreshold: 3}
		}, []string{"spec.containers[0].livenessProbe.successThreshold: Invalid value"}},
		{"probe with two handlers", func(p *corev1.Pod) {
			p.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
				Exec: &corev1.ExecAction{Command: []string{"true"}}, TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}},
				TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3}
		}, []string{"spec.containers[0].livenessProbe.tcpSocket: Forbidden"}},
		{"init container probe", func(p *corev1.Pod) {
			c := withContainerDefaults(corev1.Container{Name: "init", Image: "busybox"})
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
			p.Spec.InitContainers = []corev1.Container{c}
		}, []string{"spec.initContainers[0].readinessProbe: Forbidden"}},
		{"toleration without key must be Exists", func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpEqual, Value: "x"}}
		}, []string{"spec.tolerations[0].operator: Invalid value"}},
		{"toleration effect", func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists, Effect: "Never"}}
		}, []string{"spec.tolerations[0].effect: Unsupported value"}},
		{"nodeSelector label", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "not ok"} }, []string{"spec.nodeSelector: Invalid value"}},
		{"ephemeral containers on create", func(p *corev1.Pod) {
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon(
				withContainerDefaults(corev1.Container{Name: "debug", Image: "busybox"}))}}
		}, []string{"spec.ephemeralContainers: Forbidden"}},
		{"affinity weight", func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{
				{Weight: 0, PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: "kubernetes.io/hostname"}}}}}
		}, []string{"spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := defaulted(newPod())
			tc.mutate(pod)
			checkErrs(t, Validate(pod), tc.want...)
		})
	}
}

func withContainerDefaults(c corev1.Container) corev1.Container {
	defaultContainer(&c)
	return c
}

func emptyDirVolume(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

func TestValidatePodMessages(t *testing.T) {
	pod := defaulted(newPod())
	pod.Spec.Containers = nil
	checkMessage(t, Validate(pod), "spec.containers: Required value")

	pod = defaulted(newPod())
	pod.Spec.Containers[0].Image = ""
	checkMessage(t, Validate(pod), "spec.containers[0].image: Required value")

	pod = defaulted(newPod())
	pod.Spec.RestartPolicy = "Sometimes"
	checkMessage(t, Validate(pod), `spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"`)

	pod = defaulted(newPod())
	pod.Spec.Containers[0].Resources = corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")},
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
	}
	checkMessage(t, Validate(pod), `spec.containers[0].resources.requests: Invalid value: "1": must be less than or equal to cpu limit of 500m`)
}

func TestValidatePodUpdate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Pod)
		want   []string
	}{
		{"unchanged", func(*corev1.Pod) {}, nil},
		{"labels only", func(p *corev1.Pod) { p.Labels = map[string]string{"tier": "front"} }, nil},
		{"image", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "nginx:1.28" }, nil},
		{"shorter deadline", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptrTo(int64(30)) }, nil},
		{"added toleration", func(p *corev1.Pod) {
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: "k", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})
		}, nil},
		{"port", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 8080 }, []string{"spec: Forbidden"}},
		{"nodeName", func(p *corev1.Pod) { p.Spec.NodeName = "node-2" }, []string{"spec: Forbidden"}},
		{"restartPolicy", func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyNever }, []string{"spec: Forbidden"}},
		{"grace period", func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptrTo(int64(5)) }, []string{"spec: Forbidden"}},
		{"added container", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, withContainerDefaults(corev1.Container{Name: "side", Image: "busybox"}))
		}, []string{"spec.containers: Forbidden"}},
		{"removed toleration", func(p *corev1.Pod) { p.Spec.Tolerations = nil }, []string{"spec.tolerations: Forbidden"}},
		{"image removed", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "" }, []string{"spec.containers[0].image: Required value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := defaulted(newPod())
			old.Spec.ActiveDeadlineSeconds = ptrTo(int64(60))
			old.Spec.Tolerations = []corev1.Toleration{{Key: "a", Operator: corev1.TolerationOpExists}}
			pod := old.DeepCopy()
			tc.mutate(pod)
			checkErrs(t, ValidateUpdate(pod, old), tc.want...)
		})
	}
}

func TestValidatePodStatusUpdate(t *testing.T) {
	terminated := func(code int32) corev1.ContainerState {
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}
	}
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	for _, tc := range []struct {
		name   string
		policy corev1.RestartPolicy
		old    func(*corev1.Pod) // the stored pod, beyond defaults
		mutate func(*corev1.Pod)
		want   []string
	}{
		{name: "running", mutate: func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.PodIP, p.Status.PodIPs = "10.244.1.5", []corev1.PodIP{{IP: "10.244.1.5"}, {IP: "fd00::5"}}
			p.Status.HostIP, p.Status.HostIPs = "192.168.1.2", []corev1.HostIP{{IP: "192.168.1.2"}}
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: "example.com/gate", Status: corev1.ConditionTrue}}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "web", State: running}}
		}},
		// The spec is the stored one: a spec that would not pass as an
		// update is not checked again.
		{name: "stored spec", old: func(p *corev1.Pod) { p.Spec.Containers[0].Image = "" }, mutate: func(p *corev1.Pod) { p.Status.Phase = corev1.PodRunning }},
		{name: "bad pod IP", mutate: func(p *corev1.Pod) { p.Status.PodIPs = []corev1.PodIP{{IP: "10.244.1"}} }, want: []string{"status.podIPs[0].ip: Invalid value"}},
		{name: "two IPv4 pod IPs", mutate: func(p *corev1.Pod) { p.Status.PodIPs = []corev1.PodIP{{IP: "10.0.0.1"}, {IP: "10.0.0.2"}} },
			want: []string{"status.podIPs: Invalid value"}},
		{name: "hostIPs[0] not hostIP", mutate: func(p *corev1.Pod) {
			p.Status.HostIP, p.Status.HostIPs = "192.168.1.2", []corev1.HostIP{{IP: "192.168.1.3"}}
		}, want: []string{"status.hostIPs[0].ip: Invalid value"}},
		{name: "bad condition type", mutate: func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: "not a name!", Status: corev1.ConditionTrue}}
		}, want: []string{"status.conditions[0].type: Invalid value"}},
		{name: "bad nominated node", mutate: func(p *corev1.Pod) { p.Status.NominatedNodeName = "Node_1" }, want: []string{"status.nominatedNodeName: Invalid value"}},
		{name: "restarted after success, Never", policy: corev1.RestartPolicyNever,
			old: func(p *corev1.Pod) {
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "web", State: terminated(0)}}
			},
			mutate: func(p *corev1.Pod) { p.Status.ContainerStatuses[0].State = running },
			want:   []string{"status.containerStatuses[0].state: Forbidden"}},
		{name: "restarted after failure, OnFailure", policy: corev1.RestartPolicyOnFailure,
			old: func(p *corev1.Pod) {
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "web", State: terminated(1)}}
			},
			mutate: func(p *corev1.Pod) { p.Status.ContainerStatuses[0].State = running }},
		{name: "restarted after success, OnFailure", policy: corev1.RestartPolicyOnFailure,
			old: func(p *corev1.Pod) {
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "web", State: terminated(0)}}
			},
			mutate: func(p *corev1.Pod) { p.Status.ContainerStatuses[0].State = running },
			want:   []string{"status.containerStatuses[0].state: Forbidden"}},
		{name: "restarted, Always",
			old: func(p *corev1.Pod) {
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "web", State: terminated(0)}}
			},
			mutate: func(p *corev1.Pod) { p.Status.ContainerStatuses[0].State = running }},
		{name: "sidecar restarted, Never", policy: corev1.RestartPolicyNever,
			old: func(p *corev1.Pod) {
				always := corev1.ContainerRestartPolicyAlways
				p.Spec.InitContainers = []corev1.Container{withContainerDefaults(corev1.Container{Name: "side", Image: "busybox", RestartPolicy: &always})}
				p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "side", State: terminated(0)}}
			},
			mutate: func(p *corev1.Pod) { p.Status.InitContainerStatuses[0].State = running }},
		{name: "init container restarted, Never", policy: corev1.RestartPolicyNever,
			old: func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{withContainerDefaults(corev1.Container{Name: "init", Image: "busybox"})}
				p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", State: terminated(0)}}
			},
			mutate: func(p *corev1.Pod) { p.Status.InitContainerStatuses[0].State = running },
			want:   []string{"status.initContainerStatuses[0].state: Forbidden"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := defaulted(newPod())
			if tc.policy != "" {
				old.Spec.RestartPolicy = tc.policy
			}
			if tc.old != nil {
				tc.old(old)
			}
			pod := old.DeepCopy()
			tc.mutate(pod)
			checkErrs(t, ValidateStatusUpdate(pod, old), tc.want...)
		})
	}
}

func TestValidateStatusUpdateOtherKinds(t *testing.T) {
	// A kind without rules of its own for status writes is checked as an
	// update.
	old := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}}
	Default(old)
	old.Spec.ClusterIP, old.Spec.ClusterIPs = "10.96.0.20", []string{"10.96.0.20"}
	obj := old.DeepCopy()
	obj.Spec.ClusterIP, obj.Spec.ClusterIPs = "10.96.0.21", []string{"10.96.0.21"}
	if got, want := ValidateStatusUpdate(obj, old), ValidateUpdate(obj, old); len(want) == 0 || len(got) != len(want) {
		t.Errorf("ValidateStatusUpdate = %v, want ValidateUpdate's %v (not empty)", got, want)
	}
	if errs := ValidateStatusUpdate(obj, &corev1.Pod{}); len(errs) != 1 {
		t.Errorf("ValidateStatusUpdate(service, pod) = %v, want an internal error", errs)
	}
}

func TestValidatePodUpdateMessage(t *testing.T) {
	old := defaulted(newPod())
	pod := old.DeepCopy()
	pod.Spec.Containers[0].Ports[0].ContainerPort = 8080
	errs := ValidateUpdate(pod, old)
	if len(errs) != 1 {
		t.Fatalf("got %v, want one error", errs)
	}
	const want = "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"
	if got := errs[0].Error(); !strings.HasPrefix(got, want) || !strings.Contains(got, "containers") {
		t.Errorf("got %q, want it to start with %q and name the changed field", got, want)
	}
}

func TestValidatePodTemplateAndSpec(t *testing.T) {
	tmpl := testTemplate()
	DefaultPodTemplate(&tmpl)
	if errs := ValidatePodTemplate(&tmpl, nil); len(errs) > 0 {
		t.Errorf("ValidatePodTemplate(valid) = %v, want no errors", errs)
	}
	tmpl.Labels["bad key!"] = "x"
	tmpl.Spec.Containers[0].Image = ""
	errs := ValidatePodTemplate(&tmpl, fieldPath("spec", "template"))
	checkErrs(t, errs, "spec.template.labels: Invalid value", "spec.template.spec.containers[0].image: Required value")

	spec := testPodSpec()
	DefaultPodSpec(&spec)
	spec.Containers[0].Image = " padded"
	// Leading spaces are refused in pods only, not in templates.
	checkErrs(t, ValidatePodSpec(&spec, fieldPath("spec")))
}
