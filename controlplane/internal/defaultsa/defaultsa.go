// Package defaultsa is the service account controller: every namespace
// that is not being deleted has a ServiceAccount named "default", as in
// Kubernetes, where pods run as it unless they name another (the API
// server's pod admission sets spec.serviceAccountName to it).
//
//	c, err := defaultsa.New(cfg) // cfg from DefaultConfig, with Client set
//	err = c.Run(ctx)             // leader-only: until ctx ends; may run again later
//
// It works through the Kubernetes API only (informers on namespaces and
// service accounts, creates), is level-triggered, and may be stopped and
// started again at any moment.
package defaultsa

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"
	"github.com/skiff-sh/skiff/controlplane/internal/workers"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Name is the name of every namespace's default service account.
const Name = "default"

// Config configures a Controller.
type Config struct {
	// Client reads namespaces and creates service accounts.
	Client kubernetes.Interface
	// Informers, if set, is shared with the other components of the
	// leadership term; nil gives this one informers of its own.
	Informers *sharedinformers.Provider
	Logger    *slog.Logger
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
	// RetryBase and RetryMax bound the back-off after a failed create.
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
		return errors.New("defaultsa: config: Client and Logger are required")
	case c.RequestTimeout <= 0 || c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("defaultsa: config: bad RequestTimeout %v or retry bounds %v..%v", c.RequestTimeout, c.RetryBase, c.RetryMax)
	}
	return nil
}

// Controller creates the default service accounts. See the package comment.
type Controller struct{ cfg Config }

// New returns a Controller for cfg.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Controller{cfg: cfg}, nil
}

// Run keeps a default service account in every live namespace until ctx
// ends; it returns nil then.
func (c *Controller) Run(ctx context.Context) error {
	queue := workers.NewQueue(c.cfg.RetryBase, c.cfg.RetryMax)
	defer queue.ShutDown()
	factory, startInformers, releaseInformers := sharedinformers.Join(ctx, c.cfg.Informers, c.cfg.Client)
	defer releaseInformers()
	namespaces := factory.Core().V1().Namespaces()
	accounts := factory.Core().V1().ServiceAccounts()
	if _, err := namespaces.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { queue.Add(obj.(*corev1.Namespace).Name) },
		UpdateFunc: func(_, obj any) { queue.Add(obj.(*corev1.Namespace).Name) },
	}); err != nil {
		return err
	}
	if _, err := accounts.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if sa, ok := sharedinformers.As[*corev1.ServiceAccount](obj); ok && sa.Name == Name {
				queue.Add(sa.Namespace)
			}
		},
	}); err != nil {
		return err
	}
	startInformers()
	if !cache.WaitForCacheSync(ctx.Done(), namespaces.Informer().HasSynced, accounts.Informer().HasSynced) {
		return nil // ctx ended
	}
	workers.Run(ctx, queue, 1, c.cfg.Logger, "default service account", workers.Once(func(ctx context.Context, ns string) error {
		return c.ensure(ctx, namespaces.Lister().Get, accounts.Lister().ServiceAccounts(ns).Get, ns)
	}))
	return nil
}

// ensure creates namespace ns's default service account when the
// namespace exists, is not being deleted, and has none.
func (c *Controller) ensure(ctx context.Context, getNS func(string) (*corev1.Namespace, error), getSA func(string) (*corev1.ServiceAccount, error), ns string) error {
	n, err := getNS(ns)
	if apierrors.IsNotFound(err) || (err == nil && n.DeletionTimestamp != nil) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := getSA(Name); err == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	_, err = c.cfg.Client.CoreV1().ServiceAccounts(ns).Create(rctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: Name}}, metav1.CreateOptions{})
	switch {
	case err == nil, apierrors.IsAlreadyExists(err):
		return nil
	case apierrors.IsForbidden(err), apierrors.IsNotFound(err):
		return nil // the namespace is going or gone
	}
	return err
}
