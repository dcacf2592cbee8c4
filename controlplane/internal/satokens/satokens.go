// Package satokens is the service account token controller: a Secret of
// type kubernetes.io/service-account-token that names a service account
// (annotation kubernetes.io/service-account.name) gets a long-lived token
// of it, the cluster CA and the namespace (data token, ca.crt, namespace)
// and the account's uid (annotation kubernetes.io/service-account.uid),
// as kube-controller-manager's token controller fills them. Such a Secret
// whose account is gone, or was recreated, is deleted, and so is its
// token's validity. Tools that ask for a token that does not expire (a
// CI system's, a dashboard's) create these Secrets.
//
//	c, err := satokens.New(cfg) // cfg from DefaultConfig, with Client, Signer and CACert set
//	err = c.Run(ctx)            // leader-only: until ctx ends; may run again later
//
// It works through the Kubernetes API only (informers on token Secrets
// and service accounts, updates and deletes), is level-triggered, and may
// be stopped and started again at any moment.
package satokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-sh/skiff/controlplane/internal/satoken"
	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"
	"github.com/skiff-sh/skiff/controlplane/internal/workers"
)

// Config configures a Controller.
type Config struct {
	// Client reads service accounts and writes Secrets.
	Client kubernetes.Interface
	// Signer signs the tokens: the API server's, which accepts them.
	Signer *satoken.Signer
	// CACert is the cluster CA certificate, PEM (data ca.crt).
	CACert []byte
	// Informers, if set, is shared with the other components of the
	// leadership term (service accounts); nil gives this one its own.
	Informers *sharedinformers.Provider
	Logger    *slog.Logger
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
	// RetryBase and RetryMax bound the back-off after a failed write.
	RetryBase, RetryMax time.Duration
}

// DefaultConfig returns a Config without Client, Signer and CACert.
func DefaultConfig() Config {
	return Config{Logger: slog.Default(), RequestTimeout: 10 * time.Second, RetryBase: 100 * time.Millisecond, RetryMax: 10 * time.Second}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Signer == nil || len(c.CACert) == 0 || c.Logger == nil:
		return errors.New("satokens: config: Client, Signer, CACert and Logger are required")
	case c.RequestTimeout <= 0 || c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("satokens: config: bad RequestTimeout %v or retry bounds %v..%v", c.RequestTimeout, c.RetryBase, c.RetryMax)
	}
	return nil
}

// Controller fills service account token Secrets. See the package comment.
type Controller struct{ cfg Config }

// New returns a Controller for cfg.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Controller{cfg: cfg}, nil
}

// tokenSecrets selects the Secrets this controller keeps.
var tokenSecrets = fields.OneTermEqualSelector("type", string(corev1.SecretTypeServiceAccountToken)).String()

// Run keeps the token Secrets until ctx ends; it returns nil then.
func (c *Controller) Run(ctx context.Context) error {
	queue := workers.NewQueue(c.cfg.RetryBase, c.cfg.RetryMax)
	defer queue.ShutDown()
	// Informers of its own: only the token Secrets, not every Secret.
	factory := informers.NewSharedInformerFactoryWithOptions(c.cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = tokenSecrets }))
	accountFactory, startShared, releaseShared := sharedinformers.Join(ctx, c.cfg.Informers, c.cfg.Client)
	defer releaseShared()
	secrets := factory.Core().V1().Secrets()
	accounts := accountFactory.Core().V1().ServiceAccounts()
	if _, err := secrets.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { enqueue(queue, obj) },
		UpdateFunc: func(_, obj any) { enqueue(queue, obj) },
	}); err != nil {
		return err
	}
	// An account that goes (or comes back) takes its Secrets' tokens along.
	accountChanged := func(obj any) {
		sa, ok := sharedinformers.As[*corev1.ServiceAccount](obj)
		if !ok {
			return
		}
		list, err := secrets.Lister().Secrets(sa.Namespace).List(labels.Everything())
		if err != nil {
			return
		}
		for _, s := range list {
			if s.Annotations[corev1.ServiceAccountNameKey] == sa.Name {
				queue.Add(s.Namespace + "/" + s.Name)
			}
		}
	}
	if _, err := accounts.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    accountChanged,
		DeleteFunc: accountChanged,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	startShared()
	if !cache.WaitForCacheSync(ctx.Done(), secrets.Informer().HasSynced, accounts.Informer().HasSynced) {
		return nil // ctx ended
	}
	workers.Run(ctx, queue, 1, c.cfg.Logger, "service account token secret", workers.Once(func(ctx context.Context, key string) error {
		ns, name, err := cache.SplitMetaNamespaceKey(key)
		if err != nil {
			return nil
		}
		return c.sync(ctx, secrets.Lister().Secrets(ns).Get, accounts.Lister().ServiceAccounts(ns).Get, ns, name)
	}))
	return nil
}

func enqueue(q workqueue.TypedRateLimitingInterface[string], obj any) {
	if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
		q.Add(key)
	}
}

// sync fills Secret ns/name, or deletes it when its service account is
// gone or is another one now.
func (c *Controller) sync(ctx context.Context, getSecret func(string) (*corev1.Secret, error), getSA func(string) (*corev1.ServiceAccount, error), ns, name string) error {
	sec, err := getSecret(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || sec.Type != corev1.SecretTypeServiceAccountToken || sec.DeletionTimestamp != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	saName := sec.Annotations[corev1.ServiceAccountNameKey]
	sa, err := getSA(saName)
	if apierrors.IsNotFound(err) {
		// The cache may be behind a new account: ask the API before deleting.
		sa, err = c.cfg.Client.CoreV1().ServiceAccounts(ns).Get(rctx, saName, metav1.GetOptions{})
	}
	wantUID := sec.Annotations[corev1.ServiceAccountUIDKey]
	switch {
	case apierrors.IsNotFound(err) || (err == nil && wantUID != "" && wantUID != string(sa.UID)):
		err := c.cfg.Client.CoreV1().Secrets(ns).Delete(rctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &sec.UID}})
		if err == nil {
			c.cfg.Logger.Info("deleted a service account token secret whose account is gone", "secret", ns+"/"+name, "serviceaccount", saName)
		}
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	case err != nil:
		return err
	}
	if wantUID == string(sa.UID) && len(sec.Data[corev1.ServiceAccountTokenKey]) > 0 &&
		string(sec.Data[corev1.ServiceAccountRootCAKey]) == string(c.cfg.CACert) && string(sec.Data[corev1.ServiceAccountNamespaceKey]) == ns {
		return nil
	}
	sec = sec.DeepCopy()
	if sec.Annotations == nil {
		sec.Annotations = map[string]string{}
	}
	sec.Annotations[corev1.ServiceAccountUIDKey] = string(sa.UID)
	if sec.Data == nil {
		sec.Data = map[string][]byte{}
	}
	if len(sec.Data[corev1.ServiceAccountTokenKey]) == 0 || wantUID != string(sa.UID) {
		token, err := c.cfg.Signer.IssueLegacy(ns, satoken.Ref{Name: sa.Name, UID: string(sa.UID)}, sec.Name)
		if err != nil {
			return err
		}
		sec.Data[corev1.ServiceAccountTokenKey] = []byte(token)
	}
	sec.Data[corev1.ServiceAccountRootCAKey], sec.Data[corev1.ServiceAccountNamespaceKey] = c.cfg.CACert, []byte(ns)
	_, err = c.cfg.Client.CoreV1().Secrets(ns).Update(rctx, sec, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
