package broker

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"nats://user:pa55@a:4222,nats://b:4222": "nats://[redacted]@a:4222,nats://b:4222",
		"nats://tok@a:4222":                     "nats://[redacted]@a:4222",
		"nats://a:4222":                         "nats://a:4222",
		"user:pa55@a:4222, nats://b:4222":       "[redacted]@a:4222, nats://b:4222",
		" user:pa55@a:4222":                     " [redacted]@a:4222",
		"nats://u:p@55@a:4222":                  "nats://[redacted]@a:4222",
		"":                                      "",
	} {
		if got := redact(in); got != want || strings.Contains(got, "pa55") {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{DataDir: "d", Listen: "127.0.0.1:0", Sync: "always", ConnectTimeout: time.Second}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{
		{DataDir: "", Listen: "none", ConnectTimeout: time.Second},
		{DataDir: "d", Listen: "4222", ConnectTimeout: time.Second},
		{DataDir: "d", Listen: "h:99999", ConnectTimeout: time.Second},
		{DataDir: "d", Listen: "none", Sync: "-1s", ConnectTimeout: time.Second},
		{DataDir: "d", Listen: "none", ConnectTimeout: 0},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// An embedded server with the strictest sync policy, reachable only in
// process, stores and drains cleanly.
func TestEmbeddedInProcess(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), Listen: "none", Sync: "always", ConnectTimeout: 10 * time.Second}
	b, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !b.Embedded() || b.ClientURL() != "" {
		t.Errorf("embedded %v, client url %q", b.Embedded(), b.ClientURL())
	}
	if jsc := b.server.JetStreamConfig(); !b.server.JetStreamEnabled() || jsc == nil || !jsc.SyncAlways {
		t.Error("jetstream or sync policy not applied")
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !b.Conn.IsClosed() {
		t.Error("connection open after Close")
	}
}

// TestEmbeddedClosedByDefault: the embedded server's client port refuses a
// connection without the password it generated into the data directory
// (0600, kept across restarts), and listening beyond loopback without TLS
// is refused at start-up.
func TestEmbeddedClosedByDefault(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Listen: "127.0.0.1:0", ConnectTimeout: 10 * time.Second}
	b, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	url := b.ClientURL()
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("connected without a password")
	}
	pw, err := cfg.ReadEmbeddedPassword()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(cfg.PasswordFile()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v %v", fi, err)
	}
	nc, err := nats.Connect(url, nats.UserInfo(EmbeddedUser, pw))
	if err != nil {
		t.Fatalf("with the password: %v", err)
	}
	nc.Close()
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	b2, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close(context.Background())
	if again, _ := cfg.ReadEmbeddedPassword(); again != pw {
		t.Error("the password changed across a restart")
	}
	for _, listen := range []string{"0.0.0.0:4222", ":4222", "10.0.0.5:4222"} {
		c := Config{DataDir: dir, Listen: listen, ConnectTimeout: time.Second}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "CCRELAY_NATS_TLS_CERT") {
			t.Errorf("%s without TLS: %v", listen, err)
		}
	}
	for _, listen := range []string{"127.0.0.1:4222", "localhost:4222", "[::1]:4222", "none"} {
		if err := (Config{DataDir: dir, Listen: listen, ConnectTimeout: time.Second}).Validate(); err != nil {
			t.Errorf("%s: %v", listen, err)
		}
	}
}

// TestNATSURLErrorsHideThePassword: a CCRELAY_NATS_URL with a password
// that does not parse, or names nothing that answers, fails with an error
// (and logs) naming the URL with its user info redacted: never the
// password, nor a piece of it.
func TestNATSURLErrorsHideThePassword(t *testing.T) {
	for _, u := range []string{
		"nats://ccrelay:XYZZY%zzSECRET@127.0.0.1:1",  // an invalid escape: url.Parse quotes "%zz"
		"nats://ccrelay:XYZZY SECRET@127.0.0.1:1",    // a space in the password
		"nats://ccrelay:XYZZY/SECRET@127.0.0.1:1",    // a slash: the rest reads as a path
		"nats://ccrelay:XYZZY#SECRET@127.0.0.1:1",    // a fragment
		"nats://ccrelay:XYZZYSECRET@bad host:1",      // the host fails, the URL is quoted
		"nats://ccrelay:XYZZYSECRET@[::1:4222",       // likewise
		"nats://ccrelay:XYZZYSECRET@127.0.0.1:99999", // a port that does not exist
		"ccrelay:XYZZYSECRET@127.0.0.1:1",            // no scheme: nats.Connect adds one
		"nats://127.0.0.1:1, nats://ccrelay:XYZZYSECRET@127.0.0.1:1\x7f",
		"nats://ccrelay:XYZZYSECRET@127.0.0.1:1", // valid, nothing answers
	} {
		t.Run(u, func(t *testing.T) {
			var logs strings.Builder
			cfg := Config{URL: u, ConnectTimeout: 300 * time.Millisecond}
			_, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			if err == nil {
				t.Fatal("connected")
			}
			for _, piece := range []string{"XYZZY", "SECRET", "%zz"} {
				if strings.Contains(err.Error(), piece) || strings.Contains(logs.String(), piece) {
					t.Errorf("%q shows %q:\nerror: %v\nlog: %s", u, piece, err, logs.String())
				}
			}
			if !strings.Contains(err.Error(), "[redacted]@") {
				t.Errorf("the error does not name the URL: %v", err)
			}
		})
	}
}
