package apiserver

// The table columns of the rbac.authorization.k8s.io/v1 kinds, as
// kube-apiserver 1.32 prints them.

import (
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// roleColumns serve Roles and ClusterRoles: a creation time, not an age.
var roleColumns = []column{
	nameColumn,
	{def: metav1.TableColumnDefinition{Name: "Created At", Type: "date", Description: objectMetaDoc["creationTimestamp"]},
		cell: func(obj runtime.Object, _ time.Time) any {
			m, _ := meta.Accessor(obj)
			return m.GetCreationTimestamp().UTC().Format(time.RFC3339)
		}},
}

var roleBindingColumns = bindingColumns(func(obj runtime.Object) (rbacv1.RoleRef, []rbacv1.Subject) {
	b := obj.(*rbacv1.RoleBinding)
	return b.RoleRef, b.Subjects
})

var clusterRoleBindingColumns = bindingColumns(func(obj runtime.Object) (rbacv1.RoleRef, []rbacv1.Subject) {
	b := obj.(*rbacv1.ClusterRoleBinding)
	return b.RoleRef, b.Subjects
})

// bindingColumns are ROLE (Kind/name) and AGE, and with -o wide the
// subjects by kind: USERS, GROUPS, SERVICEACCOUNTS (namespace/name).
func bindingColumns(of func(runtime.Object) (rbacv1.RoleRef, []rbacv1.Subject)) []column {
	subjects := func(kind string) func(runtime.Object, time.Time) any {
		return func(obj runtime.Object, _ time.Time) any {
			_, subs := of(obj)
			var names []string
			for _, s := range subs {
				switch {
				case s.Kind != kind:
				case kind == rbacv1.ServiceAccountKind:
					names = append(names, s.Namespace+"/"+s.Name)
				default:
					names = append(names, s.Name)
				}
			}
			return strings.Join(names, ", ")
		}
	}
	return []column{
		nameColumn,
		{def: stringCol("Role", rbacv1.RoleBinding{}.SwaggerDoc()["roleRef"]), cell: func(obj runtime.Object, _ time.Time) any {
			ref, _ := of(obj)
			return ref.Kind + "/" + ref.Name
		}},
		ageColumn,
		{def: wide(stringCol("Users", "Users in the roleBinding")), cell: subjects(rbacv1.UserKind)},
		{def: wide(stringCol("Groups", "Groups in the roleBinding")), cell: subjects(rbacv1.GroupKind)},
		{def: wide(stringCol("ServiceAccounts", "ServiceAccounts in the roleBinding")), cell: subjects(rbacv1.ServiceAccountKind)},
	}
}
