package pods

import (
	"context"
	"slices"

	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-sh/skiff/agent/internal/containers"
)

// cleanupOrphans hands what belongs to pods the API no longer has on this
// node (deleted while the agent was down) to a worker, which removes it:
// containers, network, sandbox, volumes.
func (m *Manager) cleanupOrphans(ctx context.Context) {
	known := map[types.UID]bool{}
	pods, _ := m.pods.List(everything)
	for _, p := range pods {
		known[p.UID] = true
	}
	orphans := map[types.UID][2]string{}
	if all, err := m.cfg.Runtime.Containers(ctx); err == nil {
		for _, c := range all {
			if uid := types.UID(c.PodUID); !known[uid] {
				orphans[uid] = [2]string{c.PodNamespace, c.PodName}
			}
		}
	} else {
		m.log.Warn("listing containers failed", "err", err)
	}
	if sbs, err := m.cfg.Runtime.Sandboxes(ctx); err == nil {
		for _, sb := range sbs {
			if uid := types.UID(sb.PodUID); !known[uid] {
				orphans[uid] = [2]string{sb.Namespace, sb.Name}
			}
		}
	} else {
		m.log.Warn("listing sandboxes failed", "err", err)
	}
	// Network attachments whose sandbox is gone too (a reboot cleared
	// RunDir) still hold IPs.
	if al, ok := m.cfg.Network.(interface{ AttachedPods() ([]string, error) }); ok {
		if uids, err := al.AttachedPods(); err == nil {
			for _, u := range uids {
				if uid := types.UID(u); !known[uid] {
					if _, seen := orphans[uid]; !seen {
						orphans[uid] = [2]string{"", ""}
					}
				}
			}
		}
	}
	for uid, n := range orphans {
		m.log.Info("cleaning up a pod that is gone", "pod", n[0]+"/"+n[1], "uid", uid)
		// Its worker finds no pod with that UID and removes everything.
		m.wake(ctx, uid, n[0], n[1])
	}
}

// sortNewestFirst orders containers by attempt, newest first.
func sortNewestFirst(list []containers.ContainerStatus) {
	slices.SortFunc(list, func(a, b containers.ContainerStatus) int { return b.Attempt - a.Attempt })
}
