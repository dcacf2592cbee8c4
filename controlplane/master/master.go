// Package master serves the Kubernetes API of one master over its store:
// the cluster CA (created once, kept in the replicated store so every master
// shares it), the API server's TLS certificate, the admin kubeconfig, the
// namespaces every cluster has, and the HTTPS listener that authenticates
// client certificates of the cluster CA and bearer tokens kept in the store
// in front of the API and status handlers; and, while this master leads the
// Raft group, the leader-only controllers (the garbage collector), which
// reach the API of their own master as ControllerUser.
//
//	m, err := master.New(cfg) // cfg from DefaultConfig, with the store set
//	err = m.Run(ctx)          // the store must be running (or starting)
//
// Anonymous requests, and requests with a bad bearer token, get 401, except
// for /healthz, /livez, /readyz and /version, which Kubernetes also serves to
// anyone, and the cluster CA at bootstrap.CAPath. The admin verbs manage the
// bearer tokens with CreateToken, ListTokens and DeleteToken over the store
// or a remote client of it, and CreateJoinToken makes the join tokens that
// workers join with at bootstrap.JoinPath (join.go).
package master

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-sh/skiff/controlplane/client"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/controlplane/bootstrap"
	"github.com/skiff-sh/skiff/controlplane/internal/apiserver"
	"github.com/skiff-sh/skiff/controlplane/internal/authn"
	"github.com/skiff-sh/skiff/controlplane/internal/authz"
	"github.com/skiff-sh/skiff/controlplane/internal/nodeipam"
	"github.com/skiff-sh/skiff/controlplane/internal/nodelifecycle"
	"github.com/skiff-sh/skiff/controlplane/internal/pki"
	"github.com/skiff-sh/skiff/controlplane/internal/registry"
	"github.com/skiff-sh/skiff/controlplane/internal/satoken"
	"github.com/skiff-sh/skiff/controlplane/statusapi"
	"github.com/skiff-sh/skiff/raftstore"
)

// caKey is where the cluster CA lives in the store.
const caKey = "/skiff/pki/ca"

// serviceAccountKeyKey is where the key that signs service account tokens
// lives in the store (PEM).
const serviceAccountKeyKey = "/skiff/pki/service-account-key"

// APIServerUser is the identity the API server presents to node agents
// when it proxies pods' log, exec, attach and port-forward to them.
const APIServerUser = "system:skiff-apiserver"

// ControllerUser is the identity the leader-only controllers and the
// scheduler present to the API of their own master, in AdminGroup: they
// read and write every kind.
const ControllerUser = "system:skiff-controller-manager"

// AdminUser and AdminGroup are the identity of the admin kubeconfig.
const (
	AdminUser  = "skiff-admin"
	AdminGroup = "system:masters"
)

// Config configures a Master.
type Config struct {
	Store   *raftstore.Store
	DataDir string
	// APIAddr is the HTTPS listener of the Kubernetes API.
	APIAddr string
	// AdvertiseHost is the host or IP that clients use; it goes into the
	// serving certificate and the admin kubeconfig.
	AdvertiseHost string
	// ExtraSANs are more names or IPs for the serving certificate.
	ExtraSANs []string
	Profiling bool
	Logger    *slog.Logger
	// DefaultTolerationSeconds is what pods tolerate of a failed node
	// unless they say otherwise (apiserver.Config's).
	DefaultTolerationSeconds int64
	// NodeMonitorGracePeriod is how long a node may go without a
	// heartbeat before it is unreachable (nodelifecycle.Config's).
	NodeMonitorGracePeriod time.Duration
	// ClusterCIDR is where nodes' pod CIDRs come from, NodeCIDRMaskSize
	// the prefix length of each (nodeipam.Config's).
	ClusterCIDR      netip.Prefix
	NodeCIDRMaskSize int
	// GossipAddr is the listener of this master's member of the gossip
	// pool, host:port (TCP and UDP). A listener on every address
	// advertises AdvertiseHost and needs a fixed port.
	GossipAddr string
	// OnReady, if set, is called once the API serves, with its URL and the
	// path of the admin kubeconfig.
	OnReady func(url, kubeconfig string)
	// SingleNode says the cluster is one host whose master advertises
	// loopback (skiff up): pods reach the API through the node's address
	// instead, so the API must listen on it too.
	SingleNode bool
}

// DefaultConfig returns a Config without Store and DataDir.
func DefaultConfig() Config {
	return Config{
		APIAddr: ":6443", AdvertiseHost: "127.0.0.1", Logger: slog.Default(),
		DefaultTolerationSeconds: apiserver.DefaultTolerationSeconds,
		NodeMonitorGracePeriod:   nodelifecycle.DefaultConfig().GracePeriod,
		ClusterCIDR:              nodeipam.DefaultClusterCIDR, NodeCIDRMaskSize: nodeipam.DefaultNodeMaskSize,
		GossipAddr: "127.0.0.1:0",
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("master: config: Store is required")
	case c.DataDir == "":
		return errors.New("master: config: DataDir is required")
	case c.APIAddr == "":
		return errors.New("master: config: APIAddr is required")
	case c.AdvertiseHost == "":
		return errors.New("master: config: AdvertiseHost is required")
	case c.GossipAddr == "":
		return errors.New("master: config: GossipAddr is required")
	case c.DefaultTolerationSeconds < 0 || c.NodeMonitorGracePeriod <= 0:
		return fmt.Errorf("master: config: DefaultTolerationSeconds %d must not be negative and NodeMonitorGracePeriod %v must be positive", c.DefaultTolerationSeconds, c.NodeMonitorGracePeriod)
	}
	if err := nodeipam.CheckRanges(c.ClusterCIDR, c.NodeCIDRMaskSize); err != nil {
		return fmt.Errorf("master: config: %w", err)
	}
	return nil
}

// Master is the API side of one master.
type Master struct {
	cfg Config
	log *slog.Logger
}

// New validates cfg.
func New(cfg Config) (*Master, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Master{cfg: cfg, log: cfg.Logger}, nil
}

// KubeconfigPath returns where the admin kubeconfig of a data directory is.
func KubeconfigPath(dataDir string) string { return filepath.Join(dataDir, "admin.kubeconfig") }

// PKIDir returns where a master keeps its copy of the cluster CA.
func PKIDir(dataDir string) string { return filepath.Join(dataDir, "pki") }

// Run gets the cluster CA (creating it if this is the first master), writes
// the admin kubeconfig, makes sure the default namespaces exist and serves
// the API until ctx ends; then it shuts the listener down gracefully.
func (m *Master) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", m.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("master: API listener: %w", err)
	}
	defer ln.Close()
	ca, err := m.clusterCA(ctx)
	if err != nil {
		return err
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	apiHost := net.JoinHostPort(m.cfg.AdvertiseHost, port) // as gossip names it to the other masters
	server := "https://" + apiHost
	certPEM, keyPEM, err := ca.IssueServing(m.sans())
	if err != nil {
		return err
	}
	tlsCfg, err := pki.ServerTLSConfig(certPEM, keyPEM, ca)
	if err != nil {
		return err
	}
	if err := writeAdminKubeconfig(m.cfg.DataDir, server, ca); err != nil {
		return err
	}

	scheme := apiserver.NewScheme()
	reg, err := registry.New(registry.Config{KV: m.cfg.Store, Scheme: scheme})
	if err != nil {
		return err
	}
	agents, err := agentTransport(ca)
	if err != nil {
		return err
	}
	acfg := apiserver.DefaultConfig()
	acfg.Store, acfg.Scheme, acfg.Logger, acfg.AgentTransport = reg, scheme, m.log, agents
	acfg.DefaultTolerationSeconds = m.cfg.DefaultTolerationSeconds
	acfg.UserFrom = func(ctx context.Context) (apiserver.UserInfo, bool) {
		u, ok := authn.UserFrom(ctx)
		return apiserver.UserInfo{Name: u.Name, Groups: u.Groups}, ok
	}
	if acfg.ServiceAccountTokens, err = m.serviceAccountSigner(ctx); err != nil {
		return err
	}
	acfg.ServiceAccountAdmission = true
	// TokenReviews of Skiff's own bearer tokens ask the authenticator,
	// which is made once the API server exists and before it serves.
	var bearer *authn.Authenticator
	acfg.BearerTokens = func(token string) (apiserver.UserInfo, error) {
		u, err := bearer.AuthenticateToken(token)
		return apiserver.UserInfo{Name: u.Name, Groups: u.Groups}, err
	}
	// So do access reviews ask the authorizer, made once the API server
	// (which serves the RBAC objects it reads) exists.
	reviews := &authorizerRef{}
	acfg.Authorizer = reviews
	api, err := apiserver.New(acfg)
	if err != nil {
		return err
	}
	tokens, err := m.runTokens(ctx, api)
	if err != nil {
		return err
	}
	bearer = tokens.Authenticator
	defer tokens.stop()
	if err := ensureNamespaces(ctx, reg, api); err != nil {
		return err
	}
	if err := ensureRBAC(ctx, reg, api); err != nil {
		return err
	}
	rbac, err := runAuthorizer(ctx, reg, api)
	if err != nil {
		return err
	}
	defer rbac.stop()
	reviews.RBAC = rbac.RBAC
	select {
	case <-tokens.Synced():
	case <-ctx.Done():
		return fmt.Errorf("master: loading bearer tokens: %w", ctx.Err())
	}
	if err := rbac.waitSynced(ctx); err != nil {
		return err
	}
	status, routes := withMetrics(statusapi.Handler(m.cfg.Store, m.cfg.Profiling), m.cfg.Store, api), withJoin(ca, m.log, api.Handler())
	// The leader's components are served in process, as the controller
	// user: the same checks and routes as over the listener, without a
	// connection.
	controllerUser := authn.NewUser(ControllerUser, []string{AdminGroup})
	inProcess := authenticate(func(*http.Request) (authn.User, error) { return controllerUser, nil }, rbac.RBAC, m.log, status, routes)
	srv := &http.Server{
		Handler:           authenticate(tokens.Authenticator.AuthenticateRequest, rbac.RBAC, m.log, status, routes),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelDebug),
	}
	pool, err := m.gossipPool(ctx, server)
	if err != nil {
		return err
	}
	controllers, err := m.controllers(ln.Addr().(*net.TCPAddr), ca, acfg.ServiceAccountTokens, pool, localAPI{handler: inProcess, self: apiHost, typed: api.ListerWatcher, metadata: api.MetadataListerWatcher})
	if err != nil {
		return err
	}
	// The gossip pool outlives the controllers that read it.
	gossipCtx, stopGossip := context.WithCancel(context.WithoutCancel(ctx))
	gossipDone := make(chan error, 1)
	go func() { gossipDone <- pool.Run(gossipCtx) }()
	go m.announceGossip(gossipCtx, pool)
	defer func() {
		stopGossip()
		<-gossipDone
	}()
	// The API's own background state (the Node authorizer's graph) lives
	// as long as the API serves.
	apiCtx, stopAPI := context.WithCancel(context.WithoutCancel(ctx))
	apiDone := make(chan error, 1)
	go func() { apiDone <- api.Run(apiCtx) }()
	defer func() {
		stopAPI()
		if err := <-apiDone; err != nil {
			m.log.Error("API background state ended", "err", err)
		}
	}()
	m.log.Info("Kubernetes API serving", "addr", ln.Addr().String(), "kubeconfig", KubeconfigPath(m.cfg.DataDir))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(tls.NewListener(ln, tlsCfg)) }()
	if m.cfg.OnReady != nil {
		m.cfg.OnReady(server, KubeconfigPath(m.cfg.DataDir))
	}
	// The controllers stop before the API they talk to.
	ctrlCtx, stopControllers := context.WithCancel(ctx)
	ctrlDone := make(chan struct{})
	go func() {
		defer close(ctrlDone)
		controllers.Run(ctrlCtx) // returns nil, once ctrlCtx ends and the components have returned
	}()
	select {
	case err := <-done:
		stopControllers()
		<-ctrlDone
		return fmt.Errorf("master: API server: %w", err)
	case <-ctx.Done():
	}
	stopControllers()
	<-ctrlDone
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Watches never end by themselves: close what is still open after the grace period.
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-done
	return nil
}

// tokenAuthenticator is a running authn.Authenticator; stop ends it and
// waits for it.
type tokenAuthenticator struct {
	*authn.Authenticator
	stop func()
}

// runTokens starts the authenticator of bearer tokens over the store. It
// loads the tokens in the background: wait for Synced before serving.
func (m *Master) runTokens(ctx context.Context, api *apiserver.Server) (tokenAuthenticator, error) {
	cfg := authn.DefaultConfig()
	cfg.Store, cfg.Logger = m.cfg.Store, m.log
	cfg.ServiceAccounts = func(ctx context.Context, token string) (string, []string, error) {
		u, err := api.AuthenticateServiceAccountToken(ctx, token)
		return u.Name, u.Groups, err
	}
	a, err := authn.New(cfg)
	if err != nil {
		return tokenAuthenticator{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Run(ctx) // returns nil, once ctx ends
	}()
	return tokenAuthenticator{Authenticator: a, stop: func() { cancel(); <-done }}, nil
}

// sans returns the names and IPs of the serving certificate.
func (m *Master) sans() ([]string, []net.IP, time.Duration) {
	var names []string
	var ips []net.IP
	for _, s := range append([]string{m.cfg.AdvertiseHost}, m.cfg.ExtraSANs...) {
		if ip := net.ParseIP(s); ip != nil {
			ips = append(ips, ip)
		} else {
			names = append(names, s)
		}
	}
	if host, err := os.Hostname(); err == nil {
		names = append(names, host)
	}
	// Pods reach the API at the kubernetes Service's cluster IP.
	ips = append(ips, net.IP(apiserver.KubernetesServiceIP(apiserver.DefaultServiceCIDR).AsSlice()))
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				ips = append(ips, ipn.IP)
			}
		}
	}
	return names, ips, 365 * 24 * time.Hour
}

// storedCA is the store's record of the cluster CA.
type storedCA struct {
	Cert []byte `json:"cert"`
	Key  []byte `json:"key"`
}

// clusterCA returns the cluster CA from the store, creating it if this is
// the first master, and keeps a copy under PKIDir.
func (m *Master) clusterCA(ctx context.Context) (*pki.CA, error) {
	v, err := m.sharedValue(ctx, caKey, func() ([]byte, error) {
		certPEM, keyPEM, err := pki.GenerateCA()
		if err != nil {
			return nil, err
		}
		m.log.Info("creating the cluster CA")
		return json.Marshal(storedCA{Cert: certPEM, Key: keyPEM})
	})
	if err != nil {
		return nil, fmt.Errorf("master: cluster CA: %w", err)
	}
	var sc storedCA
	if err := json.Unmarshal(v, &sc); err != nil {
		return nil, fmt.Errorf("master: cluster CA record: %w", err)
	}
	ca, err := pki.LoadCA(sc.Cert, sc.Key)
	if err != nil {
		return nil, err
	}
	return ca, m.keepCA(ca)
}

// serviceAccountSigner returns the signer of service account tokens, with
// the cluster's key from the store (created by the first master).
func (m *Master) serviceAccountSigner(ctx context.Context) (*satoken.Signer, error) {
	key, err := m.sharedValue(ctx, serviceAccountKeyKey, func() ([]byte, error) {
		m.log.Info("creating the service account signing key")
		return satoken.GenerateKey()
	})
	if err != nil {
		return nil, fmt.Errorf("master: service account key: %w", err)
	}
	return satoken.NewSigner(key)
}

// keepCA writes the CA under PKIDir, replacing an older copy.
func (m *Master) keepCA(ca *pki.CA) error {
	dir := PKIDir(m.cfg.DataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, pki.CACertFile), ca.CertPEM(), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, pki.CAKeyFile), ca.KeyPEM(), 0o600)
}

// LoadCA reads the copy of the cluster CA a master keeps in dataDir.
func LoadCA(dataDir string) (*pki.CA, error) {
	dir := PKIDir(dataDir)
	certPEM, err := os.ReadFile(filepath.Join(dir, pki.CACertFile))
	if err != nil {
		return nil, fmt.Errorf("master: no cluster CA in %s (has this master run?): %w", dir, err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, pki.CAKeyFile))
	if err != nil {
		return nil, err
	}
	return pki.LoadCA(certPEM, keyPEM)
}

// Kubeconfig returns a kubeconfig for server with a new client certificate
// for user in groups, valid for validity.
func Kubeconfig(ca *pki.CA, server, user string, groups []string, validity time.Duration) ([]byte, error) {
	certPEM, keyPEM, err := ca.IssueClient(user, groups, validity)
	if err != nil {
		return nil, err
	}
	return pki.Kubeconfig(server, ca.CertPEM(), certPEM, keyPEM, "skiff", user, "skiff")
}

func writeAdminKubeconfig(dataDir, server string, ca *pki.CA) error {
	certPEM, keyPEM, err := ca.IssueClient(AdminUser, []string{AdminGroup}, 365*24*time.Hour)
	if err != nil {
		return err
	}
	return pki.WriteKubeconfig(KubeconfigPath(dataDir), server, ca.CertPEM(), certPEM, keyPEM, "skiff", AdminUser, "skiff")
}

// ensureNamespaces creates the namespaces every Kubernetes cluster has.
func ensureNamespaces(ctx context.Context, reg *registry.Store, api *apiserver.Server) error {
	res := api.Resource("", "namespaces")
	if res == nil {
		return errors.New("master: the API serves no namespaces")
	}
	for _, name := range []string{metav1.NamespaceDefault, metav1.NamespaceSystem, metav1.NamespacePublic, corev1.NamespaceNodeLease} {
		if err := ensure(ctx, reg, res, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, nil); err != nil {
			return fmt.Errorf("master: create namespace %s: %w", name, err)
		}
	}
	return nil
}

// storedObject is a Kubernetes object with its metadata.
type storedObject interface {
	runtime.Object
	metav1.Object
}

// ensure creates the cluster-scoped def unless it exists, else updates it
// with what reconcile (when not nil) makes of it, retrying until ctx ends.
// It reads first: a master that restarts with everything in place writes
// nothing (a create that fails is a Raft entry too).
func ensure(ctx context.Context, reg *registry.Store, res *registry.Resource, def storedObject, reconcile func(runtime.Object) (runtime.Object, bool)) error {
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cur, err := reg.Get(cctx, res, "", def.GetName(), registry.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = reg.Create(cctx, res, "", def, registry.CreateOptions{})
		case err == nil && reconcile != nil:
			if next, changed := reconcile(cur); changed {
				_, err = reg.Update(cctx, res, "", def.GetName(), next, registry.UpdateOptions{})
			}
		}
		cancel()
		if err == nil || apierrors.IsAlreadyExists(err) {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
}

// withMetrics serves GET /metrics from the store's metrics followed by the
// API server's request metrics; every other request goes to status.
func withMetrics(status http.Handler, store *raftstore.Store, api *apiserver.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" || r.Method != http.MethodGet {
			status.ServeHTTP(w, r)
			return
		}
		var buf bytes.Buffer
		if err := statusapi.WriteMetrics(r.Context(), &buf, store); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if err := api.WriteMetrics(&buf); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", statusapi.MetricsContentType)
		_, _ = w.Write(buf.Bytes()) // a client that went away is not an error of ours
	})
}

// authenticate lets through requests that identify authenticates (a
// verified client certificate or a valid bearer token: authn's
// AuthenticateRequest) and authorizer allows, with the user in their
// context; others get 401 or 403, except the paths Kubernetes serves to
// anyone.
func authenticate(identify func(*http.Request) (authn.User, error), authorizer *authz.RBAC, log *slog.Logger, status, api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz", "/livez", "/readyz":
			if r.URL.Path == "/livez" {
				r.URL.Path = "/healthz"
			}
			status.ServeHTTP(w, r)
			return
		case "/version", bootstrap.CAPath:
			api.ServeHTTP(w, r)
			return
		}
		user, err := identify(r)
		if err != nil {
			if !errors.Is(err, authn.ErrNoCredentials) {
				// The error names a token's ID at most, never the token.
				log.Debug("authentication failed", "remote", r.RemoteAddr, "path", r.URL.Path, "err", err)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(metav1.Status{
				TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status:   metav1.StatusFailure, Message: "Unauthorized", Reason: metav1.StatusReasonUnauthorized, Code: http.StatusUnauthorized,
			})
			return
		}
		// kubectl --as: whoever RBAC lets impersonate (never a joining node).
		switch as, ok, err := authn.Impersonated(r.Header); {
		case err != nil:
			writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error())
			return
		case ok && confined(user, ""):
			writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, fmt.Sprintf("user %q cannot impersonate users", user.Name))
			return
		case ok:
			if !authorizeImpersonation(authorizer, w, r, user) {
				return
			}
			user = as
		}
		if confined(user, r.URL.Path) {
			writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, fmt.Sprintf("user %q may only join nodes (%s)", user.Name, bootstrap.JoinPath))
			return
		}
		if r.URL.Path != bootstrap.JoinPath && !authorizeRequest(authorizer, log, w, r, user) {
			return
		}
		r = r.WithContext(authn.WithUser(r.Context(), user))
		switch r.URL.Path {
		case "/status", "/metrics":
			status.ServeHTTP(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
			status.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// agentTransport is how the API server reaches node agents: HTTP/1.1 over
// TLS (exec and port-forward upgrade the connection), the agent verified
// against the cluster CA, with a client certificate of APIServerUser.
func agentTransport(ca *pki.CA) (*http.Transport, error) {
	certPEM, keyPEM, err := ca.IssueClient(APIServerUser, nil, 365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &http.Transport{
		TLSClientConfig:     &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12},
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
	}, nil
}

// loopbackConfig is a client configuration for this master's own API at
// addr (the loopback address when it listens on every address), with a new
// client certificate of the cluster CA for user in groups.
func loopbackConfig(addr *net.TCPAddr, ca *pki.CA, user string, groups []string) (*rest.Config, error) {
	certPEM, keyPEM, err := ca.IssueClient(user, groups, 365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	cfg := &rest.Config{
		Host:            "https://" + net.JoinHostPort(host, strconv.Itoa(addr.Port)),
		TLSClientConfig: rest.TLSClientConfig{CAData: ca.CertPEM(), CertData: certPEM, KeyData: keyPEM},
		UserAgent:       "skiff-controller-manager",
		QPS:             200,
		Burst:           400,
	}
	// Protobuf, as kube-controller-manager and kube-scheduler talk: a bind
	// encoded as JSON cost the leader more than scheduling it. The
	// scheduler's and the controllers' bursts of concurrent writes would
	// open and close connections with client-go's 25 idle ones per host.
	client.Protobuf(cfg)
	if err := client.KeepConns(cfg, 256); err != nil {
		return nil, err
	}
	return cfg, nil
}
