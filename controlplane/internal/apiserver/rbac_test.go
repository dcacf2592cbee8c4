package apiserver

import (
	"os"
	"path/filepath"
	"testing"
)

// rbacManifest is what a chart brings for its operator: a service account,
// the roles it needs and their bindings, one cluster role aggregated from
// others by label.
const rbacManifest = `apiVersion: v1
kind: Namespace
metadata:
  name: ops
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: operator
  namespace: ops
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: leader-election
  namespace: ops
rules:
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: leader-election
  namespace: ops
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: leader-election
subjects:
- kind: ServiceAccount
  name: operator
- kind: User
  name: jane
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: ops:manager
aggregationRule:
  clusterRoleSelectors:
  - matchLabels:
      ops.example.com/aggregate-to-manager: "true"
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: ops:deployments
  labels:
    ops.example.com/aggregate-to-manager: "true"
rules:
- apiGroups: ["apps"]
  resources: ["deployments", "deployments/scale"]
  verbs: ["*"]
- nonResourceURLs: ["/metrics"]
  verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: ops:manager
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: ops:manager
subjects:
- kind: ServiceAccount
  name: operator
  namespace: ops
`

// TestKubectlRBAC applies a chart's RBAC objects with the real kubectl
// (schema validation on), reads them back the ways kubectl shows them, and
// checks the errors of bad ones.
func TestKubectlRBAC(t *testing.T) {
	ts := startServer(t)
	k := newKubectl(t, ts.URL)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	manifest := write("rbac.yaml", rbacManifest)
	noVerbs := write("noverbs.yaml", `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: broken
  namespace: ops
rules:
- apiGroups: [""]
  resources: ["pods"]
`)
	moved := write("moved.yaml", `apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: leader-election
  namespace: ops
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: view
`)
	k.runSteps(t, []kubectlStep{
		{args: []string{"apply", "-f", manifest}, wantOut: []string{
			`namespace/ops created\n`, `serviceaccount/operator created\n`,
			`role\.rbac\.authorization\.k8s\.io/leader-election created\n`, `rolebinding\.rbac\.authorization\.k8s\.io/leader-election created\n`,
			`clusterrole\.rbac\.authorization\.k8s\.io/ops:manager created\n`, `clusterrole\.rbac\.authorization\.k8s\.io/ops:deployments created\n`,
			`clusterrolebinding\.rbac\.authorization\.k8s\.io/ops:manager created\n`,
		}},
		// Subjects are an atomic list and the server added the user's API
		// group, so kubectl re-sends the binding's list ("configured", as
		// against kube-apiserver); everything else is unchanged.
		{args: []string{"apply", "-f", manifest}, wantOut: []string{`role\.rbac\.authorization\.k8s\.io/leader-election unchanged\n`,
			`rolebinding\.rbac\.authorization\.k8s\.io/leader-election configured\n`, `clusterrole\.rbac\.authorization\.k8s\.io/ops:deployments unchanged\n`,
			`clusterrolebinding\.rbac\.authorization\.k8s\.io/ops:manager unchanged\n`}},
		// The user subject's API group is defaulted; the service account's stays empty.
		{args: []string{"-n", "ops", "get", "rolebinding", "leader-election", "-o", "jsonpath={range .subjects[*]}{.kind}={.apiGroup};{end}"},
			wantOut: []string{`^ServiceAccount=;User=rbac\.authorization\.k8s\.io;$`}},
		{args: []string{"get", "clusterrolebindings", "-o", "wide"}, wantOut: []string{
			`^NAME +ROLE +AGE +USERS +GROUPS +SERVICEACCOUNTS\n`, `\nops:manager +ClusterRole/ops:manager +\d+s +ops/operator\n`}},
		{args: []string{"get", "clusterrole", "ops:deployments"}, wantOut: []string{`^NAME +CREATED AT\nops:deployments +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$`}},
		{args: []string{"-n", "ops", "describe", "rolebinding", "leader-election"}, wantOut: []string{
			`Role:\n +Kind: +Role\n +Name: +leader-election\n`, `\n +ServiceAccount +operator +\n`, `\n +User +jane +\n`}},
		{args: []string{"describe", "clusterrole", "ops:deployments"}, wantOut: []string{
			`\n +deployments\.apps/scale +\[\] +\[\] +\[\*\]\n`, `\n +\[/metrics\] +\[\] +\[get\]\n`}},
		{args: []string{"-n", "ops", "create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods,pods/log"},
			wantOut: []string{`role\.rbac\.authorization\.k8s\.io/pod-reader created`}},
		{args: []string{"-n", "ops", "get", "role", "pod-reader", "-o", "jsonpath={.rules[0].resources}"}, wantOut: []string{`^\["pods","pods/log"\]$`}},
		{args: []string{"create", "clusterrolebinding", "jane-admin", "--clusterrole=cluster-admin", "--user=jane"},
			wantOut: []string{`clusterrolebinding\.rbac\.authorization\.k8s\.io/jane-admin created`}},
		{args: []string{"apply", "-f", noVerbs}, wantCode: 1,
			wantErr: `The Role "broken" is invalid: rules[0].verbs: Required value: verbs must contain at least one value`},
		{args: []string{"apply", "-f", moved}, wantCode: 1,
			wantErr: `The RoleBinding "leader-election" is invalid: roleRef: Invalid value: {"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"}: cannot change roleRef`},
		{args: []string{"create", "clusterrole", "a/b", "--verb=get", "--resource=pods"}, wantCode: 1,
			wantErr: `The ClusterRole "a/b" is invalid: metadata.name: Invalid value: "a/b": may not contain '/'`},
		// Namespaced roles go with their namespace.
		{args: []string{"delete", "namespace", "ops", "--wait=false"}, wantOut: []string{`namespace "ops" deleted`}},
		{args: []string{"delete", "clusterrole,clusterrolebinding", "ops:manager"}, wantOut: []string{
			`clusterrole\.rbac\.authorization\.k8s\.io "ops:manager" deleted`, `clusterrolebinding\.rbac\.authorization\.k8s\.io "ops:manager" deleted`}},
	})
}
