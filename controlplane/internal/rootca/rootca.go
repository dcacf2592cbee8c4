// Package rootca is the root CA certificate publisher: every namespace
// that is not being deleted has a ConfigMap "kube-root-ca.crt" whose
// "ca.crt" holds the cluster CA certificate, as kube-controller-manager's
// root-ca-cert-publisher keeps it. Pods read it to verify the API server
// (the kube-api-access volume mounts it as ca.crt beside the token).
//
//	c, err := rootca.New(cfg) // cfg from DefaultConfig, with Client and CACert set
//	err = c.Run(ctx)          // leader-only: until ctx ends; may run again later
//
// It works through the Kubernetes API only (informers on namespaces and
// config maps, creates and updates), is level-triggered, and may be
// stopped and started again at any moment. A changed or deleted copy is
// put back; labels and other annotations on it are kept.
package rootca

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"
	"github.com/skiff-sh/skiff/controlplane/internal/workers"
)

// Name is the ConfigMap every namespace gets; DataKey its key.
const (
	Name    = "kube-root-ca.crt"
	DataKey = "ca.crt"
)

// descriptionKey and description are the annotation upstream puts on it.
const (
	descriptionKey = "kubernetes.io/description"
	description    = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. " +
		"No other usage is guaranteed across distributions of Kubernetes clusters."
)

// Config configures a Controller.
type Config struct {
	// Client reads namespaces and writes config maps.
	Client kubernetes.Interface
	// CACert is the cluster CA certificate, PEM.
	CACert []byte
	// Informers, if set, is shared with the other components of the
	// leadership term; nil gives this one informers of its own.
	Informers *sharedinformers.Provider
	Logger    *slog.Logger
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
	// RetryBase and RetryMax bound the back-off after a failed write.
	RetryBase, RetryMax time.Duration
}

// DefaultConfig returns a Config without Client and CACert.
func DefaultConfig() Config {
	return Config{Logger: slog.Default(), RequestTimeout: 10 * time.Second, RetryBase: 100 * time.Millisecond, RetryMax: 10 * time.Second}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Logger == nil || len(c.CACert) == 0:
		return errors.New("rootca: config: Client, CACert and Logger are required")
	case c.RequestTimeout <= 0 || c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("rootca: config: bad RequestTimeout %v or retry bounds %v..%v", c.RequestTimeout, c.RetryBase, c.RetryMax)
	}
	return nil
}

// Controller publishes the CA certificate. See the package comment.
type Controller struct{ cfg Config }

// New returns a Controller for cfg.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Controller{cfg: cfg}, nil
}

// Run keeps the ConfigMap in every live namespace until ctx ends; it
// returns nil then.
func (c *Controller) Run(ctx context.Context) error {
	queue := workers.NewQueue(c.cfg.RetryBase, c.cfg.RetryMax)
	defer queue.ShutDown()
	factory, startInformers, releaseInformers := sharedinformers.Join(ctx, c.cfg.Informers, c.cfg.Client)
	defer releaseInformers()
	namespaces := factory.Core().V1().Namespaces()
	maps := factory.Core().V1().ConfigMaps()
	if _, err := namespaces.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { queue.Add(obj.(*corev1.Namespace).Name) },
		UpdateFunc: func(_, obj any) { queue.Add(obj.(*corev1.Namespace).Name) },
	}); err != nil {
		return err
	}
	ours := func(obj any) {
		if cm, ok := sharedinformers.As[*corev1.ConfigMap](obj); ok && cm.Name == Name {
			queue.Add(cm.Namespace)
		}
	}
	if _, err := maps.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) { ours(obj) },
		DeleteFunc: ours,
	}); err != nil {
		return err
	}
	startInformers()
	if !cache.WaitForCacheSync(ctx.Done(), namespaces.Informer().HasSynced, maps.Informer().HasSynced) {
		return nil // ctx ended
	}
	workers.Run(ctx, queue, 1, c.cfg.Logger, "kube-root-ca.crt", workers.Once(func(ctx context.Context, ns string) error {
		return c.sync(ctx, namespaces.Lister().Get, maps.Lister().ConfigMaps(ns).Get, ns)
	}))
	return nil
}

// sync creates or mends namespace ns's copy of the CA certificate.
func (c *Controller) sync(ctx context.Context, getNS func(string) (*corev1.Namespace, error), getCM func(string) (*corev1.ConfigMap, error), ns string) error {
	n, err := getNS(ns)
	if apierrors.IsNotFound(err) || (err == nil && n.DeletionTimestamp != nil) {
		return nil
	}
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	cm, err := getCM(Name)
	switch {
	case apierrors.IsNotFound(err):
		_, err = c.cfg.Client.CoreV1().ConfigMaps(ns).Create(rctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: Name, Annotations: map[string]string{descriptionKey: description}},
			Data:       map[string]string{DataKey: string(c.cfg.CACert)},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) || apierrors.IsForbidden(err) || apierrors.IsNotFound(err) {
			return nil // made meanwhile (its event follows), or the namespace is going
		}
		return err
	case err != nil:
		return err
	case len(cm.Data) == 1 && cm.Data[DataKey] == string(c.cfg.CACert) && len(cm.BinaryData) == 0 && cm.Annotations[descriptionKey] == description:
		return nil
	}
	cm = cm.DeepCopy()
	cm.Data, cm.BinaryData = map[string]string{DataKey: string(c.cfg.CACert)}, nil
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[descriptionKey] = description
	_, err = c.cfg.Client.CoreV1().ConfigMaps(ns).Update(rctx, cm, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil // deleted meanwhile: its event brings the namespace back
	}
	return err
}
