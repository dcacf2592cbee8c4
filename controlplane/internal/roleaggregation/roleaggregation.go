// Package roleaggregation is the cluster role aggregation controller: a
// ClusterRole with an aggregationRule gets, as its rules, the rules of
// every other ClusterRole its selectors match, in name order without
// duplicates, as kube-controller-manager's clusterrole-aggregation
// controller keeps them. A chart that labels its ClusterRole
// "…/aggregate-to-x: true" so extends role x.
//
//	c, err := roleaggregation.New(cfg) // cfg from DefaultConfig, with Client set
//	err = c.Run(ctx)                   // leader-only: until ctx ends; may run again later
//
// It works through the Kubernetes API only (an informer on cluster roles,
// updates), is level-triggered, and may be stopped and started again at
// any moment.
package roleaggregation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"
	"github.com/skiff-sh/skiff/controlplane/internal/workers"
)

// Config configures a Controller.
type Config struct {
	// Client reads and updates cluster roles.
	Client kubernetes.Interface
	// Informers, if set, is shared with the other components of the
	// leadership term; nil gives this one informers of its own.
	Informers *sharedinformers.Provider
	Logger    *slog.Logger
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
	// RetryBase and RetryMax bound the back-off after a failed update.
	RetryBase, RetryMax time.Duration
}

// DefaultConfig returns a Config without Client.
func DefaultConfig() Config {
	return Config{Logger: slog.Default(), RequestTimeout: 10 * time.Second, RetryBase: 100 * time.Millisecond, RetryMax: 10 * time.Second}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Logger == nil:
		return errors.New("roleaggregation: config: Client and Logger are required")
	case c.RequestTimeout <= 0 || c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("roleaggregation: config: bad RequestTimeout %v or retry bounds %v..%v", c.RequestTimeout, c.RetryBase, c.RetryMax)
	}
	return nil
}

// Controller keeps aggregated cluster roles' rules. See the package comment.
type Controller struct{ cfg Config }

// New returns a Controller for cfg.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Controller{cfg: cfg}, nil
}

// Run keeps every aggregated cluster role's rules until ctx ends; it
// returns nil then.
func (c *Controller) Run(ctx context.Context) error {
	queue := workers.NewQueue(c.cfg.RetryBase, c.cfg.RetryMax)
	defer queue.ShutDown()
	factory, startInformers, releaseInformers := sharedinformers.Join(ctx, c.cfg.Informers, c.cfg.Client)
	defer releaseInformers()
	roles := factory.Rbac().V1().ClusterRoles()
	// Any change to any cluster role may change what an aggregated one
	// selects (labels) or holds (rules): every aggregated role is looked
	// at again, as upstream does. There are few of them.
	enqueueAggregated := func(any) {
		all, err := roles.Lister().List(labels.Everything())
		if err != nil {
			return
		}
		for _, r := range all {
			if r.AggregationRule != nil {
				queue.Add(r.Name)
			}
		}
	}
	if _, err := roles.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueAggregated,
		UpdateFunc: func(_, obj any) { enqueueAggregated(obj) },
		DeleteFunc: enqueueAggregated,
	}); err != nil {
		return err
	}
	startInformers()
	if !cache.WaitForCacheSync(ctx.Done(), roles.Informer().HasSynced) {
		return nil // ctx ended
	}
	workers.Run(ctx, queue, 1, c.cfg.Logger, "cluster role aggregation", workers.Once(func(ctx context.Context, name string) error {
		return c.sync(ctx, roles.Lister().Get, roles.Lister().List, name)
	}))
	return nil
}

// sync writes the aggregated rules of cluster role name, if it has an
// aggregationRule and its rules differ from them.
func (c *Controller) sync(ctx context.Context, get func(string) (*rbacv1.ClusterRole, error), list func(labels.Selector) ([]*rbacv1.ClusterRole, error), name string) error {
	role, err := get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if role.AggregationRule == nil {
		return nil
	}
	all, err := list(labels.Everything())
	if err != nil {
		return err
	}
	rules, err := Aggregate(role, all)
	if err != nil {
		return err
	}
	if apiequality.Semantic.DeepEqual(rules, role.Rules) {
		return nil
	}
	updated := role.DeepCopy()
	updated.Rules = rules
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	_, err = c.cfg.Client.RbacV1().ClusterRoles().Update(rctx, updated, metav1.UpdateOptions{FieldManager: "clusterrole-aggregation-controller"})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		c.cfg.Logger.Info("aggregated cluster role", "clusterrole", name, "rules", len(rules))
	}
	return err // a conflict: the next event of the role brings it back
}

// Aggregate returns the rules role's aggregationRule gathers from roles:
// those of every role but itself that one of its selectors matches, in
// name order, each rule once. A selector that does not parse is an error.
func Aggregate(role *rbacv1.ClusterRole, roles []*rbacv1.ClusterRole) ([]rbacv1.PolicyRule, error) {
	selectors := make([]labels.Selector, 0, len(role.AggregationRule.ClusterRoleSelectors))
	for i := range role.AggregationRule.ClusterRoleSelectors {
		s, err := metav1.LabelSelectorAsSelector(&role.AggregationRule.ClusterRoleSelectors[i])
		if err != nil {
			return nil, err
		}
		selectors = append(selectors, s)
	}
	sorted := slices.Clone(roles)
	slices.SortFunc(sorted, func(a, b *rbacv1.ClusterRole) int { return strings.Compare(a.Name, b.Name) })
	rules := []rbacv1.PolicyRule{}
	for _, r := range sorted {
		set := labels.Set(r.Labels)
		if r.Name == role.Name || !slices.ContainsFunc(selectors, func(s labels.Selector) bool { return s.Matches(set) }) {
			continue
		}
		for _, rule := range r.Rules {
			if !slices.ContainsFunc(rules, func(have rbacv1.PolicyRule) bool { return apiequality.Semantic.DeepEqual(have, rule) }) {
				rules = append(rules, rule)
			}
		}
	}
	return rules, nil
}
