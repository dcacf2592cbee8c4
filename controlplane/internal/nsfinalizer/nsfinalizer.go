// Package nsfinalizer is the namespace controller: when a namespace is
// deleted (it is then Terminating, held by the "kubernetes" entry of its
// spec.finalizers), it deletes everything in the namespace, waits until
// nothing is left, and then finalizes the namespace (removes its
// "kubernetes" finalizer), which lets the API server delete it.
//
//	c, err := nsfinalizer.New(cfg) // cfg from DefaultConfig, with Client, Metadata and Discovery set
//	err = c.Run(ctx)               // leader-only: until ctx ends; may run again later
//
// It works through the Kubernetes API only: an informer on namespaces,
// discovery of the namespaced resources, metadata lists and deletes of
// their objects (background propagation), and the namespaces/finalize
// subresource. It is level-triggered and may be stopped and started again
// at any moment. While content remains (pods waiting for their node to
// confirm, objects with finalizers), the namespace is looked at again with
// a back-off, and its NamespaceContentRemaining condition says what is left.
package nsfinalizer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"
	"github.com/skiff-sh/skiff/controlplane/internal/workers"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
)

// Discovery lists the namespaced resources the API serves;
// *discovery.DiscoveryClient is one.
type Discovery interface {
	ServerPreferredNamespacedResources() ([]*metav1.APIResourceList, error)
}

// Config configures a Controller.
type Config struct {
	// Client reads and finalizes namespaces.
	Client kubernetes.Interface
	// Informers, if set, is shared with the other components of the
	// leadership term; nil gives this one informers of its own.
	Informers *sharedinformers.Provider
	// Metadata lists and deletes the objects in namespaces.
	Metadata metadata.Interface
	// Discovery finds the namespaced resources.
	Discovery Discovery
	Logger    *slog.Logger
	// Workers is how many namespaces are worked on at once.
	Workers int
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
	// RetryBase and RetryMax bound the back-off of a namespace whose
	// content is not gone yet.
	RetryBase, RetryMax time.Duration
}

// DefaultConfig returns a Config without Client, Metadata and Discovery.
func DefaultConfig() Config {
	return Config{
		Logger:         slog.Default(),
		Workers:        2,
		RequestTimeout: 10 * time.Second,
		RetryBase:      100 * time.Millisecond,
		RetryMax:       10 * time.Second,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Metadata == nil || c.Discovery == nil:
		return errors.New("nsfinalizer: config: Client, Metadata and Discovery are required")
	case c.Logger == nil:
		return errors.New("nsfinalizer: config: Logger is required")
	case c.Workers < 1 || c.RequestTimeout <= 0 || c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("nsfinalizer: config: bad Workers %d, RequestTimeout %v or retry bounds %v..%v", c.Workers, c.RequestTimeout, c.RetryBase, c.RetryMax)
	}
	return nil
}

// Controller finalizes deleted namespaces. See the package comment.
type Controller struct {
	cfg Config
}

// New returns a Controller for cfg.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Controller{cfg: cfg}, nil
}

// Run finalizes deleted namespaces until ctx ends; it returns nil then.
func (c *Controller) Run(ctx context.Context) error {
	queue := workers.NewQueue(c.cfg.RetryBase, c.cfg.RetryMax)
	defer queue.ShutDown()
	factory, startInformers, releaseInformers := sharedinformers.Join(ctx, c.cfg.Informers, c.cfg.Client)
	defer releaseInformers()
	inf := factory.Core().V1().Namespaces().Informer()
	enqueue := func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok && ns.DeletionTimestamp != nil {
			queue.Add(ns.Name)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return err
	}
	startInformers()

	workers.Run(ctx, queue, c.cfg.Workers, c.cfg.Logger, "namespace finalization", workers.Once(c.finalize))
	return nil
}

// errContentRemaining is the error of a namespace whose content is being
// deleted but is not gone yet: look again later.
var errContentRemaining = errors.New("content remaining")

// finalize deletes what is left in namespace name, if it is being deleted,
// and removes its "kubernetes" finalizer once nothing is left.
func (c *Controller) finalize(ctx context.Context, name string) error {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	ns, err := c.cfg.Client.CoreV1().Namespaces().Get(rctx, name, metav1.GetOptions{})
	cancel()
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	case ns.DeletionTimestamp == nil || !slices.Contains(ns.Spec.Finalizers, corev1.FinalizerKubernetes):
		return nil
	}
	remaining, err := c.deleteContent(ctx, name)
	if err != nil {
		return err
	}
	if len(remaining) > 0 {
		c.setRemaining(ctx, ns, remaining)
		return errContentRemaining
	}
	ns.Spec.Finalizers = slices.DeleteFunc(ns.Spec.Finalizers, func(f corev1.FinalizerName) bool { return f == corev1.FinalizerKubernetes })
	rctx, cancel = context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	_, err = c.cfg.Client.CoreV1().Namespaces().Finalize(rctx, ns, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		c.cfg.Logger.Info("namespace finalized", "namespace", name)
	}
	return err
}

// deleteContent deletes every object in namespace ns that is not being
// deleted already, and returns how many objects of each resource are left.
func (c *Controller) deleteContent(ctx context.Context, ns string) (map[string]int, error) {
	lists, err := c.cfg.Discovery.ServerPreferredNamespacedResources()
	if err != nil && len(lists) == 0 {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	remaining := map[string]int{}
	background := metav1.DeletePropagationBackground
	for _, list := range lists {
		gv, err := schema.ParseGroupVersion(list.GroupVersion)
		if err != nil {
			return nil, err
		}
		for _, r := range list.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") || !slices.Contains(r.Verbs, "delete") {
				continue
			}
			client := c.cfg.Metadata.Resource(gv.WithResource(r.Name)).Namespace(ns)
			rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
			items, err := client.List(rctx, metav1.ListOptions{})
			cancel()
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", r.Name, err)
			}
			for _, it := range items.Items {
				remaining[gv.WithResource(r.Name).GroupResource().String()]++
				if it.DeletionTimestamp != nil {
					continue
				}
				rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
				uid := it.UID
				err := client.Delete(rctx, it.Name, metav1.DeleteOptions{PropagationPolicy: &background, Preconditions: &metav1.Preconditions{UID: &uid}})
				cancel()
				if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
					return nil, fmt.Errorf("delete %s %s/%s: %w", r.Name, ns, it.Name, err)
				}
			}
		}
	}
	// What was deleted at once is gone: count again.
	if len(remaining) == 0 {
		return nil, nil
	}
	left := map[string]int{}
	for _, list := range lists {
		gv, _ := schema.ParseGroupVersion(list.GroupVersion)
		for _, r := range list.APIResources {
			gr := gv.WithResource(r.Name).GroupResource().String()
			if remaining[gr] == 0 {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
			items, err := c.cfg.Metadata.Resource(gv.WithResource(r.Name)).Namespace(ns).List(rctx, metav1.ListOptions{})
			cancel()
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", r.Name, err)
			}
			if n := len(items.Items); n > 0 {
				left[gr] = n
			}
		}
	}
	return left, nil
}

// setRemaining records what is left in the namespace's
// NamespaceContentRemaining condition, as kube-controller-manager words it.
// Failing to is not an error: the condition only informs.
func (c *Controller) setRemaining(ctx context.Context, ns *corev1.Namespace, remaining map[string]int) {
	var parts []string
	for gr, n := range remaining {
		parts = append(parts, fmt.Sprintf("%s has %d resource instances", gr, n))
	}
	sort.Strings(parts)
	cond := corev1.NamespaceCondition{
		Type: corev1.NamespaceContentRemaining, Status: corev1.ConditionTrue, Reason: "SomeResourcesRemain",
		Message: "Some resources are remaining: " + strings.Join(parts, ", "),
	}
	for _, have := range ns.Status.Conditions {
		if have.Type == cond.Type && have.Status == cond.Status && have.Message == cond.Message {
			return
		}
	}
	cond.LastTransitionTime = metav1.Now()
	upd := ns.DeepCopy()
	upd.Status.Conditions = slices.DeleteFunc(upd.Status.Conditions, func(c corev1.NamespaceCondition) bool { return c.Type == cond.Type })
	upd.Status.Conditions = append(upd.Status.Conditions, cond)
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	if _, err := c.cfg.Client.CoreV1().Namespaces().UpdateStatus(rctx, upd, metav1.UpdateOptions{}); err != nil {
		c.cfg.Logger.Debug("namespace condition not updated", "namespace", ns.Name, "err", err)
	}
}
