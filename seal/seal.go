// Package seal encrypts secrets at rest (OAuth tokens, PKCE verifiers) with
// AES-256-GCM under a keyring that supports key rotation.
//
// # Key format
//
// Keys come from the environment variable SWITCHBOARD_SECRET_KEY: one or more
// comma-separated entries of the form
//
//	id:base64key
//
// where id is a short name (letters, digits, '.', '_', '-'; at most 64
// bytes) and base64key is 32 random bytes in standard or URL-safe base64,
// with or without padding. A bare base64key (no "id:") means id "k1". The
// first entry is the current key: everything sealed from now on uses it. The
// others are older keys, kept only so that data sealed with them can still be
// opened. To rotate, put a new entry first and keep the old one after it:
//
//	SWITCHBOARD_SECRET_KEY=k2:<new key>,k1:<old key>
//
// Data sealed with k1 stays so until it is written again; `switchboard
// rekey` re-seals all of it under k2, after which k1 can be dropped (see
// docs/security-keys.md).
//
// A key can be generated with `openssl rand -base64 32`.
//
// Without the variable, dev mode generates a key once into
// <dataDir>/secret.key (mode 0600, same format as the variable, so its
// contents can later be moved into the environment) and reuses it on later
// starts; production refuses to start.
//
// # Envelope
//
// Seal returns
//
//	version (1 byte, = 1) | len(key id) (1 byte) | key id | nonce (12 bytes) | GCM ciphertext and tag
//
// The version and key id are authenticated together with the caller's
// associated data, so neither can be changed without Open failing.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// EnvVar is the environment variable that holds the keys.
const EnvVar = "SWITCHBOARD_SECRET_KEY"

// KeySize is the size of an AES-256 key in bytes.
const KeySize = 32

const (
	version1  = 1
	nonceSize = 12
	maxIDLen  = 64
)

// ErrDecrypt is returned (wrapped) by Open when the ciphertext was not sealed
// with the named key and associated data, or was modified.
var ErrDecrypt = errors.New("seal: message authentication failed (wrong key, wrong associated data, or tampered data)")

// ErrUnknownKey is returned (wrapped) by Open when the envelope names a key id
// that is not in the keyring.
var ErrUnknownKey = errors.New("seal: unknown key id")

// Key is one entry of a keyring.
type Key struct {
	ID     string
	Secret []byte // KeySize bytes
}

// Keyring holds AES-256-GCM keys by id; one of them is current and seals all
// new data. A Keyring is immutable and safe for concurrent use.
type Keyring struct {
	current string
	ids     []string // in the order given, current first
	aeads   map[string]cipher.AEAD
}

// NewKeyring returns a keyring of keys; the first is current. Ids must be
// valid and distinct and every secret KeySize bytes long.
func NewKeyring(keys ...Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("seal: no keys")
	}
	kr := &Keyring{current: keys[0].ID, aeads: make(map[string]cipher.AEAD, len(keys))}
	for _, k := range keys {
		if err := validID(k.ID); err != nil {
			return nil, err
		}
		if _, dup := kr.aeads[k.ID]; dup {
			return nil, fmt.Errorf("seal: key id %q appears twice", k.ID)
		}
		if len(k.Secret) != KeySize {
			return nil, fmt.Errorf("seal: key %q is %d bytes; want %d (AES-256)", k.ID, len(k.Secret), KeySize)
		}
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("seal: key %q: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("seal: key %q: %w", k.ID, err)
		}
		kr.aeads[k.ID] = aead
		kr.ids = append(kr.ids, k.ID)
	}
	return kr, nil
}

// NewRandomKey returns KeySize random bytes.
func NewRandomKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("seal: generate key: %w", err)
	}
	return k, nil
}

func validID(id string) error {
	if id == "" {
		return errors.New("seal: empty key id")
	}
	if len(id) > maxIDLen {
		return fmt.Errorf("seal: key id %q is longer than %d bytes", id, maxIDLen)
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return fmt.Errorf("seal: key id %q: only letters, digits, '.', '_' and '-' are allowed", id)
		}
	}
	return nil
}

// CurrentID returns the id of the key that seals new data.
func (k *Keyring) CurrentID() string { return k.current }

// IDs returns the key ids, current first.
func (k *Keyring) IDs() []string { return append([]string(nil), k.ids...) }

// Has reports whether the keyring holds a key with this id.
func (k *Keyring) Has(id string) bool {
	_, ok := k.aeads[id]
	return ok
}

// Seal encrypts plaintext with the current key. associatedData is
// authenticated but not stored: Open must be given the same bytes.
func (k *Keyring) Seal(plaintext, associatedData []byte) ([]byte, error) {
	aead := k.aeads[k.current]
	hdr := header(k.current)
	out := make([]byte, len(hdr)+nonceSize, len(hdr)+nonceSize+len(plaintext)+aead.Overhead())
	copy(out, hdr)
	nonce := out[len(hdr):]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return aead.Seal(out, nonce, plaintext, additional(hdr, associatedData)), nil
}

// Open decrypts an envelope made by Seal with the key it names. It fails
// with an error wrapping ErrUnknownKey if that key is not in the keyring and
// ErrDecrypt if authentication fails. Errors never contain plaintext or key
// material.
func (k *Keyring) Open(ciphertext, associatedData []byte) ([]byte, error) {
	id, rest, err := parse(ciphertext)
	if err != nil {
		return nil, err
	}
	aead, ok := k.aeads[id]
	if !ok {
		return nil, fmt.Errorf("%w %q: the data was sealed with a key that %s does not hold", ErrUnknownKey, id, EnvVar)
	}
	if len(rest) < nonceSize+aead.Overhead() {
		return nil, errors.New("seal: envelope too short")
	}
	hdr := ciphertext[:len(ciphertext)-len(rest)]
	pt, err := aead.Open(nil, rest[:nonceSize], rest[nonceSize:], additional(hdr, associatedData))
	if err != nil {
		return nil, fmt.Errorf("%w (key id %q)", ErrDecrypt, id)
	}
	return pt, nil
}

// KeyID returns the id of the key an envelope was sealed with, without
// decrypting it.
func KeyID(ciphertext []byte) (string, error) {
	id, _, err := parse(ciphertext)
	return id, err
}

func header(id string) []byte {
	return append([]byte{version1, byte(len(id))}, id...)
}

// additional is what GCM authenticates: the envelope header, so the version
// and key id cannot be swapped, then the caller's associated data.
func additional(hdr, ad []byte) []byte {
	out := make([]byte, 0, len(hdr)+len(ad))
	return append(append(out, hdr...), ad...)
}

func parse(b []byte) (id string, rest []byte, err error) {
	if len(b) < 2 {
		return "", nil, errors.New("seal: envelope too short")
	}
	if b[0] != version1 {
		return "", nil, fmt.Errorf("seal: unsupported envelope version %d", b[0])
	}
	n := int(b[1])
	if n == 0 || len(b) < 2+n {
		return "", nil, errors.New("seal: malformed envelope key id")
	}
	return string(b[2 : 2+n]), b[2+n:], nil
}
