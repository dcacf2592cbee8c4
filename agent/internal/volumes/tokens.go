package volumes

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// defaultTokenSeconds is a serviceAccountToken projection's lifetime when
// it names none, as the API defaults it.
const defaultTokenSeconds = 3600

// maxTokenAge is when a token is renewed whatever its lifetime, as the
// kubelet's token manager does.
const maxTokenAge = 24 * time.Hour

// tokenCache holds the service account tokens requested for pods'
// projected volumes, by pod UID, audience and lifetime, so that each
// Setup or Refresh asks the API for a token only when the one it has is
// near its end.
type tokenCache struct {
	mu     sync.Mutex
	tokens map[string]cachedToken
}

type cachedToken struct {
	token           string
	issued, expires time.Time
}

// fresh says whether a token is good for a while yet: less than 80% of
// its lifetime and less than a day gone, the kubelet's rule.
func (t cachedToken) fresh(now time.Time) bool {
	ttl := t.expires.Sub(t.issued)
	return now.Before(t.expires.Add(-ttl/5)) && now.Sub(t.issued) < maxTokenAge
}

func tokenKey(podUID, audience string, seconds int64) string {
	return podUID + "/" + audience + "/" + strconv.FormatInt(seconds, 10)
}

// forget drops the tokens of a pod.
func (c *tokenCache) forget(podUID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.tokens {
		if strings.HasPrefix(k, podUID+"/") {
			delete(c.tokens, k)
		}
	}
}

// tokenPayload is a projected serviceAccountToken source: a token of the
// pod's service account bound to the pod, from the TokenRequest API.
func (m *Manager) tokenPayload(ctx context.Context, pod *corev1.Pod, p *corev1.ServiceAccountTokenProjection, mode int32) (map[string]file, error) {
	if m.cfg.Client == nil {
		return nil, fmt.Errorf("volumes: no API client to request a token of service account %q", pod.Spec.ServiceAccountName)
	}
	seconds := int64(defaultTokenSeconds)
	if p.ExpirationSeconds != nil {
		seconds = *p.ExpirationSeconds
	}
	key := tokenKey(string(pod.UID), p.Audience, seconds)
	now := time.Now()
	m.tokens.mu.Lock()
	t, ok := m.tokens.tokens[key]
	m.tokens.mu.Unlock()
	if !ok || !t.fresh(now) {
		req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: &seconds,
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}
		if p.Audience != "" {
			req.Spec.Audiences = []string{p.Audience}
		}
		tr, err := m.cfg.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, pod.Spec.ServiceAccountName, req, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("failed to fetch token: %w", err)
		}
		t = cachedToken{token: tr.Status.Token, issued: now, expires: tr.Status.ExpirationTimestamp.Time}
		m.tokens.mu.Lock()
		if m.tokens.tokens == nil {
			m.tokens.tokens = map[string]cachedToken{}
		}
		m.tokens.tokens[key] = t
		m.tokens.mu.Unlock()
		m.log.Debug("service account token requested", "pod", pod.Namespace+"/"+pod.Name, "serviceaccount", pod.Spec.ServiceAccountName, "expires", t.expires)
	}
	return map[string]file{p.Path: {data: []byte(t.token), mode: fileMode(mode)}}, nil
}
