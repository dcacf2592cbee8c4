package bootstrap

import "strings"

// kubeletLabels are the labels under kubernetes.io a node may set on its
// own Node: those a kubelet sets itself.
var kubeletLabels = map[string]bool{
	"kubernetes.io/hostname":                   true,
	"kubernetes.io/os":                         true,
	"kubernetes.io/arch":                       true,
	"beta.kubernetes.io/os":                    true,
	"beta.kubernetes.io/arch":                  true,
	"beta.kubernetes.io/instance-type":         true,
	"node.kubernetes.io/instance-type":         true,
	"topology.kubernetes.io/zone":              true,
	"topology.kubernetes.io/region":            true,
	"failure-domain.beta.kubernetes.io/zone":   true,
	"failure-domain.beta.kubernetes.io/region": true,
	"node.kubernetes.io/windows-build":         true,
}

// NodeMaySetLabel reports whether a node's agent may set (or change, or
// remove) label key on its own Node, as kube-apiserver's NodeRestriction
// admission decides for a kubelet: nothing under
// node-restriction.kubernetes.io, and under kubernetes.io and k8s.io only
// the labels a kubelet sets itself (hostname, os, arch, topology, instance
// type) and those under kubelet.kubernetes.io and node.kubernetes.io.
// Other labels are the cluster's own. The masters refuse the rest; the
// agent refuses them in --node-labels, as the kubelet does.
func NodeMaySetLabel(key string) bool {
	ns, _, ok := strings.Cut(key, "/")
	if !ok {
		return true
	}
	under := func(domain string) bool { return ns == domain || strings.HasSuffix(ns, "."+domain) }
	switch {
	case under("node-restriction.kubernetes.io"):
		return false
	case kubeletLabels[key], under("kubelet.kubernetes.io"), under("node.kubernetes.io"):
		return true
	}
	return !under("kubernetes.io") && !under("k8s.io")
}
