// Package kubeservice keeps the Service default/kubernetes, through which
// pods reach the API (client-go's in-cluster configuration dials
// $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, which the agent sets
// from it): cluster IP 10.96.0.1 port 443, and an Endpoints and an
// EndpointSlice listing the live masters' API addresses, which the
// service proxy programs like any other. It is kube-apiserver's bootstrap
// controller and endpoint reconciler; here it runs on the Raft leader
// and learns the masters from the gossip pool.
//
//	k, err := kubeservice.New(cfg) // cfg from DefaultConfig, with Client and Masters set
//	err = k.Run(ctx)               // leader-only: until ctx ends
//
// A master whose API address is not an IPv4 address other than loopback
// (a pod cannot reach 127.0.0.1 of the host) is left out; masters on
// another port than the first one's are too, with a warning.
package kubeservice

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// Name and Namespace are the Service's (and its endpoints'), as on
// Kubernetes; PortName its port's.
const (
	Name      = "kubernetes"
	Namespace = metav1.NamespaceDefault
	PortName  = "https"
)

// Config configures a Keeper.
type Config struct {
	Client kubernetes.Interface
	// IP is the Service's cluster IP: the service range's first address.
	IP netip.Addr
	// Masters returns the live masters' API addresses (host:port).
	Masters func() []string
	// LocalNode, if set, returns the address of a single-node cluster's
	// node, which stands for masters that advertise loopback (their API
	// listens on it too): "" when there is none.
	LocalNode func() string
	// Interval is how often the masters are looked at again.
	Interval time.Duration
	Logger   *slog.Logger
}

// DefaultConfig returns a Config without Client and Masters.
func DefaultConfig() Config {
	return Config{IP: netip.MustParseAddr("10.96.0.1"), Interval: 5 * time.Second, Logger: slog.Default()}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	if c.Client == nil || c.Masters == nil || c.Logger == nil || !c.IP.Is4() || c.Interval <= 0 {
		return errors.New("kubeservice: config: Client, Masters, Logger, an IPv4 IP and a positive Interval are required")
	}
	return nil
}

// Keeper keeps the Service and its endpoints.
type Keeper struct {
	cfg Config
	// skipped is what the last pass left out, logged when it changes.
	skipped []string
}

// New returns a Keeper for cfg.
func New(cfg Config) (*Keeper, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Keeper{cfg: cfg}, nil
}

// Run keeps the Service and its endpoints until ctx ends; it returns nil
// then.
func (k *Keeper) Run(ctx context.Context) error {
	t := time.NewTicker(k.cfg.Interval)
	defer t.Stop()
	for {
		if err := k.sync(ctx); err != nil && ctx.Err() == nil {
			k.cfg.Logger.Warn("kubernetes service not reconciled", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Endpoints returns the addresses and the port of the masters pods can
// reach, and what it left out.
func Endpoints(masters []string) (ips []string, port int32, skipped []string) {
	for _, hp := range masters {
		host, p, err := net.SplitHostPort(hp)
		ip, ipErr := netip.ParseAddr(host)
		n, portErr := strconv.Atoi(p)
		switch {
		case err != nil || ipErr != nil || portErr != nil || !ip.Is4() || ip.IsLoopback() || ip.IsUnspecified():
			skipped = append(skipped, hp)
		case port == 0 || int32(n) == port:
			port = int32(n)
			ips = append(ips, ip.String())
		default:
			skipped = append(skipped, hp)
		}
	}
	slices.Sort(ips)
	return slices.Compact(ips), port, skipped
}

// localEndpoint is a single-node cluster's endpoint: the node's address
// and the port of the first master that advertises loopback.
func localEndpoint(masters []string, node string) (ips []string, port int32, skipped []string) {
	ip, err := netip.ParseAddr(node)
	if err != nil || !ip.Is4() || ip.IsLoopback() || ip.IsUnspecified() {
		return nil, 0, masters
	}
	for _, hp := range masters {
		host, p, err := net.SplitHostPort(hp)
		n, perr := strconv.Atoi(p)
		if a, aerr := netip.ParseAddr(host); err == nil && perr == nil && aerr == nil && a.IsLoopback() {
			return []string{ip.String()}, int32(n), nil
		}
	}
	return nil, 0, masters
}

func (k *Keeper) sync(ctx context.Context) error {
	masters := k.cfg.Masters()
	ips, port, skipped := Endpoints(masters)
	if len(ips) == 0 && k.cfg.LocalNode != nil {
		ips, port, skipped = localEndpoint(masters, k.cfg.LocalNode())
	}
	if !slices.Equal(skipped, k.skipped) {
		if len(skipped) > 0 {
			k.cfg.Logger.Warn("masters left out of the kubernetes service: pods reach only IPv4 addresses other than loopback, on one port", "masters", skipped)
		}
		k.skipped = skipped
	}
	if port == 0 {
		port = 6443 // nothing to reach yet: a target port all the same
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return errors.Join(k.service(rctx, port), k.endpoints(rctx, ips, port), k.slice(rctx, ips, port))
}

func (k *Keeper) service(ctx context.Context, port int32) error {
	ports := []corev1.ServicePort{{Name: PortName, Protocol: corev1.ProtocolTCP, Port: 443, TargetPort: intstr.FromInt32(port)}}
	svcs := k.cfg.Client.CoreV1().Services(Namespace)
	svc, err := svcs.Get(ctx, Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		ip := k.cfg.IP.String()
		_, err = svcs.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: Name, Labels: map[string]string{"component": "apiserver", "provider": "kubernetes"}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip}, Ports: ports,
				SessionAffinity: corev1.ServiceAffinityNone},
		}, metav1.CreateOptions{})
		if err == nil {
			k.cfg.Logger.Info("created the kubernetes service", "ip", ip, "targetPort", port)
		}
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	if len(svc.Spec.Ports) == 1 && svc.Spec.Ports[0].Name == PortName && svc.Spec.Ports[0].Port == 443 && svc.Spec.Ports[0].TargetPort == ports[0].TargetPort {
		return nil
	}
	svc.Spec.Ports = ports
	_, err = svcs.Update(ctx, svc, metav1.UpdateOptions{})
	return err
}

func (k *Keeper) endpoints(ctx context.Context, ips []string, port int32) error {
	var subsets []corev1.EndpointSubset //lint:ignore SA1019 Kubernetes still serves core/v1 Endpoints and clients read the API's
	if len(ips) > 0 {
		s := corev1.EndpointSubset{Ports: []corev1.EndpointPort{{Name: PortName, Port: port, Protocol: corev1.ProtocolTCP}}} //lint:ignore SA1019 as above
		for _, ip := range ips {
			s.Addresses = append(s.Addresses, corev1.EndpointAddress{IP: ip})
		}
		subsets = append(subsets, s)
	}
	eps := k.cfg.Client.CoreV1().Endpoints(Namespace)
	cur, err := eps.Get(ctx, Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = eps.Create(ctx, &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: Name}, Subsets: subsets}, metav1.CreateOptions{}) //lint:ignore SA1019 as above
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	if err != nil || apiequality.Semantic.DeepEqual(cur.Subsets, subsets) {
		return err
	}
	cur.Subsets = subsets
	_, err = eps.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

func (k *Keeper) slice(ctx context.Context, ips []string, port int32) error {
	ready, name, proto := true, PortName, corev1.ProtocolTCP
	want := discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: Name, Labels: map[string]string{discoveryv1.LabelServiceName: Name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
	}
	for _, ip := range ips {
		want.Endpoints = append(want.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	slices := k.cfg.Client.DiscoveryV1().EndpointSlices(Namespace)
	cur, err := slices.Get(ctx, Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = slices.Create(ctx, &want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	if apiequality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints) && apiequality.Semantic.DeepEqual(cur.Ports, want.Ports) &&
		cur.Labels[discoveryv1.LabelServiceName] == Name {
		return nil
	}
	cur.Endpoints, cur.Ports = want.Endpoints, want.Ports
	if cur.Labels == nil {
		cur.Labels = map[string]string{}
	}
	cur.Labels[discoveryv1.LabelServiceName] = Name
	_, err = slices.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}
