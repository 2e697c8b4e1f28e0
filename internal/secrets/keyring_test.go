package secrets

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/keystone-app/keystone/internal/config"
)

func key(id string, b byte) config.EncryptionKey {
	return config.EncryptionKey{ID: id, Key: bytes.Repeat([]byte{b}, 32)}
}

func TestSealedSecretOpensOnlyWhereItBelongs(t *testing.T) {
	ring, err := NewKeyring([]config.EncryptionKey{key("new", 1), key("old", 2)})
	if err != nil {
		t.Fatal(err)
	}
	home := binding{owner: "acme", repo: "web", app: "api", name: "DB_URL"}
	keyID, sealed, err := ring.seal(home, []byte("postgres://s3cret"))
	if err != nil || keyID != "new" {
		t.Fatalf("seal: key %q, err %v", keyID, err)
	}
	if bytes.Contains(sealed, []byte("s3cret")) {
		t.Fatal("the sealed value contains the plaintext")
	}
	if plain, err := ring.open(home, keyID, sealed); err != nil || string(plain) != "postgres://s3cret" {
		t.Fatalf("open: %q, %v", plain, err)
	}
	_, again, _ := ring.seal(home, []byte("postgres://s3cret"))
	if bytes.Equal(sealed, again) {
		t.Fatal("sealing twice gave the same bytes: the nonce is not random")
	}
	elsewhere := map[string]binding{
		"other owner": {owner: "evil", repo: "web", app: "api", name: "DB_URL"},
		"other repo":  {owner: "acme", repo: "www", app: "api", name: "DB_URL"},
		"other app":   {owner: "acme", repo: "web", app: "worker", name: "DB_URL"},
		"other name":  {owner: "acme", repo: "web", app: "api", name: "LOG_LEVEL"},
	}
	for what, b := range elsewhere {
		if _, err := ring.open(b, keyID, sealed); err == nil {
			t.Errorf("ciphertext moved to %s still decrypts", what)
		}
	}
	if _, err := ring.open(home, "old", sealed); err == nil {
		t.Error("ciphertext relabelled with another key id still decrypts")
	}
	flipped := append([]byte(nil), sealed...)
	flipped[len(flipped)-1] ^= 1
	if _, err := ring.open(home, keyID, flipped); err == nil {
		t.Error("altered ciphertext decrypts")
	}
	if _, err := ring.open(home, keyID, sealed[:10]); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated ciphertext: %v", err)
	}
	_, err = ring.open(home, "gone", sealed)
	if err == nil || !strings.Contains(err.Error(), `key id "gone"`) || !strings.Contains(err.Error(), "KEYSTONE_ENCRYPTION_KEYS") {
		t.Errorf("unknown key id: %v", err)
	}
}

func TestNewKeyringRefusesBadKeys(t *testing.T) {
	cases := map[string][]config.EncryptionKey{
		"no key":     nil,
		"short key":  {{ID: "k", Key: []byte("too short")}},
		"duplicate":  {key("k", 1), key("k", 2)},
		"long key":   {{ID: "k", Key: make([]byte, 33)}},
		"second bad": {key("a", 1), {ID: "b", Key: make([]byte, 16)}},
	}
	for name, keys := range cases {
		if _, err := NewKeyring(keys); err == nil || !strings.Contains(err.Error(), "KEYSTONE_ENCRYPTION_KEYS") {
			t.Errorf("%s: err = %v, want an error naming KEYSTONE_ENCRYPTION_KEYS", name, err)
		}
	}
}

// TestGeneratedKeyIsAcceptedByConfig: `keys generate` prints what
// KEYSTONE_ENCRYPTION_KEYS accepts, with a fresh id each time.
func TestGeneratedKeyIsAcceptedByConfig(t *testing.T) {
	now := time.Date(2026, 5, 22, 23, 0, 0, 0, time.FixedZone("X", -5*3600))
	a, err := GenerateKey(rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateKey(rand.Reader, now)
	if a == b || strings.Split(a, ":")[0] == strings.Split(b, ":")[0] {
		t.Fatalf("two generated keys share an id: %s, %s", a, b)
	}
	if !strings.HasPrefix(a, "k20260523-") {
		t.Errorf("key id of %s does not name the UTC day", a)
	}
	env := map[string]string{"KEYSTONE_ENCRYPTION_KEYS": a + "," + b}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.EncryptionKeys) != 2 || len(cfg.EncryptionKeys[0].Key) != 32 || cfg.EncryptionKeys[0].ID != strings.Split(a, ":")[0] {
		t.Fatalf("config read %+v", cfg.EncryptionKeys)
	}
	if _, err := GenerateKey(strings.NewReader("short"), now); err == nil {
		t.Error("a failing random source gave a key")
	}
}
