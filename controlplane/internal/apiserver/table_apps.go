package apiserver

// The apps/v1 table columns, as kube-apiserver 1.32 prints them.

import (
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

var deploymentColumns = []column{
	nameColumn,
	{def: stringCol("Ready", "Number of the pod with ready state"), cell: func(obj runtime.Object, _ time.Time) any {
		d := obj.(*appsv1.Deployment)
		return fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, replicas(d.Spec.Replicas))
	}},
	{def: intCol("Up-to-date", appsv1.DeploymentStatus{}.SwaggerDoc()["updatedReplicas"]), cell: func(obj runtime.Object, _ time.Time) any {
		return int64(obj.(*appsv1.Deployment).Status.UpdatedReplicas)
	}},
	{def: intCol("Available", appsv1.DeploymentStatus{}.SwaggerDoc()["availableReplicas"]), cell: func(obj runtime.Object, _ time.Time) any {
		return int64(obj.(*appsv1.Deployment).Status.AvailableReplicas)
	}},
	ageColumn,
	containersColumn(func(obj runtime.Object) *corev1.PodTemplateSpec { return &obj.(*appsv1.Deployment).Spec.Template }),
	imagesColumn(func(obj runtime.Object) *corev1.PodTemplateSpec { return &obj.(*appsv1.Deployment).Spec.Template }),
	selectorColumn(appsv1.DeploymentSpec{}.SwaggerDoc()["selector"], func(obj runtime.Object) *metav1.LabelSelector {
		return obj.(*appsv1.Deployment).Spec.Selector
	}),
}

var replicaSetColumns = []column{
	nameColumn,
	{def: intCol("Desired", appsv1.ReplicaSetSpec{}.SwaggerDoc()["replicas"]), cell: func(obj runtime.Object, _ time.Time) any {
		return int64(replicas(obj.(*appsv1.ReplicaSet).Spec.Replicas))
	}},
	{def: intCol("Current", appsv1.ReplicaSetStatus{}.SwaggerDoc()["replicas"]), cell: func(obj runtime.Object, _ time.Time) any {
		return int64(obj.(*appsv1.ReplicaSet).Status.Replicas)
	}},
	{def: intCol("Ready", appsv1.ReplicaSetStatus{}.SwaggerDoc()["readyReplicas"]), cell: func(obj runtime.Object, _ time.Time) any {
		return int64(obj.(*appsv1.ReplicaSet).Status.ReadyReplicas)
	}},
	ageColumn,
	containersColumn(func(obj runtime.Object) *corev1.PodTemplateSpec { return &obj.(*appsv1.ReplicaSet).Spec.Template }),
	imagesColumn(func(obj runtime.Object) *corev1.PodTemplateSpec { return &obj.(*appsv1.ReplicaSet).Spec.Template }),
	selectorColumn(appsv1.ReplicaSetSpec{}.SwaggerDoc()["selector"], func(obj runtime.Object) *metav1.LabelSelector {
		return obj.(*appsv1.ReplicaSet).Spec.Selector
	}),
}

var statefulSetColumns = []column{
	nameColumn,
	{def: stringCol("Ready", "Number of the pod with ready state"), cell: func(obj runtime.Object, _ time.Time) any {
		s := obj.(*appsv1.StatefulSet)
		return fmt.Sprintf("%d/%d", s.Status.ReadyReplicas, replicas(s.Spec.Replicas))
	}},
	ageColumn,
	containersColumn(func(obj runtime.Object) *corev1.PodTemplateSpec { return &obj.(*appsv1.StatefulSet).Spec.Template }),
	imagesColumn(func(obj runtime.Object) *corev1.PodTemplateSpec { return &obj.(*appsv1.StatefulSet).Spec.Template }),
}

var daemonSetStatusDoc = appsv1.DaemonSetStatus{}.SwaggerDoc()

var daemonSetColumns = []column{
	nameColumn,
	{def: intCol("Desired", daemonSetStatusDoc["desiredNumberScheduled"]), cell: func(obj runtime.Object, _ time.Time) any {
		return int64(obj.(*appsv1.DaemonSet).Status.DesiredNumberScheduled)
	}},
	{def: intCol("Current", daemonSetStatusDoc["currentNumberScheduled"]), cell: func(obj runtime.Object, _ time.Time) any {
		return int64(obj.(*appsv1.DaemonSet).Status.CurrentNumberScheduled)
	}},
	{def: intCol("Ready", daemonSetStatusDoc["numberReady"]), cell: func(obj runtime.Object, _ time.Time) any {
		return int64(obj.(*appsv1.DaemonSet).Status.NumberReady)
	}},
	{def: intCol("Up-to-date", daemonSetStatusDoc["updatedNumberScheduled"]), cell: func(obj runtime.Object, _ time.Time) any {
		return int64(obj.(*appsv1.DaemonSet).Status.UpdatedNumberScheduled)
	}},
	{def: intCol("Available", daemonSetStatusDoc["numberAvailable"]), cell: func(obj runtime.Object, _ time.Time) any {
		return int64(obj.(*appsv1.DaemonSet).Status.NumberAvailable)
	}},
	{def: stringCol("Node Selector", corev1.PodSpec{}.SwaggerDoc()["nodeSelector"]), cell: func(obj runtime.Object, _ time.Time) any {
		return labels.FormatLabels(obj.(*appsv1.DaemonSet).Spec.Template.Spec.NodeSelector)
	}},
	ageColumn,
	containersColumn(func(obj runtime.Object) *corev1.PodTemplateSpec { return &obj.(*appsv1.DaemonSet).Spec.Template }),
	imagesColumn(func(obj runtime.Object) *corev1.PodTemplateSpec { return &obj.(*appsv1.DaemonSet).Spec.Template }),
	selectorColumn(appsv1.DaemonSetSpec{}.SwaggerDoc()["selector"], func(obj runtime.Object) *metav1.LabelSelector {
		return obj.(*appsv1.DaemonSet).Spec.Selector
	}),
}

// replicas is spec.replicas; unset (never stored, defaulting sets 1) is 0.
func replicas(r *int32) int32 {
	if r == nil {
		return 0
	}
	return *r
}

// containersColumn is the wide CONTAINERS column of a workload: its pod
// template's container names, comma-separated.
func containersColumn(template func(runtime.Object) *corev1.PodTemplateSpec) column {
	return column{def: wide(stringCol("Containers", "Names of each container in the template.")), cell: func(obj runtime.Object, _ time.Time) any {
		cs := template(obj).Spec.Containers
		names := make([]string, len(cs))
		for i, c := range cs {
			names[i] = c.Name
		}
		return strings.Join(names, ",")
	}}
}

// imagesColumn is the wide IMAGES column: the containers' images.
func imagesColumn(template func(runtime.Object) *corev1.PodTemplateSpec) column {
	return column{def: wide(stringCol("Images", "Images referenced by each container in the template.")), cell: func(obj runtime.Object, _ time.Time) any {
		cs := template(obj).Spec.Containers
		images := make([]string, len(cs))
		for i, c := range cs {
			images[i] = c.Image
		}
		return strings.Join(images, ",")
	}}
}

// selectorColumn is the wide SELECTOR column: the label selector in
// labels.Selector syntax ("app=web,tier in (a,b)").
func selectorColumn(desc string, selector func(runtime.Object) *metav1.LabelSelector) column {
	return column{def: wide(stringCol("Selector", desc)), cell: func(obj runtime.Object, _ time.Time) any {
		sel, err := metav1.LabelSelectorAsSelector(selector(obj))
		if err != nil {
			// Upstream fails the whole table; one bad stored selector
			// should not hide every other row.
			return "<invalid>"
		}
		return sel.String()
	}}
}
