// Package clusterdns keeps the cluster DNS Service, kube-system/kube-dns,
// in place: its cluster IP (10.96.0.10 by default) is the nameserver of
// every ClusterFirst pod, and every node's proxy answers it with the
// node-local DNS server. The Service has no selector: nothing else serves
// it. Like the other leader components it runs on the Raft leader.
//
// Use: New(cfg), then Run(ctx), which creates the Service when it is
// missing, now and every Interval, until ctx ends.
package clusterdns

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// Name and Namespace are the Service's, as on Kubernetes.
const (
	Name      = "kube-dns"
	Namespace = metav1.NamespaceSystem
)

// Config configures a Keeper.
type Config struct {
	Client   kubernetes.Interface
	IP       netip.Addr
	Interval time.Duration
	Logger   *slog.Logger
}

// DefaultConfig returns a Config without Client.
func DefaultConfig() Config {
	return Config{IP: netip.MustParseAddr("10.96.0.10"), Interval: time.Minute, Logger: slog.Default()}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	if c.Client == nil || c.Logger == nil || !c.IP.IsValid() || c.Interval <= 0 {
		return errors.New("clusterdns: config: Client, Logger, IP and a positive Interval are required")
	}
	return nil
}

// Keeper keeps the Service.
type Keeper struct{ cfg Config }

// New returns a Keeper for cfg.
func New(cfg Config) (*Keeper, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Keeper{cfg: cfg}, nil
}

// Run ensures the Service until ctx ends; it returns nil then.
func (k *Keeper) Run(ctx context.Context) error {
	t := time.NewTicker(k.cfg.Interval)
	defer t.Stop()
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-retry.C:
		}
		if err := k.ensure(ctx); err != nil && ctx.Err() == nil {
			k.cfg.Logger.Warn("cluster DNS service not ensured", "err", err)
			retry.Reset(time.Second)
		}
	}
}

func (k *Keeper) ensure(ctx context.Context) error {
	svcs := k.cfg.Client.CoreV1().Services(Namespace)
	_, err := svcs.Get(ctx, Name, metav1.GetOptions{})
	if err == nil || !apierrors.IsNotFound(err) {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: Namespace, Labels: map[string]string{
			"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS", "kubernetes.io/cluster-service": "true",
		}},
		Spec: corev1.ServiceSpec{
			ClusterIP: k.cfg.IP.String(),
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
			},
		},
	}
	_, err = svcs.Create(ctx, svc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err == nil {
		k.cfg.Logger.Info("cluster DNS service created", "service", Namespace+"/"+Name, "ip", k.cfg.IP)
	}
	return err
}
