package master

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

// TestRBACWithKubectl: the real kubectl against a master, as an admin and
// as users with no role, then with roles bound: requests, `kubectl auth
// can-i` (access and rules reviews), impersonation, service account
// tokens and the default roles, in kube-apiserver's words.
func TestRBACWithKubectl(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not on PATH")
	}
	dataDir, url, store := startMasterStore(t)
	admin := KubeconfigPath(dataDir)
	ca, err := LoadCA(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	tokenConfig := func(user, token string) string { return tokenKubeconfigFile(t, url, ca, user, token) }
	secret, _, err := CreateToken(t.Context(), store, TokenSpec{User: "jane", Groups: []string{"dev"}})
	if err != nil {
		t.Fatal(err)
	}
	jane := tokenConfig("jane", secret)
	run := func(kubeconfig string, args ...string) (string, int) {
		t.Helper()
		out, err := kubectl(t, kubeconfig, args...)
		var exit *exec.ExitError
		switch {
		case err == nil:
			return out, 0
		case errors.As(err, &exit):
			return out, exit.ExitCode()
		}
		t.Fatalf("kubectl %v: %v", args, err)
		return "", 0
	}
	expect := func(what, kubeconfig, want string, wantCode int, args ...string) {
		t.Helper()
		if out, code := run(kubeconfig, args...); code != wantCode || out != want {
			t.Errorf("%s: kubectl %s = exit %d %q, want exit %d %q", what, strings.Join(args, " "), code, out, wantCode, want)
		}
	}
	// eventually waits for a binding to reach the authorizer's cache.
	eventually := func(what, kubeconfig, want string, args ...string) {
		t.Helper()
		apitest.WaitFor(t, 10*time.Second, what, func() error {
			if out, code := run(kubeconfig, args...); code != 0 || out != want {
				return fmt.Errorf("kubectl %s = exit %d %q, want %q", strings.Join(args, " "), code, out, want)
			}
			return nil
		})
	}

	// The default roles and bindings are there.
	expect("default roles", admin, "clusterrole.rbac.authorization.k8s.io/cluster-admin\nclusterrole.rbac.authorization.k8s.io/admin\n"+
		"clusterrole.rbac.authorization.k8s.io/edit\nclusterrole.rbac.authorization.k8s.io/view\nclusterrole.rbac.authorization.k8s.io/system:node\n", 0,
		"get", "clusterroles", "cluster-admin", "admin", "edit", "view", "system:node", "-o", "name")
	expect("cluster-admin's binding", admin, "Group system:masters", 0,
		"get", "clusterrolebinding", "cluster-admin", "-o", "jsonpath={.subjects[0].kind} {.subjects[0].name}")

	// No role: 403 with kube-apiserver's message; can-i says no.
	expect("no role", jane, `Error from server (Forbidden): pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "shop"`+"\n", 1,
		"get", "pods", "-n", "shop")
	expect("can-i without a role", jane, "no\n", 1, "auth", "can-i", "list", "pods", "-n", "shop")
	expect("the admin can", admin, "yes\n", 0, "auth", "can-i", "*", "*")

	// A Role bound to jane's group in namespace shop.
	for _, args := range [][]string{
		{"create", "namespace", "shop"},
		{"create", "role", "pod-reader", "-n", "shop", "--verb=get,list,watch", "--resource=pods"},
		{"create", "rolebinding", "dev-reads", "-n", "shop", "--role=pod-reader", "--group=dev"},
	} {
		if out, code := run(admin, args...); code != 0 {
			t.Fatalf("kubectl %v: exit %d\n%s", args, code, out)
		}
	}
	eventually("jane to read pods in shop", jane, "yes\n", "auth", "can-i", "list", "pods", "-n", "shop")
	expect("list granted", jane, "No resources found in shop namespace.\n", 0, "get", "pods", "-n", "shop")
	expect("verb not granted", jane, "no\n", 1, "auth", "can-i", "delete", "pods", "-n", "shop")
	expect("other namespace", jane, "no\n", 1, "auth", "can-i", "list", "pods", "-n", "default")
	if out, code := run(jane, "auth", "can-i", "--list", "-n", "shop"); code != 0 || !strings.Contains(out, "pods   ") || !strings.Contains(out, "[get list watch]") || strings.Contains(out, "secrets") {
		t.Errorf("kubectl auth can-i --list -n shop as jane = exit %d:\n%s\nwant pods [get list watch] and no secrets", code, out)
	}

	// Impersonation needs the impersonate verb; the admin has it, and acts
	// with exactly the groups asked for.
	expect("jane impersonating", jane, `Error from server (Forbidden): users "bob" is forbidden: User "jane" cannot impersonate resource "users" in API group "" at the cluster scope`+"\n", 1,
		"get", "--raw", "/api/v1/namespaces/shop/pods", "--as=bob") // --raw: no discovery, which would be refused first
	expect("as jane without her group", admin, "no\n", 1, "auth", "can-i", "list", "pods", "-n", "shop", "--as=jane")
	expect("as jane in dev", admin, "yes\n", 0, "auth", "can-i", "list", "pods", "-n", "shop", "--as=jane", "--as-group=dev")

	// A service account's token: nothing until a RoleBinding grants edit
	// (aggregated: view's reads included).
	token, code := run(admin, "create", "token", "default", "-n", "shop")
	if code != 0 {
		t.Fatalf("kubectl create token: exit %d %s", code, token)
	}
	sa := tokenConfig("sa", strings.TrimSpace(token))
	expect("service account without a role", sa, `error: failed to create configmap: configmaps is forbidden: User "system:serviceaccount:shop:default" cannot create resource "configmaps" in API group "" in the namespace "shop"`+"\n", 1,
		"create", "configmap", "x", "-n", "shop")
	if out, code := run(admin, "create", "rolebinding", "sa-edit", "-n", "shop", "--clusterrole=edit", "--serviceaccount=shop:default"); code != 0 {
		t.Fatalf("kubectl create rolebinding sa-edit: exit %d\n%s", code, out)
	}
	eventually("the service account to write configmaps", sa, "yes\n", "auth", "can-i", "create", "configmaps", "-n", "shop")
	expect("edit writes", sa, "configmap/x created\n", 0, "create", "configmap", "x", "-n", "shop")
	expect("edit includes view", sa, "yes\n", 0, "auth", "can-i", "watch", "deployments.apps", "-n", "shop")
	expect("edit does not bind", sa, "no\n", 1, "auth", "can-i", "create", "rolebindings", "-n", "shop")
	expect("subject access review", admin, "yes\n", 0, "auth", "can-i", "create", "deployments.apps", "-n", "shop", "--as=system:serviceaccount:shop:default")

	// Escalation: as admin of shop, jane may create roles and bindings in
	// shop that grant what she holds there, and nothing more.
	if out, code := run(admin, "create", "rolebinding", "jane-admin", "-n", "shop", "--clusterrole=admin", "--user=jane"); code != 0 {
		t.Fatalf("kubectl create rolebinding jane-admin: exit %d\n%s", code, out)
	}
	eventually("jane to bind roles in shop", jane, "yes\n", "auth", "can-i", "create", "rolebindings", "-n", "shop")
	expect("a role she holds", jane, "role.rbac.authorization.k8s.io/secret-reader created\n", 0,
		"create", "role", "secret-reader", "-n", "shop", "--verb=get", "--resource=secrets")
	expect("binding view, which she holds", jane, "rolebinding.rbac.authorization.k8s.io/bob-views created\n", 0,
		"create", "rolebinding", "bob-views", "-n", "shop", "--clusterrole=view", "--user=bob")
	expect("a role she does not hold", jane, `Error from server (Forbidden): roles.rbac.authorization.k8s.io "node-reader" is forbidden: user "jane" (groups=["dev" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:`+"\n"+
		`{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}`+"\n", 1,
		"create", "role", "node-reader", "-n", "shop", "--verb=get", "--resource=nodes")
	expect("binding cluster-admin", jane, `error: failed to create rolebinding: rolebindings.rbac.authorization.k8s.io "jane-all" is forbidden: user "jane" (groups=["dev" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:`+"\n"+
		`{APIGroups:["*"], Resources:["*"], Verbs:["*"]}`+"\n"+`{NonResourceURLs:["*"], Verbs:["*"]}`+"\n", 1,
		"create", "rolebinding", "jane-all", "-n", "shop", "--clusterrole=cluster-admin", "--user=jane")

	// Paths: discovery for everyone, /metrics for the monitoring group.
	expect("metrics", jane, `Error from server (Forbidden): forbidden: User "jane" cannot get path "/metrics"`+"\n", 1, "get", "--raw", "/metrics")
	expect("metrics in system:monitoring", admin, "yes\n", 0, "auth", "can-i", "get", "/metrics", "--as=prom", "--as-group=system:monitoring")
}
