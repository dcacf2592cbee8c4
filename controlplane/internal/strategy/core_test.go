package strategy

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestValidateSecret(t *testing.T) {
	big := []byte(strings.Repeat("x", corev1.MaxSecretSize/2+1))
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Secret)
		want   []string
	}{
		{"valid", func(*corev1.Secret) {}, nil},
		{"bad key", func(s *corev1.Secret) { s.Data["a/b"] = nil }, []string{"data[a/b]: Invalid value"}},
		{"too big", func(s *corev1.Secret) { s.Data["a"], s.Data["b"] = big, big }, []string{"data: Too long"}},
		{"tls without key", func(s *corev1.Secret) {
			s.Type = corev1.SecretTypeTLS
			s.Data = map[string][]byte{corev1.TLSCertKey: []byte("cert")}
		}, []string{"data[tls.key]: Required value"}},
		{"tls", func(s *corev1.Secret) {
			s.Type = corev1.SecretTypeTLS
			s.Data = map[string][]byte{corev1.TLSCertKey: []byte("cert"), corev1.TLSPrivateKeyKey: []byte("key")}
		}, nil},
		{"dockerconfigjson missing", func(s *corev1.Secret) { s.Type = corev1.SecretTypeDockerConfigJson }, []string{"data[.dockerconfigjson]: Required value"}},
		{"dockerconfigjson not JSON", func(s *corev1.Secret) {
			s.Type = corev1.SecretTypeDockerConfigJson
			s.Data = map[string][]byte{corev1.DockerConfigJsonKey: []byte("{")}
		}, []string{"data[.dockerconfigjson]: Invalid value"}},
		{"dockerconfigjson", func(s *corev1.Secret) {
			s.Type = corev1.SecretTypeDockerConfigJson
			s.Data = map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}
		}, nil},
		{"basic-auth empty", func(s *corev1.Secret) { s.Type, s.Data = corev1.SecretTypeBasicAuth, nil },
			[]string{"data[username]: Required value", "data[password]: Required value"}},
		{"basic-auth password only", func(s *corev1.Secret) { s.Type = corev1.SecretTypeBasicAuth }, nil},
		{"ssh-auth", func(s *corev1.Secret) { s.Type = corev1.SecretTypeSSHAuth }, []string{"data[ssh-privatekey]: Required value"}},
		{"service account token", func(s *corev1.Secret) { s.Type = corev1.SecretTypeServiceAccountToken },
			[]string{"metadata.annotations[kubernetes.io/service-account.name]: Required value"}},
		{"custom type", func(s *corev1.Secret) { s.Type = "example.com/thing" }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := defaulted(newSecret())
			tc.mutate(s)
			checkErrs(t, Validate(s), tc.want...)
		})
	}
}

func TestValidateSecretUpdate(t *testing.T) {
	old := defaulted(newSecret())
	s := old.DeepCopy()
	s.Data["password"] = []byte("new")
	checkErrs(t, ValidateUpdate(s, old))

	s = old.DeepCopy()
	s.Type = corev1.SecretTypeBasicAuth
	checkErrs(t, ValidateUpdate(s, old), "type: Invalid value")
	checkMessage(t, ValidateUpdate(s, old), `type: Invalid value: "kubernetes.io/basic-auth": field is immutable`)

	old.Immutable = ptrTo(true)
	s = old.DeepCopy()
	s.Data["password"] = []byte("new")
	checkErrs(t, ValidateUpdate(s, old), "data: Forbidden")
	checkMessage(t, ValidateUpdate(s, old), "data: Forbidden: field is immutable when `immutable` is set")
	s = old.DeepCopy()
	s.Immutable = nil
	checkErrs(t, ValidateUpdate(s, old), "immutable: Forbidden")
	s = old.DeepCopy()
	s.Labels = map[string]string{"rotated": "no"}
	checkErrs(t, ValidateUpdate(s, old))
}

func TestValidateConfigMap(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.ConfigMap)
		want   []string
	}{
		{"valid", func(*corev1.ConfigMap) {}, nil},
		{"bad key", func(c *corev1.ConfigMap) { c.Data["a b"] = "" }, []string{"data[a b]: Invalid value"}},
		{"key with ..", func(c *corev1.ConfigMap) { c.Data["../x"] = "" }, []string{"data[../x]: Invalid value", "data[../x]: Invalid value"}},
		{"bad binary key", func(c *corev1.ConfigMap) { c.BinaryData = map[string][]byte{"a b": nil} }, []string{"binaryData[a b]: Invalid value"}},
		{"key in both", func(c *corev1.ConfigMap) { c.BinaryData = map[string][]byte{"app.conf": nil} }, []string{"data[app.conf]: Invalid value"}},
		{"too big", func(c *corev1.ConfigMap) {
			c.Data["a"] = strings.Repeat("x", corev1.MaxSecretSize)
			c.BinaryData = map[string][]byte{"b": []byte("y")}
		}, []string{"[]: Too long"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := defaulted(newConfigMap())
			tc.mutate(c)
			checkErrs(t, Validate(c), tc.want...)
		})
	}

	old := defaulted(newConfigMap())
	old.Immutable = ptrTo(true)
	c := old.DeepCopy()
	c.Data["app.conf"] = "x=2"
	c.BinaryData = map[string][]byte{"b": nil}
	checkErrs(t, ValidateUpdate(c, old), "data: Forbidden", "binaryData: Forbidden")
	old.Immutable = nil
	checkErrs(t, ValidateUpdate(c, old))
}

func TestValidateNamespace(t *testing.T) {
	ns := defaulted(newNamespace())
	ns.Spec.Finalizers = append(ns.Spec.Finalizers, "example.com/cleanup", "cleanup")
	checkErrs(t, Validate(ns), "spec.finalizers: Invalid value")
	checkMessage(t, Validate(ns), `spec.finalizers: Invalid value: "cleanup": name is neither a standard finalizer name nor is it fully qualified`)
	checkErrs(t, ValidateUpdate(ns, defaulted(newNamespace())), "spec.finalizers: Invalid value")
}

func TestValidateNode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Node)
		want   []string
	}{
		{"valid", func(*corev1.Node) {}, nil},
		{"podCIDR not a CIDR", func(n *corev1.Node) { n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.244.1.0", []string{"10.244.1.0"} },
			[]string{"spec.podCIDRs[0]: Invalid value"}},
		{"two IPv4 CIDRs", func(n *corev1.Node) { n.Spec.PodCIDRs = append(n.Spec.PodCIDRs, "10.244.9.0/24") },
			[]string{"spec.podCIDRs: Invalid value"}},
		{"dual stack", func(n *corev1.Node) { n.Spec.PodCIDRs = append(n.Spec.PodCIDRs, "fd00:1::/64") }, nil},
		{"taint effect", func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "db", Effect: "Sometimes"}}
		},
			[]string{"metadata.taints[0].effect: Unsupported value"}},
		{"taint without effect", func(n *corev1.Node) { n.Spec.Taints = []corev1.Taint{{Key: "dedicated"}} },
			[]string{"metadata.taints[0].effect: Required value"}},
		{"duplicate taint", func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}, {Key: "k", Value: "v", Effect: corev1.TaintEffectNoSchedule}}
		}, []string{"metadata.taints[1]: Duplicate value"}},
		{"same key, other effect", func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}, {Key: "k", Effect: corev1.TaintEffectNoExecute}}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := defaulted(newNode())
			tc.mutate(n)
			checkErrs(t, Validate(n), tc.want...)
		})
	}

	old := defaulted(newNode())
	n := old.DeepCopy()
	n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.244.7.0/24", []string{"10.244.7.0/24"}
	checkErrs(t, ValidateUpdate(n, old), "spec.podCIDRs: Forbidden")

	unset := old.DeepCopy()
	unset.Spec.PodCIDR, unset.Spec.PodCIDRs = "", nil
	checkErrs(t, ValidateUpdate(old, unset)) // from "" to valid

	n = old.DeepCopy()
	n.Spec.Unschedulable = true
	n.Spec.Taints = []corev1.Taint{{Key: "node.kubernetes.io/unschedulable", Effect: corev1.TaintEffectNoSchedule}}
	checkErrs(t, ValidateUpdate(n, old))
}

func TestValidateEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*endpoints)
		want   []string
	}{
		{"valid", func(*endpoints) {}, nil},
		{"bad IP", func(e *endpoints) { e.Subsets[0].Addresses[0].IP = "10.244.1" },
			[]string{"subsets[0].addresses[0].ip: Invalid value"}},
		{"loopback IP", func(e *endpoints) { e.Subsets[0].NotReadyAddresses = []corev1.EndpointAddress{{IP: "127.0.0.1"}} },
			[]string{"subsets[0].notReadyAddresses[0].ip: Invalid value"}},
		{"no addresses", func(e *endpoints) { e.Subsets[0].Addresses = nil }, []string{"subsets[0]: Required value"}},
		{"port", func(e *endpoints) { e.Subsets[0].Ports[0].Port = 0 }, []string{"subsets[0].ports[0].port: Invalid value"}},
		{"unnamed second port", func(e *endpoints) {
			e.Subsets[0].Ports = append(e.Subsets[0].Ports, corev1.EndpointPort{Port: 443, Protocol: corev1.ProtocolTCP})
		}, []string{"subsets[0].ports[1].name: Required value"}},
		{"protocol", func(e *endpoints) { e.Subsets[0].Ports[0].Protocol = "" }, []string{"subsets[0].ports[0].protocol: Required value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := defaulted(newEndpoints())
			tc.mutate(e)
			checkErrs(t, Validate(e), tc.want...)
			checkErrs(t, ValidateUpdate(e, defaulted(newEndpoints())), tc.want...)
		})
	}
}

func TestValidateEvent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Event)
		want   []string
	}{
		{"valid", func(*corev1.Event) {}, nil},
		{"other namespace", func(e *corev1.Event) { e.InvolvedObject.Namespace = "kube-system" }, []string{"involvedObject.namespace: Invalid value"}},
		{"node event in default", func(e *corev1.Event) { e.InvolvedObject = corev1.ObjectReference{Kind: "Node", Name: "node-1"} }, nil},
		{"node event elsewhere", func(e *corev1.Event) {
			e.Namespace = "team-a"
			e.InvolvedObject = corev1.ObjectReference{Kind: "Node", Name: "node-1"}
		}, []string{"involvedObject.namespace: Invalid value"}},
		{"new-style event without reporter", func(e *corev1.Event) { e.EventTime = metav1.NowMicro() },
			[]string{"reportingController: Required value", "reportingController: Invalid value", "reportingController: Invalid value",
				"reportingInstance: Required value", "action: Required value"}},
		{"new-style event", func(e *corev1.Event) {
			e.EventTime = metav1.NowMicro()
			e.ReportingController, e.ReportingInstance, e.Action = "skiff.sh/scheduler", "master-1", "Binding"
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := defaulted(newEvent())
			tc.mutate(e)
			checkErrs(t, Validate(e), tc.want...)
		})
	}

	old := defaulted(newEvent())
	e := old.DeepCopy()
	e.Count, e.LastTimestamp = 2, metav1.Now()
	checkErrs(t, ValidateUpdate(e, old))
}

func TestValidateServiceAccount(t *testing.T) {
	sa := defaulted(newServiceAccount())
	sa.Secrets = []corev1.ObjectReference{{Name: "token"}}
	checkErrs(t, Validate(sa))
	checkErrs(t, ValidateUpdate(sa, defaulted(newServiceAccount())))
}
