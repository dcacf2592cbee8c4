package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestMasterBackAfterLongOutage: the leader master is killed and stays down
// long enough for the new leader to back off its replication to it (10 s
// between attempts); it comes back while writes go on: it starts, catches up, and serves the
// latest writes through its own API. Its first reads may wait for the
// leader's next attempt; they must not make it give up.
func TestMasterBackAfterLongOutage(t *testing.T) {
	ms := startMasters(t, 3)
	down := ms.waitLeader(t)
	writer := (down + 1) % 3 // a follower: it stays up and forwards the writes
	cs := clientset(t, ms.apiConfig(t, writer))
	ms.kill(t, down)

	ctx, cancel := context.WithCancel(t.Context())
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		last     string
		writeErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			name := fmt.Sprintf("w%05d", i)
			_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
			mu.Lock()
			if err == nil {
				last = name
			} else if ctx.Err() == nil {
				writeErr = err
			}
			mu.Unlock()
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	// The outage: long enough for the new leader's replication back-off to
	// reach 10 s (it doubles from 10 ms; 5 s is the master's read timeout).
	select {
	case <-time.After(25 * time.Second):
	case <-t.Context().Done():
	}
	ms.restart(t, down)
	back := clientset(t, ms.apiConfig(t, down))
	waitUntil(t, 45*time.Second, "the returning master to serve the latest write", func(ctx context.Context) error {
		mu.Lock()
		name := last
		mu.Unlock()
		if name == "" {
			return fmt.Errorf("no write acknowledged yet")
		}
		_, err := back.CoreV1().ConfigMaps("default").Get(ctx, name, metav1.GetOptions{})
		return err
	})
	if !ms.nodes[down].running() {
		ms.dumpLogs(t, 40)
		t.Fatalf("%s exited after coming back", ms.nodes[down].name)
	}
	cancel()
	wg.Wait()
	if writeErr != nil {
		t.Errorf("a write failed during the outage: %v", writeErr)
	}
}
