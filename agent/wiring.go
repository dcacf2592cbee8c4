package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/containerd"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiff-sh/skiff/agent/internal/containers"
	"github.com/skiff-sh/skiff/agent/internal/join"
	"github.com/skiff-sh/skiff/agent/internal/network"
)

// metaSetter announces the node's pod CIDR in its gossip metadata.
type metaSetter interface{ SetPodCIDR(netip.Prefix) error }

type joinMeta struct{ j *join.Agent }

func (m joinMeta) SetPodCIDR(p netip.Prefix) error { return m.j.SetPodCIDR(p.String()) }

// credentials returns the agent's API client and endpoint TLS: the given
// ones, or those of joining the cluster (whose membership then runs in g).
func (a *Agent) credentials(ctx context.Context, g *errgroup.Group) (*Credentials, metaSetter, error) {
	if a.cfg.Credentials != nil {
		return a.cfg.Credentials, nil, nil
	}
	jcfg := join.DefaultConfig()
	jcfg.Join, jcfg.Token, jcfg.NodeName, jcfg.NodeIP = a.cfg.Join, a.cfg.Token, a.cfg.NodeName, a.cfg.NodeIP
	jcfg.GossipAddr, jcfg.DataDir, jcfg.Logger = a.cfg.GossipAddr, a.cfg.DataDir, a.log
	j, err := join.New(jcfg)
	if err != nil {
		return nil, nil, err
	}
	g.Go(func() error { return j.Run(ctx) })
	select {
	case <-j.Ready():
	case <-ctx.Done():
		return nil, nil, errors.New("agent: stopped before joining")
	}
	a.log.Info("joined the cluster", "dataDir", filepath.Join(a.cfg.DataDir, "pki"))
	return &Credentials{REST: j.RESTConfig(), StreamTLS: j.StreamTLS()}, joinMeta{j}, nil
}

// listenPort is the port of a listen address (10250 when it has none).
func listenPort(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 10250
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return 10250
	}
	return n
}

func everything() labels.Selector { return labels.Everything() }

// containerdVersion is status.nodeInfo.containerRuntimeVersion.
func containerdVersion(ctx context.Context, socket string) string {
	c, err := containerd.New(socket)
	if err != nil {
		return "containerd://unknown"
	}
	defer c.Close()
	v, err := c.Version(ctx)
	if err != nil {
		return "containerd://unknown"
	}
	return "containerd://" + v.Version
}

// LogDriverMain is `skiff log-driver`: the process containerd's shim runs
// for each container to write its output into the container's log file.
// args follow "log-driver". It returns the exit code.
func LogDriverMain(args []string) int { return containers.LogDriverMain(args) }

// ImportImages imports the images of an OCI or docker archive into the
// containerd at socket, in the namespace the agent runs pods from
// (`skiff image import`). It returns the names imported.
func ImportImages(ctx context.Context, socket string, archive io.Reader) ([]string, error) {
	cfg := containers.DefaultConfig()
	cfg.Address = socket
	rt, err := containers.New(cfg)
	if err != nil {
		return nil, err
	}
	defer rt.Close()
	return rt.ImportImages(ctx, archive)
}

// ErrTokenRequired is returned by Run when the agent has no valid
// credentials of an earlier join and was given no join token.
var ErrTokenRequired = join.ErrTokenRequired

// Joined reports whether dataDir holds the credentials of an earlier join
// (they may still need renewing: Run says so with ErrTokenRequired).
func Joined(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "pki", join.ClientCertFile))
	return err == nil
}

// CleanupNetwork removes what agents set up in this network namespace's
// kernel state outside pods: Skiff's iptables chains and the routes to
// other nodes' pods (`skiff agent --cleanup-network`). Pods' own
// interfaces go with their network namespaces.
func CleanupNetwork() error { return network.Cleanup() }
