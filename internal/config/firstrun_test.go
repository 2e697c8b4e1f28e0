package config_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/keystone-app/keystone/internal/config"
)

// TestProductionWebhookSecretOnlyWithAnApp: production starts without any
// App credentials (to serve the first-run setup, SPEC §15), but an App in
// the environment without its webhook secret is still refused.
func TestProductionWebhookSecretOnlyWithAnApp(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemText := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	base := func() map[string]string {
		return map[string]string{"KEYSTONE_ENV": "production", "KEYSTONE_PUBLIC_URL": "https://ks.example.com",
			"KEYSTONE_ENCRYPTION_KEYS": "k1:" + base64.StdEncoding.EncodeToString(make([]byte, 32)),
			"KEYSTONE_METRICS_TOKEN":   "0123456789abcdef0123"}
	}
	if _, err := config.Load(env(base())); err != nil {
		t.Fatalf("no App, no secret: %v, want start-up (setup serves)", err)
	}
	vars := base()
	vars["KEYSTONE_GITHUB_APP_ID"] = "42"
	vars["KEYSTONE_GITHUB_PRIVATE_KEY"] = string(pemText)
	_, err = config.Load(env(vars))
	if err == nil || !strings.Contains(err.Error(), "KEYSTONE_GITHUB_WEBHOOK_SECRET: required in production") {
		t.Fatalf("App without secret: err = %v", err)
	}
}
