package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"

	"github.com/skiff-sh/skiff/controlplane/internal/fieldmanager"
	"github.com/skiff-sh/skiff/controlplane/internal/openapi"
	"github.com/skiff-sh/skiff/controlplane/internal/registry"
	"github.com/skiff-sh/skiff/controlplane/internal/satoken"
)

// DefaultMaxBodyBytes is the largest request body accepted, as in
// kube-apiserver (3 MiB); larger bodies get 413.
const DefaultMaxBodyBytes = 3 << 20

// Config configures a Server.
type Config struct {
	// Store holds the objects; it must be built with Scheme.
	Store *registry.Store
	// Scheme is NewScheme(); it encodes and decodes every served type.
	Scheme *runtime.Scheme
	// Logger receives request errors the client cannot be told about
	// (a broken watch stream).
	Logger *slog.Logger
	// Now is the clock for the AGE column of tables.
	Now func() time.Time
	// MaxBodyBytes caps request bodies.
	MaxBodyBytes int64
	// Version is what /version reports. Its minor must be one the kubectl
	// dispatcher has a binary for: it runs kubectl.1.<minor>.
	Version version.Info
	// AgentTransport reaches the agents of nodes for pods' log, exec,
	// attach and portforward (pods.go): TLS with the API server's client
	// certificate. Nil: those requests answer 503.
	AgentTransport http.RoundTripper
	// ServiceCIDR is where services' cluster IPs come from; NodePorts the
	// range of their node ports.
	ServiceCIDR netip.Prefix
	NodePorts   PortRange
	// DefaultTolerationSeconds is how long a pod that says nothing about
	// it tolerates its node being not ready or unreachable before the node
	// lifecycle controller evicts it (DefaultTolerationSeconds admission;
	// Kubernetes' default is 300).
	DefaultTolerationSeconds int64
	// Address is the host:port /api tells clients to use
	// (serverAddressByClientCIDRs); empty means the request's Host.
	Address string
	// UserFrom returns who authentication found a request's context to
	// come from, for the self reviews (reviews.go); nil, or ok false: no
	// one.
	UserFrom func(ctx context.Context) (user UserInfo, ok bool)
	// ServiceAccountTokens signs and verifies service account tokens
	// (satokens.go); nil: serviceaccounts/token answers 503 and no such
	// token authenticates.
	ServiceAccountTokens *satoken.Signer
	// BearerTokens authenticates the other bearer tokens for TokenReviews
	// (package authn's); nil: only service account tokens review as
	// authenticated.
	BearerTokens func(token string) (UserInfo, error)
	// Authorizer decides the access reviews (reviews.go), with the rules
	// that authorize the requests, and checks writes of RBAC objects for
	// escalation (rbacadmission.go); nil: every review is allowed and
	// every write admitted, as with kube-apiserver's AlwaysAllow.
	Authorizer Authorizer
	// ServiceAccountAdmission mounts the service account token volume into
	// new pods (satokenmount.go), as kube-apiserver's ServiceAccount
	// admission plugin. It needs the root-ca-cert-publisher (kube-root-ca.crt)
	// and ServiceAccountTokens for the pods to start.
	ServiceAccountAdmission bool
}

// UserInfo is who a request comes from.
type UserInfo struct {
	Name   string
	Groups []string
	// UID and Extra are what a service account token tells beyond them.
	UID   string
	Extra map[string][]string
}

// authentication returns u as the authentication API writes users.
func (u UserInfo) authentication() authenticationv1.UserInfo {
	out := authenticationv1.UserInfo{Username: u.Name, UID: u.UID, Groups: u.Groups}
	for k, v := range u.Extra {
		if out.Extra == nil {
			out.Extra = map[string]authenticationv1.ExtraValue{}
		}
		out.Extra[k] = v
	}
	return out
}

// DefaultConfig returns a Config without Store and Scheme, reporting
// Kubernetes v1.32.4.
func DefaultConfig() Config {
	return Config{
		Logger:                   slog.New(slog.DiscardHandler),
		Now:                      time.Now,
		MaxBodyBytes:             DefaultMaxBodyBytes,
		ServiceCIDR:              DefaultServiceCIDR,
		NodePorts:                DefaultNodePortRange,
		DefaultTolerationSeconds: DefaultTolerationSeconds,
		Version: version.Info{
			Major: "1", Minor: "32", GitVersion: "v1.32.4-skiff", GitCommit: "skiff", GitTreeState: "clean",
			BuildDate: "2025-01-01T00:00:00Z", GoVersion: "go1.26", Compiler: "gc", Platform: "linux/amd64",
		},
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("apiserver: config: Store is required")
	case c.Scheme == nil:
		return errors.New("apiserver: config: Scheme is required")
	case c.Logger == nil || c.Now == nil:
		return errors.New("apiserver: config: Logger and Now are required")
	case c.MaxBodyBytes <= 0:
		return fmt.Errorf("apiserver: config: MaxBodyBytes %d must be positive", c.MaxBodyBytes)
	case !c.ServiceCIDR.IsValid() || !c.ServiceCIDR.Addr().Is4() || c.ServiceCIDR.Bits() > 30:
		return fmt.Errorf("apiserver: config: ServiceCIDR %s must be an IPv4 prefix of at least 4 addresses", c.ServiceCIDR)
	case c.NodePorts.Base < 1 || c.NodePorts.Size < 1 || c.NodePorts.Base+c.NodePorts.Size > 65536:
		return fmt.Errorf("apiserver: config: NodePorts %s is not a port range", c.NodePorts)
	case c.Version.Major == "" || c.Version.Minor == "":
		return errors.New("apiserver: config: Version needs a major and a minor")
	case c.DefaultTolerationSeconds < 0:
		return fmt.Errorf("apiserver: config: DefaultTolerationSeconds %d must not be negative", c.DefaultTolerationSeconds)
	}
	return nil
}

// Server serves the Kubernetes REST API over a registry.Store. It is safe
// for concurrent use.
type Server struct {
	cfg    Config
	codecs *codecs
	// byGV maps "group/version" ("v1" for core) to its resources by plural.
	byGV map[string]map[string]*resource
	// groups lists the served group versions in discovery order; core first.
	groups []schema.GroupVersion
	all    []*resource
	nodes  *resource
	// budgets are the PodDisruptionBudgets an eviction checks.
	budgets *resource
	// fields tracks managedFields and serves server-side apply.
	fields *fieldmanager.Set
	// openapi holds the /openapi/v3 documents, built once by New.
	openapi *openapi.Documents
	metrics requestMetrics // see metrics.go
	// graph is the Node authorizer's (nodegraph.go), kept by Run.
	graph *nodeGraph
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, codecs: newCodecs(cfg.Scheme), byGV: map[string]map[string]*resource{}, fields: fieldmanager.New(cfg.Scheme), graph: newNodeGraph()}
	s.all = complete(append(resources(cfg.DefaultTolerationSeconds), reviews()...))
	for _, r := range s.all {
		kinds := []schema.GroupVersionKind{r.reg.Kind}
		if r.reg.NewList != nil {
			kinds = append(kinds, r.reg.Kind.GroupVersion().WithKind(r.kind+"List"))
		}
		for _, gvk := range kinds {
			if !cfg.Scheme.Recognizes(gvk) {
				return nil, fmt.Errorf("apiserver: scheme does not know %s", gvk)
			}
		}
		gv := r.gvr.GroupVersion()
		if s.byGV[gv.String()] == nil {
			s.byGV[gv.String()] = map[string]*resource{}
			s.groups = append(s.groups, gv)
		}
		s.byGV[gv.String()][r.gvr.Resource] = r
		switch r.gvr {
		case corev1.SchemeGroupVersion.WithResource("nodes"):
			s.nodes = r
		case policyv1.SchemeGroupVersion.WithResource("poddisruptionbudgets"):
			s.budgets = r
		case corev1.SchemeGroupVersion.WithResource("services"):
			alloc := &serviceAllocator{cidr: cfg.ServiceCIDR.Masked(), ports: cfg.NodePorts}
			r.reg.Reservations = alloc.reservations()
		}
		if r.gvr.Group == rbacv1.GroupName && cfg.Authorizer != nil {
			r.reg.Admit = s.admitRBAC
		}
		switch r.gvr.GroupResource() {
		case nodesResource, podsResource, leasesResource:
			r.reg.Admit = s.admitNodeWrite
		}
	}
	var err error
	if s.openapi, err = newOpenAPI(s.all); err != nil {
		return nil, err
	}
	return s, nil
}

// Resource returns the registry description of a served resource (group ""
// for core), or nil: for callers that write objects directly, such as the
// master creating the default namespaces.
func (s *Server) Resource(group, plural string) *registry.Resource {
	for _, r := range s.all {
		if r.gvr.Group == group && r.gvr.Resource == plural {
			return r.reg
		}
	}
	return nil
}

// Handler returns the HTTP handler of the API, counted by WriteMetrics. It
// does no authentication.
func (s *Server) Handler() http.Handler { return s.instrument(http.HandlerFunc(s.serveHTTP)) }

// serveHTTP routes a request by its path:
//
//	/version, /api, /apis, /apis/{group}          discovery
//	/openapi/v3[/{prefix}]                         OpenAPI v3 index and documents
//	/api/v1, /apis/{group}/{version}               resource lists
//	{prefix}/{resource}[/{name}]                   cluster-scoped, or all namespaces
//	{prefix}/namespaces/{ns}/{resource}[/{name}]   namespaced
//	.../{resource}/{name}/{subresource}             subresources (subresources.go)
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var gv schema.GroupVersion
	switch {
	case r.URL.Path == "/version" || r.URL.Path == "/version/":
		s.getOnly(w, r, func() { writeJSON(w, http.StatusOK, s.cfg.Version) })
		return
	case segs[0] == "openapi" && len(segs) >= 2 && segs[1] == "v3":
		s.getOnly(w, r, func() { s.serveOpenAPI(w, r) })
		return
	case (segs[0] == "api" || segs[0] == "apis") && len(segs) == 1 && wantsAggregated(r.Header.Get("Accept")):
		s.getOnly(w, r, func() { s.serveAggregated(w, segs[0] == "api") })
		return
	case segs[0] == "api" && len(segs) == 1:
		s.getOnly(w, r, func() { s.serveAPIVersions(w, r) })
		return
	case segs[0] == "apis" && len(segs) == 1:
		s.getOnly(w, r, func() { s.serveAPIGroupList(w) })
		return
	case segs[0] == "apis" && len(segs) == 2:
		s.getOnly(w, r, func() { s.serveAPIGroup(w, r, segs[1]) })
		return
	case segs[0] == "api" && len(segs) >= 2:
		gv, segs = schema.GroupVersion{Version: segs[1]}, segs[2:]
	case segs[0] == "apis" && len(segs) >= 3:
		gv, segs = schema.GroupVersion{Group: segs[1], Version: segs[2]}, segs[3:]
	default:
		writeError(w, notFound())
		return
	}
	byName := s.byGV[gv.String()]
	if byName == nil {
		writeError(w, notFound())
		return
	}
	if len(segs) == 0 {
		s.getOnly(w, r, func() { s.serveResourceList(w, gv) })
		return
	}
	var ns string
	if len(segs) >= 3 && segs[0] == "namespaces" {
		if res := byName[segs[2]]; res != nil && res.namespaced {
			ns, segs = segs[1], segs[2:]
		}
	}
	res := byName[segs[0]]
	if res == nil || (res.namespaced && ns == "" && len(segs) > 1) || len(segs) > 3 || slices.Contains(segs, "") {
		writeError(w, notFound())
		return
	}
	switch {
	case res.review != nil && len(segs) == 1:
		if err := s.serveReview(w, r, res, ns); err != nil {
			writeError(w, err)
		}
		return
	case res.review != nil:
		writeError(w, notFound())
		return
	}
	var name, sub string
	if len(segs) >= 2 {
		name = segs[1]
	}
	if len(segs) == 3 {
		sub = segs[2]
	}
	if err := s.restrictNode(r, res, ns, name, sub); err != nil {
		writeError(w, err)
		return
	}
	if err := s.authorizeNodeRead(r, res); err != nil {
		writeError(w, err)
		return
	}
	switch len(segs) {
	case 1:
		s.serveCollection(w, r, res, ns)
		return
	case 3:
		s.serveSubresource(w, r, res, ns, segs[1], segs[2])
		return
	}
	s.serveItem(w, r, res, ns, segs[1])
}

// getOnly runs serve for GET and answers 405 otherwise.
func (s *Server) getOnly(w http.ResponseWriter, r *http.Request, serve func()) {
	if r.Method != http.MethodGet {
		writeError(w, methodNotAllowed(r.Method))
		return
	}
	serve()
}

// notFound is kube-apiserver's 404 for a path it does not serve.
func notFound() error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound,
		Message: "the server could not find the requested resource", Details: &metav1.StatusDetails{},
	}}
}

func methodNotAllowed(method string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusMethodNotAllowed, Reason: metav1.StatusReasonMethodNotAllowed,
		Message: fmt.Sprintf("the server does not allow this method on the requested resource (%s)", method),
	}}
}

// writeError writes err as a metav1.Status with the status's code; errors
// that are not API errors are 500. A status that asks the client to retry
// (details.retryAfterSeconds) also gets the Retry-After header, as
// kube-apiserver sends it: client-go retries a 429 or 5xx only when the
// header is there, the body alone does not make it wait and try again.
func writeError(w http.ResponseWriter, err error) {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		status = apierrors.NewInternalError(err)
	}
	st := status.Status()
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	if st.Status == "" {
		st.Status = metav1.StatusFailure
	}
	if st.Code == 0 {
		st.Code = http.StatusInternalServerError
	}
	if st.Details != nil && st.Details.RetryAfterSeconds > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(st.Details.RetryAfterSeconds)))
	}
	writeJSON(w, int(st.Code), &st)
}

// writeJSON writes v as the JSON body of a response with the given code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	writeJSONAs(w, code, "application/json", v)
}

// writeJSONAs is writeJSON with another JSON media type (a successful
// answer's; errors are application/json).
func writeJSONAs(w http.ResponseWriter, code int, contentType string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		body, _ = json.Marshal(&metav1.Status{
			TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
			Code: http.StatusInternalServerError, Reason: metav1.StatusReasonInternalError,
			Message: "encoding the response: " + err.Error(),
		})
		contentType = "application/json"
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n')) // a client that went away is not an error of ours
}
