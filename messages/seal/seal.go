// Package seal protects credentials that arrive with a request (Contact Pro
// sends CMI and SAP passwords as headers) so they can travel with the stored
// event without ever being stored in clear.
//
// A sealed value is "v1.<key id>.<base64url(nonce || AES-256-GCM ciphertext)>".
// The key id names the key that sealed it, so keys can rotate: the first key
// of a KeyRing seals, every key in it opens.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// strictRawURL refuses non-zero unused bits in the last character, so a
// sealed value has one spelling. Immutable, like base64.RawURLEncoding.
var strictRawURL = base64.RawURLEncoding.Strict()

// version names the format. v2 binds each value to a context (the event);
// v1 values, which were not bound, are refused.
const version = "v2"

// Errors returned by Open. Callers treat them as permanent: retrying cannot
// open a value sealed with a key that is not configured.
var (
	ErrMalformed  = errors.New("sealed value is malformed")
	ErrUnknownKey = errors.New("sealed with a key that is not configured")
	ErrTampered   = errors.New("sealed value failed authentication")
	ErrNoKeys     = errors.New("no sealing key configured")
)

// KeyRing holds the sealing keys. The zero value has no keys: Seal fails with
// ErrNoKeys and callers drop the credentials instead. A KeyRing is safe for
// concurrent use.
type KeyRing struct {
	ids   []string
	aeads map[string]cipher.AEAD
}

// ParseKeyRing reads "id:base64key,id2:base64key2". Every key is 32 bytes
// (AES-256), standard or URL base64, padded or not. The first key seals.
// Errors never repeat key material.
func ParseKeyRing(s string) (KeyRing, error) {
	var kr KeyRing
	if strings.TrimSpace(s) == "" {
		return kr, nil
	}
	kr.aeads = make(map[string]cipher.AEAD)
	for i, part := range strings.Split(s, ",") {
		id, b64, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return KeyRing{}, fmt.Errorf("key %d: want id:base64key", i+1)
		}
		if id == "" || strings.ContainsAny(id, ".: ") {
			return KeyRing{}, fmt.Errorf("key %d: id must be non-empty and hold no '.', ':' or space", i+1)
		}
		if _, dup := kr.aeads[id]; dup {
			return KeyRing{}, fmt.Errorf("key %d: id %q appears twice", i+1, id)
		}
		key, err := decodeKey(b64)
		if err != nil || len(key) != 32 {
			return KeyRing{}, fmt.Errorf("key %q: want 32 bytes in base64 (e.g. from 'openssl rand -base64 32')", id)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return KeyRing{}, fmt.Errorf("key %q: %w", id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return KeyRing{}, fmt.Errorf("key %q: %w", id, err)
		}
		kr.ids = append(kr.ids, id)
		kr.aeads[id] = aead
	}
	return kr, nil
}

func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// UnmarshalText lets configuration loaders parse a KeyRing.
func (kr *KeyRing) UnmarshalText(b []byte) error {
	parsed, err := ParseKeyRing(string(b))
	if err != nil {
		return err
	}
	*kr = parsed
	return nil
}

// String never shows keys, only their ids.
func (kr KeyRing) String() string { return "KeyRing" + fmt.Sprint(kr.ids) }

// Enabled reports whether the ring has a key to seal with.
func (kr KeyRing) Enabled() bool { return len(kr.ids) > 0 }

// aad binds the ciphertext to the format version, the key id (so a value
// cannot be re-labelled with another key id) and the caller's context (so
// it opens for the event it was sealed for only).
func aad(id string, context []byte) []byte {
	return append([]byte("ccrelay-seal."+version+"."+id+"\x00"), context...)
}

// Seal encrypts fields with the first key, bound to context: Open succeeds
// only with the same context. The result is safe to store in a message
// header.
func (kr KeyRing) Seal(fields map[string]string, context []byte) (string, error) {
	if !kr.Enabled() {
		return "", ErrNoKeys
	}
	plain, err := json.Marshal(fields)
	if err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	id := kr.ids[0]
	aead := kr.aeads[id]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	sealed := aead.Seal(nonce, nonce, plain, aad(id, context))
	return version + "." + id + "." + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Open decrypts a value made by Seal with any key of the ring and the same
// context; any other context fails with ErrTampered.
func (kr KeyRing) Open(value string, context []byte) (map[string]string, error) {
	ver, rest, ok := strings.Cut(value, ".")
	if !ok || ver != version {
		return nil, ErrMalformed
	}
	id, b64, ok := strings.Cut(rest, ".")
	if !ok || id == "" {
		return nil, ErrMalformed
	}
	aead, ok := kr.aeads[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, id)
	}
	raw, err := strictRawURL.DecodeString(b64)
	if err != nil || len(raw) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrMalformed
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], aad(id, context))
	if err != nil {
		return nil, ErrTampered
	}
	var fields map[string]string
	if err := json.Unmarshal(plain, &fields); err != nil {
		return nil, ErrMalformed
	}
	return fields, nil
}
