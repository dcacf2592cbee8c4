package master

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/skiff-sh/skiff/controlplane/bootstrap"
	"github.com/skiff-sh/skiff/controlplane/internal/authn"
	"github.com/skiff-sh/skiff/controlplane/internal/pki"
	"github.com/skiff-sh/skiff/controlplane/membership"
	"github.com/skiff-sh/skiff/raftstore"
)

// NodeCertValidity is how long the certificates the join endpoint signs
// for a worker are valid.
const NodeCertValidity = 365 * 24 * time.Hour

// maxJoinRequest bounds the body of a join request (two CSRs and a name).
const maxJoinRequest = 64 << 10

// JoinKV is the part of the store that CreateJoinToken uses; a
// *raftstore.Store and a remote *raftstore.Client both provide it.
type JoinKV interface {
	TokenKV
	Get(ctx context.Context, key string, o raftstore.ReadOptions) (*raftstore.KeyValue, int64, error)
}

// ErrClusterNotReady is returned by CreateJoinToken when the store holds no
// cluster CA or gossip key yet: no master has run to completion.
var ErrClusterNotReady = errors.New("master: the cluster has no CA or gossip key yet (has a master started?)")

// CreateJoinToken stores a new bearer token for a joining worker, a user
// bootstrap.BootstrapUserPrefix+<random ID> in bootstrap.BootstrapGroup
// valid for ttl (0: forever), and returns the join token that carries it
// with the cluster CA's hash and the gossip key (bootstrap.Token), and the
// token's record. The bearer token authenticates at the join endpoint only.
func CreateJoinToken(ctx context.Context, kv JoinKV, ttl time.Duration, description string) (string, Token, error) {
	caKV, _, err := kv.Get(ctx, caKey, raftstore.ReadOptions{})
	if err != nil {
		return "", Token{}, fmt.Errorf("master: read the cluster CA: %w", err)
	}
	keyKV, _, err := kv.Get(ctx, gossipKeyKey, raftstore.ReadOptions{})
	if err != nil {
		return "", Token{}, fmt.Errorf("master: read the gossip key: %w", err)
	}
	if caKV == nil || keyKV == nil {
		return "", Token{}, ErrClusterNotReady
	}
	var sc storedCA
	if err := json.Unmarshal(caKV.Value, &sc); err != nil {
		return "", Token{}, fmt.Errorf("master: cluster CA record: %w", err)
	}
	ca, err := pki.LoadCA(sc.Cert, sc.Key)
	if err != nil {
		return "", Token{}, err
	}
	if len(keyKV.Value) != membership.KeySize {
		return "", Token{}, fmt.Errorf("master: the stored gossip key has %d bytes, want %d", len(keyKV.Value), membership.KeySize)
	}
	var id [6]byte
	rand.Read(id[:]) // crypto/rand.Read never fails; it crashes the program instead.
	if description == "" {
		description = "join token"
	}
	secret, rec, err := CreateToken(ctx, kv, TokenSpec{
		User:        bootstrap.BootstrapUserPrefix + hex.EncodeToString(id[:]),
		Groups:      []string{bootstrap.BootstrapGroup},
		TTL:         ttl,
		Description: description,
	})
	if err != nil {
		return "", Token{}, err
	}
	tok := bootstrap.Token{CAHash: bootstrap.HashCA(ca.Certificate()), GossipKey: keyKV.Value, Bearer: secret}
	return tok.String(), rec, nil
}

// GossipAddrs returns the gossip addresses the masters announced in the
// store (host:port), sorted by master: where workers join the pool
// (`skiff agent --join`).
func GossipAddrs(ctx context.Context, kv TokenKV) ([]string, error) {
	lr, err := kv.List(ctx, gossipMastersPrefix, raftstore.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("master: list the masters' gossip addresses: %w", err)
	}
	addrs := make([]string, 0, len(lr.KVs))
	for _, kv := range lr.KVs {
		addrs = append(addrs, string(kv.Value))
	}
	return addrs, nil
}

// withJoin serves the bootstrap endpoints in front of api: bootstrap.CAPath
// (reached without authentication: authenticate lets it through) and
// bootstrap.JoinPath, which signs a joining worker's certificates with ca.
// A user in bootstrap.BootstrapGroup may use nothing else: authenticate
// answers its requests to other paths 403 (confined).
func withJoin(ca *pki.CA, log *slog.Logger, api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case bootstrap.CAPath:
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				writeStatus(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, "GET the cluster CA")
				return
			}
			w.Header().Set("Content-Type", "application/x-pem-file")
			_, _ = w.Write(ca.CertPEM()) // a client that went away is not an error of ours
			return
		case bootstrap.JoinPath:
			serveJoin(ca, log, w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// confined reports whether u is a bootstrapper (and not an admin), which
// may use bootstrap.JoinPath only, asking for path.
func confined(u authn.User, path string) bool {
	boot := slices.Contains(u.Groups, bootstrap.BootstrapGroup) || strings.HasPrefix(u.Name, bootstrap.BootstrapUserPrefix)
	return boot && !slices.Contains(u.Groups, AdminGroup) && path != bootstrap.JoinPath
}

// serveJoin answers a bootstrap.JoinRequest from a user in
// bootstrap.BootstrapGroup or AdminGroup with the worker's certificates.
func serveJoin(ca *pki.CA, log *slog.Logger, w http.ResponseWriter, r *http.Request) {
	u, ok := authn.UserFrom(r.Context())
	if !ok || !(slices.Contains(u.Groups, bootstrap.BootstrapGroup) || slices.Contains(u.Groups, AdminGroup)) {
		writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, fmt.Sprintf("user %q may not join nodes: it is in neither %s nor %s", u.Name, bootstrap.BootstrapGroup, AdminGroup))
		return
	}
	if r.Method != http.MethodPost {
		writeStatus(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, "POST a join request")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxJoinRequest+1))
	if err != nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "reading the join request: "+err.Error())
		return
	}
	if len(body) > maxJoinRequest {
		writeStatus(w, http.StatusRequestEntityTooLarge, metav1.StatusReasonRequestEntityTooLarge, fmt.Sprintf("the join request is larger than %d bytes", maxJoinRequest))
		return
	}
	var req bootstrap.JoinRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "the join request is not JSON: "+err.Error())
		return
	}
	resp, err := signJoin(ca, req)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error())
		return
	}
	log.Info("node joined: certificates signed", "node", req.NodeName, "ips", req.NodeIPs, "user", u.Name)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp) // a client that went away is not an error of ours
}

// signJoin checks a join request and signs its certificates.
func signJoin(ca *pki.CA, req bootstrap.JoinRequest) (bootstrap.JoinResponse, error) {
	if errs := validation.IsDNS1123Subdomain(req.NodeName); len(errs) > 0 {
		return bootstrap.JoinResponse{}, fmt.Errorf("node name %q: %s", req.NodeName, strings.Join(errs, "; "))
	}
	if len(req.NodeIPs) == 0 {
		return bootstrap.JoinResponse{}, errors.New("the join request has no node IP")
	}
	var ips []net.IP
	for _, s := range req.NodeIPs {
		ip := net.ParseIP(s)
		if ip == nil || ip.IsUnspecified() {
			return bootstrap.JoinResponse{}, fmt.Errorf("node IP %q is not an IP address of a host", s)
		}
		ips = append(ips, ip)
	}
	clientCSR, err := pki.ParseCSR([]byte(req.ClientCSR))
	if err != nil {
		return bootstrap.JoinResponse{}, fmt.Errorf("client CSR: %w", err)
	}
	servingCSR, err := pki.ParseCSR([]byte(req.ServingCSR))
	if err != nil {
		return bootstrap.JoinResponse{}, fmt.Errorf("serving CSR: %w", err)
	}
	user := bootstrap.NodeUserPrefix + req.NodeName
	groups := []string{bootstrap.NodesGroup}
	client, err := ca.SignClient(clientCSR, user, groups, NodeCertValidity)
	if err != nil {
		return bootstrap.JoinResponse{}, err
	}
	serving, err := ca.SignServing(servingCSR, user, groups, []string{req.NodeName}, ips, NodeCertValidity)
	if err != nil {
		return bootstrap.JoinResponse{}, err
	}
	return bootstrap.JoinResponse{CA: string(ca.CertPEM()), ClientCert: string(client), ServingCert: string(serving)}, nil
}

// writeStatus writes a failure as the API server does: a metav1.Status.
func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	writeAPIError(w, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Message: msg, Reason: reason, Code: int32(code)}})
}

// writeAPIError writes err's status as the JSON body of a response with its code.
func writeAPIError(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.ErrStatus
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_ = json.NewEncoder(w).Encode(st)
}
