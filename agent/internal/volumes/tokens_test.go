package volumes

import (
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/controlplane/testapi"
)

// TestServiceAccountTokenProjection projects a pod's kube-api-access style
// volume against a real API server: the token is the pod's service
// account's, bound to the pod, and is requested again only once renewed.
func TestServiceAccountTokenProjection(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(testapi.Start(t))
	ctx := t.Context()
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "runner"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secs := int64(3607)
	pod, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "build"},
		Spec: corev1.PodSpec{ServiceAccountName: "runner", Containers: []corev1.Container{{Name: "c", Image: "busybox"}},
			Volumes: []corev1.Volume{{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				DefaultMode: ptr(int32(0o644)),
				Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &secs}},
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "vault-token", Audience: "vault"}},
					{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
						{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
				},
			}}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.PodsDir, cfg.Client, cfg.SecretsInMemory = filepath.Join(t.TempDir(), "pods"), cs, false
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Teardown(t.Context(), string(pod.UID)) })
	paths, err := m.Setup(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	files, modes := readVolume(t, paths["kube-api-access-abcde"])
	if files["namespace"] != "default" || modes["token"] != 0o644 {
		t.Errorf("got files %q, modes %v", files, modes)
	}
	claims := func(token string) map[string]any {
		t.Helper()
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			t.Fatalf("token %q is not a JWT", token)
		}
		b, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := claims(files["token"])
	k8s := c["kubernetes.io"].(map[string]any)
	if c["sub"] != "system:serviceaccount:default:runner" || k8s["pod"].(map[string]any)["uid"] != string(pod.UID) ||
		int64(c["exp"].(float64)-c["iat"].(float64)) != secs {
		t.Errorf("token claims %v", c)
	}
	if aud := claims(files["vault-token"])["aud"].([]any); len(aud) != 1 || aud[0] != "vault" {
		t.Errorf("vault token audiences %v", aud)
	}

	// A refresh keeps a token that is far from its end.
	if err := m.Refresh(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if again, _ := readVolume(t, paths["kube-api-access-abcde"]); again["token"] != files["token"] {
		t.Error("refresh requested a new token for a fresh one")
	}
	// Teardown forgets the pod's tokens.
	if err := m.Teardown(ctx, string(pod.UID)); err != nil {
		t.Fatal(err)
	}
	m.tokens.mu.Lock()
	left := len(m.tokens.tokens)
	m.tokens.mu.Unlock()
	if left != 0 {
		t.Errorf("%d tokens kept after teardown", left)
	}

	// A pod whose account does not exist waits for it, with the API's words.
	pod.Spec.ServiceAccountName = "nobody"
	if _, err := m.Setup(ctx, pod); err == nil || !strings.Contains(err.Error(), `failed to fetch token: serviceaccounts "nobody" not found`) {
		t.Errorf("a missing service account: got %v", err)
	}
}

func TestTokenFresh(t *testing.T) {
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	hour := cachedToken{issued: issued, expires: issued.Add(time.Hour)}
	year := cachedToken{issued: issued, expires: issued.Add(365 * 24 * time.Hour)}
	for _, tt := range []struct {
		t    cachedToken
		at   time.Duration
		want bool
	}{
		{hour, 47 * time.Minute, true},
		{hour, 49 * time.Minute, false}, // past 80% of its hour
		{year, 23 * time.Hour, true},
		{year, 25 * time.Hour, false}, // a day old
	} {
		if got := tt.t.fresh(issued.Add(tt.at)); got != tt.want {
			t.Errorf("token of %v at %v: fresh %v, want %v", tt.t.expires.Sub(tt.t.issued), tt.at, got, tt.want)
		}
	}
}
