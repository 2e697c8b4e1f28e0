package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

// Signature errors. Their text goes back to the sender, so it names what is
// wrong without echoing anything secret.
var (
	errNoSecret        = errors.New("webhook secret is not configured: no delivery is accepted")
	errMissingSig      = errors.New("missing X-Hub-Signature-256 header")
	errMalformedSig    = errors.New("X-Hub-Signature-256 is not sha256=<64 hex digits>")
	errSignatureDiffer = errors.New("X-Hub-Signature-256 does not match the body")
)

// checkSignature verifies header (the X-Hub-Signature-256 value) as the
// HMAC-SHA256 of body under secret, in constant time. The SHA-1 header is never
// considered: GitHub sends both, and only SHA-256 is safe.
func checkSignature(secret []byte, header string, body []byte) error {
	if len(secret) == 0 {
		return errNoSecret
	}
	if header == "" {
		return errMissingSig
	}
	hexSum, ok := strings.CutPrefix(header, "sha256=")
	if !ok || len(hexSum) != sha256.Size*2 {
		return errMalformedSig
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil {
		return errMalformedSig
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return errSignatureDiffer
	}
	return nil
}

// Sign returns the X-Hub-Signature-256 value GitHub would send for body. Tests
// and the benchmark use it to sign deliveries.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}
