package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/keystone-app/keystone/internal/config"
)

// Keyring holds the encryption keys of KEYSTONE_ENCRYPTION_KEYS: the first
// encrypts, all decrypt.
type Keyring struct {
	primary string
	aeads   map[string]cipher.AEAD
	ids     []string
}

// NewKeyring builds the keyring from the configured keys, in order.
func NewKeyring(keys []config.EncryptionKey) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("KEYSTONE_ENCRYPTION_KEYS: no encryption key configured")
	}
	k := &Keyring{primary: keys[0].ID, aeads: make(map[string]cipher.AEAD, len(keys))}
	for _, key := range keys {
		if len(key.Key) != 32 {
			return nil, fmt.Errorf("KEYSTONE_ENCRYPTION_KEYS: key %q is %d bytes, want 32 (AES-256)", key.ID, len(key.Key))
		}
		if _, dup := k.aeads[key.ID]; dup {
			return nil, fmt.Errorf("KEYSTONE_ENCRYPTION_KEYS: key id %q appears twice", key.ID)
		}
		block, err := aes.NewCipher(key.Key)
		if err != nil {
			return nil, fmt.Errorf("KEYSTONE_ENCRYPTION_KEYS: key %q: %w", key.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("KEYSTONE_ENCRYPTION_KEYS: key %q: %w", key.ID, err)
		}
		k.aeads[key.ID] = aead
		k.ids = append(k.ids, key.ID)
	}
	return k, nil
}

// Primary is the id of the key that encrypts.
func (k *Keyring) Primary() string { return k.primary }

// IDs lists every key id, the primary first.
func (k *Keyring) IDs() []string { return append([]string(nil), k.ids...) }

// Has reports whether id is one of the keys.
func (k *Keyring) Has(id string) bool { _, ok := k.aeads[id]; return ok }

// binding is what a ciphertext belongs to: it is authenticated with it, so a
// ciphertext copied to another app or name, or relabelled with another key
// id, does not decrypt.
// A preview secret is bound as such: a production ciphertext copied into a
// preview row (or back) does not decrypt.
type binding struct {
	owner, repo, app, name string
	preview                bool
}

func (b binding) String() string {
	if b.preview {
		return b.owner + "/" + b.repo + "/" + b.app + " " + b.name + " (previews)"
	}
	return b.owner + "/" + b.repo + "/" + b.app + " " + b.name
}

// aad joins the parts with NUL, which none of them can contain. Production
// secrets keep the AAD they had before previews existed.
func (b binding) aad(keyID string) []byte {
	aad := "keystone.secret.v1\x00" + keyID + "\x00" + b.owner + "\x00" + b.repo + "\x00" + b.app + "\x00" + b.name
	if b.preview {
		aad += "\x00preview"
	}
	return []byte(aad)
}

// seal encrypts plaintext under the primary key: a random 96-bit nonce
// followed by the AES-256-GCM ciphertext and tag.
func (k *Keyring) seal(b binding, plaintext []byte) (keyID string, sealed []byte, err error) {
	aead := k.aeads[k.primary]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, fmt.Errorf("encrypt %s: random nonce: %w", b, err)
	}
	return k.primary, aead.Seal(nonce, nonce, plaintext, b.aad(k.primary)), nil
}

// open decrypts what seal produced under keyID.
func (k *Keyring) open(b binding, keyID string, sealed []byte) ([]byte, error) {
	aead, ok := k.aeads[keyID]
	if !ok {
		return nil, fmt.Errorf("decrypt %s: it is encrypted under key id %q, which is not in KEYSTONE_ENCRYPTION_KEYS", b, keyID)
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("decrypt %s: stored ciphertext is truncated", b)
	}
	n := aead.NonceSize()
	plaintext, err := aead.Open(nil, sealed[:n], sealed[n:], b.aad(keyID))
	if err != nil {
		return nil, fmt.Errorf("decrypt %s under key id %q: wrong key or altered ciphertext", b, keyID)
	}
	return plaintext, nil
}

// GenerateKey returns a new KEYSTONE_ENCRYPTION_KEYS entry, KEYID:BASE64 of 32
// random bytes read from random, with an id naming the day it was made and a
// random suffix, e.g. k20260522-9f3a01c4.
func GenerateKey(random io.Reader, now time.Time) (string, error) {
	buf := make([]byte, 36)
	if _, err := io.ReadFull(random, buf); err != nil {
		return "", fmt.Errorf("generate key: read random bytes: %w", err)
	}
	id := "k" + now.UTC().Format("20060102") + "-" + hex.EncodeToString(buf[32:])
	return id + ":" + base64.StdEncoding.EncodeToString(buf[:32]), nil
}
