package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestConcurrentUpdatesConflictAcrossMasters sends two updates of one
// ConfigMap with the same resourceVersion at the same moment to two
// different masters, several times: exactly one must succeed and the other
// get kube-apiserver's 409 Conflict, and the object must hold the winner's
// write.
func TestConcurrentUpdatesConflictAcrossMasters(t *testing.T) {
	ms := startMasters(t, 3)
	var clients []kubernetes.Interface
	for i := range ms.nodes {
		clients = append(clients, clientset(t, ms.apiConfig(t, i)))
	}
	const ns, name = "default", "contended"
	ctx := t.Context()
	cm, err := clients[0].CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"by": "create"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantMsg := fmt.Sprintf("Operation cannot be fulfilled on configmaps %q: the object has been modified; please apply your changes to the latest version and try again", name)
	wins := map[int]int{}
	for round := range 12 {
		a, b := round%3, (round+1+round/3%2)%3 // every ordered pair of masters
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			results [2]*corev1.ConfigMap
			errs    [2]error
		)
		for k, via := range []int{a, b} {
			upd := cm.DeepCopy() // same resourceVersion for both
			upd.Data = map[string]string{"by": fmt.Sprintf("round %d via %s", round, ms.nodes[via].name)}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				defer cancel()
				results[k], errs[k] = clients[via].CoreV1().ConfigMaps(ns).Update(rctx, upd, metav1.UpdateOptions{})
			}()
		}
		close(start)
		wg.Wait()

		winner := -1
		for k := range errs {
			if errs[k] == nil {
				if winner >= 0 {
					t.Fatalf("round %d: both updates with resourceVersion %s succeeded (via %s and %s)", round, cm.ResourceVersion, ms.nodes[a].name, ms.nodes[b].name)
				}
				winner = k
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: both updates failed: %v; %v", round, errs[0], errs[1])
		}
		loser, via := 1-winner, []int{a, b}
		var se *apierrors.StatusError
		if !errors.As(errs[loser], &se) {
			t.Fatalf("round %d: the losing update via %s failed with %v, want a Status error", round, ms.nodes[via[loser]].name, errs[loser])
		}
		st := se.ErrStatus
		if st.Code != 409 || st.Reason != metav1.StatusReasonConflict || st.Message != wantMsg || st.Status != metav1.StatusFailure ||
			st.Details == nil || st.Details.Name != name || st.Details.Kind != "configmaps" || st.Details.Group != "" {
			t.Fatalf("round %d: the losing update via %s got status %+v (details %+v), want 409 Conflict %q with details name %q kind configmaps",
				round, ms.nodes[via[loser]].name, st, st.Details, wantMsg, name)
		}
		wins[via[winner]]++

		// Every master's next default read returns the winner's write.
		won := results[winner]
		for i, cs := range clients {
			got, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("round %d: get via %s: %v", round, ms.nodes[i].name, err)
			}
			if got.ResourceVersion != won.ResourceVersion || got.Data["by"] != won.Data["by"] {
				t.Fatalf("round %d: via %s got %q at %s, want the winner's %q at %s",
					round, ms.nodes[i].name, got.Data["by"], got.ResourceVersion, won.Data["by"], won.ResourceVersion)
			}
		}
		cm = won
	}
	t.Logf("wins by the master the update went through: %v", wins)
}

// TestReadYourWritesAcrossMasters writes through one master and reads
// right away through the others, many times: a write acknowledged by any
// master is visible to the very next default GET and LIST on every other.
func TestReadYourWritesAcrossMasters(t *testing.T) {
	ms := startMasters(t, 3)
	var clients []kubernetes.Interface
	for i := range ms.nodes {
		clients = append(clients, clientset(t, ms.apiConfig(t, i)))
	}
	const ns = "default"
	ctx := t.Context()
	var cm *corev1.ConfigMap
	for n := range 90 {
		via := n % 3
		var err error
		switch {
		case n%10 == 0: // a new object
			cm, err = clients[via].CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ryw-%d", n)}, Data: map[string]string{"n": fmt.Sprint(n)},
			}, metav1.CreateOptions{})
		default:
			upd := cm.DeepCopy()
			upd.Data = map[string]string{"n": fmt.Sprint(n)}
			cm, err = clients[via].CoreV1().ConfigMaps(ns).Update(ctx, upd, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatalf("write %d via %s: %v", n, ms.nodes[via].name, err)
		}
		for k := 1; k <= 2; k++ {
			r := (via + k) % 3
			got, err := clients[r].CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("write %d via %s acknowledged at %s; get via %s: %v", n, ms.nodes[via].name, cm.ResourceVersion, ms.nodes[r].name, err)
			}
			if got.ResourceVersion != cm.ResourceVersion || got.Data["n"] != fmt.Sprint(n) {
				t.Fatalf("write %d via %s acknowledged at %s; get via %s: got n=%q at %s, want n=%d at %s",
					n, ms.nodes[via].name, cm.ResourceVersion, ms.nodes[r].name, got.Data["n"], got.ResourceVersion, n, cm.ResourceVersion)
			}
		}
		// And the next default list of the third master has it too.
		r := (via + 1 + n%2) % 3
		list, err := clients[r].CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("write %d: list via %s: %v", n, ms.nodes[r].name, err)
		}
		found := false
		for _, item := range list.Items {
			if item.Name == cm.Name {
				found = item.ResourceVersion == cm.ResourceVersion
			}
		}
		if !found {
			t.Fatalf("write %d via %s acknowledged at %s: the next list via %s (at %s) lacks it", n, ms.nodes[via].name, cm.ResourceVersion, ms.nodes[r].name, list.ResourceVersion)
		}
	}
}
