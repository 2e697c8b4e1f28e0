package users

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id's cost parameters. They are stored in every hash (PHC
// string format), so raising them later leaves existing hashes verifiable.
type Params struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// DefaultParams follow OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane):
// a few tens of milliseconds a hash on a server core.
func DefaultParams() Params { return Params{MemoryKiB: 19 * 1024, Time: 2, Threads: 1} }

const (
	saltLen = 16
	keyLen  = 32
	// maxPasswordLen bounds the work an attacker can ask of one sign-in.
	maxPasswordLen = 1024
)

// Limits on the parameters a stored hash may ask for, so that a tampered
// row cannot make a sign-in allocate gigabytes.
const (
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxTime      = 64
)

// HashPassword returns the argon2id hash of password as a PHC string:
// $argon2id$v=19$m=…,t=…,p=…$salt$key (unpadded standard base64).
func HashPassword(password string, p Params) (string, error) {
	if password == "" {
		return "", errors.New("password is empty")
	}
	if len(password) > maxPasswordLen {
		return "", fmt.Errorf("password is longer than %d bytes", maxPasswordLen)
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return formatHash(p, salt, argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, keyLen)), nil
}

// decoyHash returns a well-formed hash with p's parameters that no password
// matches (its key is random, not derived): checking a password against it
// costs what a real check costs, without hashing anything up front.
func decoyHash(p Params) string {
	salt, key := make([]byte, saltLen), make([]byte, keyLen)
	_, _ = rand.Read(salt)
	_, _ = rand.Read(key)
	return formatHash(p, salt, key)
}

func formatHash(p Params, salt, key []byte) string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// CheckPassword reports whether password matches the PHC hash. A malformed
// hash never matches.
func CheckPassword(hash, password string) bool {
	p, salt, key, err := parseHash(hash)
	if err != nil || len(password) > maxPasswordLen {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1
}

func parseHash(hash string) (Params, []byte, []byte, error) {
	var p Params
	fields := strings.Split(hash, "$")
	if len(fields) != 6 || fields[0] != "" || fields[1] != "argon2id" || fields[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, errors.New("not an argon2id v19 PHC string")
	}
	var threads uint32
	if _, err := fmt.Sscanf(fields[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &threads); err != nil {
		return p, nil, nil, fmt.Errorf("argon2id parameters %q: %w", fields[3], err)
	}
	if p.MemoryKiB == 0 || p.MemoryKiB > maxMemoryKiB || p.Time == 0 || p.Time > maxTime || threads == 0 || threads > 255 {
		return p, nil, nil, fmt.Errorf("argon2id parameters %q out of range", fields[3])
	}
	p.Threads = uint8(threads)
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(fields[4])
	if err != nil || len(salt) < 8 {
		return p, nil, nil, errors.New("argon2id salt is not base64 of at least 8 bytes")
	}
	key, err := b64.DecodeString(fields[5])
	if err != nil || len(key) < 16 {
		return p, nil, nil, errors.New("argon2id key is not base64 of at least 16 bytes")
	}
	return p, salt, key, nil
}
