// Package secret holds configured credentials in types that never print
// their value, so a stray log line or error cannot leak one. It is a leaf:
// ingest, processors and sinks all keep secrets, and none of them should
// depend on another for that.
package secret

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
)

// Secret is a credential. It prints as [redacted] in fmt and slog.
type Secret string

const redacted = "[redacted]"

// String hides the value.
func (Secret) String() string { return redacted }

// GoString hides the value from %#v.
func (Secret) GoString() string { return redacted }

// LogValue hides the value from slog.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText hides the value from encoders.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Reveal returns the value. Call it only where the secret is used.
func (s Secret) Reveal() string { return string(s) }

// Matches compares s with v in constant time. Both are hashed first so the
// time does not depend on their lengths either.
func (s Secret) Matches(v string) bool {
	a, b := sha256.Sum256([]byte(s)), sha256.Sum256([]byte(v))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1 && s != ""
}

// SecretList is a comma-separated list of secrets (API keys).
type SecretList []Secret

// UnmarshalText parses "key1,key2". Errors never quote values.
func (l *SecretList) UnmarshalText(b []byte) error {
	*l = nil
	if strings.TrimSpace(string(b)) == "" {
		return nil
	}
	for i, part := range strings.Split(string(b), ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return fmt.Errorf("entry %d is empty", i+1)
		}
		*l = append(*l, Secret(part))
	}
	return nil
}

// Match reports whether v is one of the secrets, and which (0-based). It
// compares with every entry so the time does not say which one matched.
func (l SecretList) Match(v string) (int, bool) {
	found := -1
	for i, s := range l {
		if s.Matches(v) && found < 0 {
			found = i
		}
	}
	return found, found >= 0
}

// Credentials maps names (users, services, client ids) to secrets.
type Credentials map[string]Secret

// ErrCredentialsFormat is wrapped by Credentials parse errors.
var ErrCredentialsFormat = errors.New(`want "name:secret,name2:secret2"`)

// UnmarshalText parses "name:secret,name2:secret2". A secret may hold ':'
// (everything after the first one is the secret). Errors never quote secrets.
func (c *Credentials) UnmarshalText(b []byte) error {
	m, err := parsePairs(b, ":", ErrCredentialsFormat)
	*c = m
	return err
}

// parsePairs parses "name<sep>value,..." into a map; the value is what
// follows the first sep. Errors wrap format and never quote values.
func parsePairs(b []byte, sep string, format error) (map[string]Secret, error) {
	m := map[string]Secret{}
	if strings.TrimSpace(string(b)) == "" {
		return m, nil
	}
	for i, part := range strings.Split(string(b), ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(part), sep)
		switch {
		case !ok:
			return m, fmt.Errorf("entry %d has no '%s': %w", i+1, sep, format)
		case name == "":
			return m, fmt.Errorf("entry %d has an empty name: %w", i+1, format)
		case value == "":
			return m, fmt.Errorf("entry %d (%q) has an empty value: %w", i+1, name, format)
		}
		if _, dup := m[name]; dup {
			return m, fmt.Errorf("name %q appears twice: %w", name, format)
		}
		m[name] = Secret(value)
	}
	return m, nil
}

// Names returns the names, sorted: safe to log.
func (c Credentials) Names() []string { return slices.Sorted(maps.Keys(c)) }

// Check reports whether name is known and secret is its secret. An unknown
// name costs the same as a wrong secret, so timing does not reveal names.
func (c Credentials) Check(name, secret string) bool {
	s, ok := c[name]
	if !ok {
		Secret("\x00unknown").Matches(secret)
		return false
	}
	return s.Matches(secret)
}

// Assignments maps names to secrets that may themselves hold ':' (a
// "user:password" pair): "name=value,name2=value2".
type Assignments map[string]Secret

// ErrAssignmentsFormat is wrapped by Assignments parse errors.
var ErrAssignmentsFormat = errors.New(`want "name=value,name2=value2"`)

// UnmarshalText parses "name=value,...". A value may hold '=' and ':'
// (everything after the first '=' is the value). Errors never quote values.
func (a *Assignments) UnmarshalText(b []byte) error {
	m, err := parsePairs(b, "=", ErrAssignmentsFormat)
	*a = m
	return err
}

// Names returns the names, sorted: safe to log.
func (a Assignments) Names() []string { return Credentials(a).Names() }

// UserPassword splits the value of name as "user:password"; ok is false
// when name is absent or its value has no ':'.
func (a Assignments) UserPassword(name string) (user string, password Secret, ok bool) {
	v, found := a[name]
	if !found {
		return "", "", false
	}
	u, p, ok := strings.Cut(v.Reveal(), ":")
	if !ok || u == "" || p == "" {
		return "", "", false
	}
	return u, Secret(p), true
}
