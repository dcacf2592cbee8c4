package roleaggregation

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

const aggregateLabel = "rbac.example.com/aggregate-to-monitoring"

var (
	readPods   = rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}
	readNodes  = rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}}
	getMetrics = rbacv1.PolicyRule{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}
)

func clusterRole(name string, labels map[string]string, rules ...rbacv1.PolicyRule) *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Rules: rules}
}

func aggregated(name string) *rbacv1.ClusterRole {
	r := clusterRole(name, nil)
	r.AggregationRule = &rbacv1.AggregationRule{ClusterRoleSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{aggregateLabel: "true"}}}}
	return r
}

func TestAggregate(t *testing.T) {
	on := map[string]string{aggregateLabel: "true"}
	self := aggregated("monitoring")
	self.Labels = on // a role never aggregates its own rules
	self.Rules = []rbacv1.PolicyRule{readNodes}
	roles := []*rbacv1.ClusterRole{
		clusterRole("z-pods", on, readPods, getMetrics),
		clusterRole("a-metrics", on, getMetrics),
		clusterRole("unlabeled", nil, readNodes),
		clusterRole("off", map[string]string{aggregateLabel: "false"}, readNodes),
		self,
	}
	got, err := Aggregate(self, roles)
	if err != nil {
		t.Fatal(err)
	}
	if want := []rbacv1.PolicyRule{getMetrics, readPods}; !apiequality.Semantic.DeepEqual(got, want) {
		t.Errorf("got rules %+v, want %+v (name order, each once)", got, want)
	}

	bad := aggregated("bad")
	bad.AggregationRule.ClusterRoleSelectors[0].MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "k", Operator: "Near"}}
	if _, err := Aggregate(bad, roles); err == nil {
		t.Error("an invalid selector aggregated without an error")
	}
}

// TestController runs the controller against a real API server: the
// aggregated role follows the roles its selector matches as they come,
// change labels and rules, and go.
func TestController(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ctx := t.Context()
	roles := cs.RbacV1().ClusterRoles()
	on := map[string]string{aggregateLabel: "true"}
	for _, r := range []*rbacv1.ClusterRole{aggregated("monitoring"), clusterRole("pods-reader", on, readPods), clusterRole("nodes-reader", nil, readNodes)} {
		if _, err := roles.Create(ctx, r, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultConfig()
	cfg.Client, cfg.Logger = cs, slog.New(slog.DiscardHandler)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	rulesAre := func(want ...rbacv1.PolicyRule) func() error {
		return func() error {
			r, err := roles.Get(ctx, "monitoring", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !apiequality.Semantic.DeepEqual(r.Rules, want) {
				return fmt.Errorf("rules %+v, want %+v", r.Rules, want)
			}
			return nil
		}
	}
	apitest.WaitFor(t, 20*time.Second, "the matching role's rules", rulesAre(readPods))

	nodes, err := roles.Get(ctx, "nodes-reader", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodes.Labels = on
	if nodes, err = roles.Update(ctx, nodes, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	apitest.WaitFor(t, 20*time.Second, "a newly labeled role's rules, in name order", rulesAre(readNodes, readPods))

	nodes.Rules = append(nodes.Rules, getMetrics)
	if _, err := roles.Update(ctx, nodes, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	apitest.WaitFor(t, 20*time.Second, "an aggregated role's new rule", rulesAre(readNodes, getMetrics, readPods))

	if err := roles.Delete(ctx, "nodes-reader", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	apitest.WaitFor(t, 20*time.Second, "a deleted role's rules to go", rulesAre(readPods))

	// Rules written by hand to an aggregated role are replaced.
	m, err := roles.Get(ctx, "monitoring", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m.Rules = append(m.Rules, readNodes)
	if _, err := roles.Update(ctx, m, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	apitest.WaitFor(t, 20*time.Second, "hand-written rules replaced", rulesAre(readPods))
}
