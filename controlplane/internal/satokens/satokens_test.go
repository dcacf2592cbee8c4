package satokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
	"github.com/skiff-sh/skiff/controlplane/internal/satoken"
)

const testCA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func TestTokenSecrets(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ctx := t.Context()
	key, err := satoken.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := satoken.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Client, cfg.Signer, cfg.CACert, cfg.Logger = cs, signer, []byte(testCA), slog.New(slog.DiscardHandler)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	secrets := cs.CoreV1().Secrets("default")
	sa, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "ci"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tokenSecret := func(name, account string) {
		t.Helper()
		if _, err := secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{corev1.ServiceAccountNameKey: account}},
			Type:       corev1.SecretTypeServiceAccountToken,
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tokenSecret("ci-token", "ci")
	var filled *corev1.Secret
	apitest.WaitFor(t, 20*time.Second, "the token secret filled", func() error {
		s, err := secrets.Get(ctx, "ci-token", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Data["token"]) == 0 || string(s.Data["ca.crt"]) != testCA || string(s.Data["namespace"]) != "default" || s.Annotations[corev1.ServiceAccountUIDKey] != string(sa.UID) {
			return fmt.Errorf("data keys %d, annotations %v", len(s.Data), s.Annotations)
		}
		filled = s
		return nil
	})
	claims, err := signer.Verify(string(filled.Data["token"]), []string{satoken.Issuer}, time.Now())
	if err != nil || !claims.Legacy || claims.Username() != "system:serviceaccount:default:ci" || claims.Secret.Name != "ci-token" || claims.ServiceAccount.UID != string(sa.UID) {
		t.Errorf("token claims %+v, %v", claims, err)
	}

	// Another type is not ours; a token secret of an account that does
	// not exist goes.
	if _, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "plain"}, StringData: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tokenSecret("ghost-token", "ghost")
	gone := func(name string) func() error {
		return func() error {
			_, err := secrets.Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return errors.Join(err, fmt.Errorf("secret %s still there", name))
		}
	}
	apitest.WaitFor(t, 20*time.Second, "the secret of a missing account deleted", gone("ghost-token"))
	// The account goes: its token secret goes too.
	if err := cs.CoreV1().ServiceAccounts("default").Delete(ctx, "ci", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	apitest.WaitFor(t, 20*time.Second, "the deleted account's secret deleted", gone("ci-token"))
	if _, err := secrets.Get(ctx, "plain", metav1.GetOptions{}); err != nil {
		t.Errorf("an Opaque secret: %v", err)
	}
}
