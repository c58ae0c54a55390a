package secret_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/messages/secret"
)

func TestSecretNeverPrints(t *testing.T) {
	s := secret.Secret("hunter2")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "secret", s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %#v %q", s, s, s, s), buf.String()} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("secret printed: %s", out)
		}
	}
	if !s.Matches("hunter2") || s.Matches("hunter3") || secret.Secret("").Matches("") {
		t.Error("Matches")
	}
}

func TestCredentialsParse(t *testing.T) {
	var c secret.Credentials
	if err := c.UnmarshalText([]byte("a:x:y, b:z")); err != nil {
		t.Fatal(err)
	}
	if !c.Check("a", "x:y") || !c.Check("b", "z") || c.Check("a", "x") || c.Check("c", "z") {
		t.Errorf("Check: %v", c.Names())
	}
	for _, bad := range []string{"SECRETVALUE", ":SECRETVALUE", "a:", "a:SECRETVALUE,a:SECRETVALUE", "a:SECRETVALUE,,b:SECRETVALUE"} {
		err := c.UnmarshalText([]byte(bad))
		if err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "SECRETVALUE") {
			t.Errorf("%q: error quotes a secret: %v", bad, err)
		}
	}
	var l secret.SecretList
	if err := l.UnmarshalText([]byte("k1, k2")); err != nil {
		t.Fatal(err)
	}
	if len(l) != 2 {
		t.Fatalf("%q holds %d secrets, want 2", "k1, k2", len(l))
	}
	if i, ok := l.Match("k2"); !ok || i != 1 {
		t.Errorf("Match k2: %d %v", i, ok)
	}
	if err := l.UnmarshalText([]byte("k1,,k2")); err == nil {
		t.Error("empty entry accepted")
	}
}

// FuzzCredentials: parsing never panics, never keeps an empty name or
// secret, and a parse error never quotes a secret.
func FuzzCredentials(f *testing.F) {
	f.Add("a:b,c:d:e")
	f.Add(",")
	f.Add("a:")
	f.Fuzz(func(t *testing.T, s string) {
		var c secret.Credentials
		if err := c.UnmarshalText([]byte(s)); err != nil {
			// Errors may quote names, never secrets: a secret long enough to
			// be recognised, that no name contains, must not appear.
			var names, secrets []string
			for _, part := range strings.Split(s, ",") {
				name, secret, _ := strings.Cut(strings.TrimSpace(part), ":")
				names, secrets = append(names, name), append(secrets, secret)
			}
			for _, secret := range secrets {
				inName := false
				for _, n := range names {
					// Errors quote names with %q: "\x00" and the next
					// bytes of a name can spell a secret without leaking it.
					inName = inName || strings.Contains(n, secret) || strings.Contains(fmt.Sprintf("%q", n), secret)
				}
				if len(secret) > 3 && !inName && strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q quotes secret %q", err, secret)
				}
			}
			return
		}
		for name, secret := range c {
			if name == "" || secret == "" {
				t.Fatalf("empty name or secret kept from %q", s)
			}
			if !c.Check(name, secret.Reveal()) {
				t.Fatalf("parsed secret of %q does not check", name)
			}
		}
	})
}

func TestAssignmentsParse(t *testing.T) {
	var a secret.Assignments
	if err := a.UnmarshalText([]byte("twilio/us=user:pa=ss, sinch/eu=u2:p2")); err != nil {
		t.Fatal(err)
	}
	if u, p, ok := a.UserPassword("twilio/us"); !ok || u != "user" || p.Reveal() != "pa=ss" {
		t.Errorf("UserPassword(twilio/us) = %q, %v", u, ok)
	}
	if _, _, ok := a.UserPassword("nope"); ok {
		t.Error("UserPassword of an absent name")
	}
	for _, bad := range []string{"SECRETVALUE", "=SECRETVALUE", "a=", "a=SECRETVALUE,a=SECRETVALUE"} {
		err := a.UnmarshalText([]byte(bad))
		if !errors.Is(err, secret.ErrAssignmentsFormat) {
			t.Errorf("%q: %v", bad, err)
		} else if strings.Contains(err.Error(), "SECRETVALUE") {
			t.Errorf("%q: error quotes a secret: %v", bad, err)
		}
	}
}
