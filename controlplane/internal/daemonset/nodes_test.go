package daemonset

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestShouldRun(t *testing.T) {
	node := func(lbls map[string]string, taints ...corev1.Taint) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: lbls}, Spec: corev1.NodeSpec{Taints: taints}}
	}
	term := func(reqs ...corev1.NodeSelectorRequirement) *corev1.Affinity {
		return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: reqs}},
		}}}
	}
	taint := func(key string, effect corev1.TaintEffect) corev1.Taint {
		return corev1.Taint{Key: key, Value: "v", Effect: effect}
	}
	for _, c := range []struct {
		name              string
		spec              corev1.PodSpec
		node              *corev1.Node
		wantRun, wantKeep bool
	}{
		{"any node", corev1.PodSpec{}, node(nil), true, true},
		{"selector matches", corev1.PodSpec{NodeSelector: map[string]string{"a": "1"}}, node(map[string]string{"a": "1"}), true, true},
		{"selector does not", corev1.PodSpec{NodeSelector: map[string]string{"a": "1"}}, node(map[string]string{"a": "2"}), false, false},
		{"another node's name", corev1.PodSpec{NodeName: "n2"}, node(nil), false, false},
		{"affinity In", corev1.PodSpec{Affinity: term(corev1.NodeSelectorRequirement{Key: "a", Operator: corev1.NodeSelectorOpIn, Values: []string{"1", "2"}})}, node(map[string]string{"a": "2"}), true, true},
		{"affinity NotIn", corev1.PodSpec{Affinity: term(corev1.NodeSelectorRequirement{Key: "a", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"2"}})}, node(map[string]string{"a": "2"}), false, false},
		{"affinity DoesNotExist", corev1.PodSpec{Affinity: term(corev1.NodeSelectorRequirement{Key: "a", Operator: corev1.NodeSelectorOpDoesNotExist})}, node(nil), true, true},
		{"affinity Gt", corev1.PodSpec{Affinity: term(corev1.NodeSelectorRequirement{Key: "a", Operator: corev1.NodeSelectorOpGt, Values: []string{"3"}})}, node(map[string]string{"a": "2"}), false, false},
		{"untolerated NoSchedule", corev1.PodSpec{}, node(nil, taint("x", corev1.TaintEffectNoSchedule)), false, true},
		{"untolerated NoExecute", corev1.PodSpec{}, node(nil, taint("x", corev1.TaintEffectNoExecute)), false, false},
		{"PreferNoSchedule is no bar", corev1.PodSpec{}, node(nil, taint("x", corev1.TaintEffectPreferNoSchedule)), true, true},
		{"tolerated by key", corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "x", Operator: corev1.TolerationOpExists}}}, node(nil, taint("x", corev1.TaintEffectNoExecute)), true, true},
		{"tolerated by value", corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "x", Value: "v", Effect: corev1.TaintEffectNoSchedule}}}, node(nil, taint("x", corev1.TaintEffectNoSchedule)), true, true},
		{"other value", corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "x", Value: "w"}}}, node(nil, taint("x", corev1.TaintEffectNoSchedule)), false, true},
		{"daemon tolerations: cordoned", corev1.PodSpec{}, node(nil, taint(corev1.TaintNodeUnschedulable, corev1.TaintEffectNoSchedule)), true, true},
		{"daemon tolerations: unreachable", corev1.PodSpec{}, node(nil, taint(corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute)), true, true},
		{"network unavailable, pod network", corev1.PodSpec{}, node(nil, taint(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule)), false, true},
		{"network unavailable, host network", corev1.PodSpec{HostNetwork: true}, node(nil, taint(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule)), true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			set := &appsv1.DaemonSet{Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: c.spec}}}
			spec := podSpec(set, "")
			run, keep := shouldRun(set, &spec, c.node)
			if run != c.wantRun || keep != c.wantKeep {
				t.Errorf("got run %v keep %v, want %v %v", run, keep, c.wantRun, c.wantKeep)
			}
		})
	}
}
