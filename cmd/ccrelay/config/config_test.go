package config_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/test/expect"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
	"github.com/ccrelay/ccrelay/messages/seal"
)

func TestDefaults(t *testing.T) {
	cfg, err := config.Load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := cfg.Ingest
	expect.All(t,
		expect.Check{Name: "embedded NATS", Got: cfg.Broker.Embedded(), Want: true},
		expect.Check{Name: "CCRELAY_DATA_DIR", Got: cfg.Broker.DataDir, Want: "./data"},
		expect.Check{Name: "CCRELAY_HTTP_ADDR", Got: in.HTTP.Addr, Want: ":8080"},
		expect.Check{Name: "CCRELAY_METRICS_ADDR", Got: cfg.Process.MetricsAddr, Want: ":9090"},
		expect.Check{Name: "CCRELAY_STREAM_REPLICAS", Got: in.Streams.Replicas, Want: 1},
		expect.Check{Name: "CCRELAY_STREAM_MAX_AGE", Got: in.Streams.MaxAge, Want: 168 * time.Hour},
		expect.Check{Name: "CCRELAY_DEDUP_WINDOW", Got: in.Streams.DedupWindow, Want: 10 * time.Minute},
		expect.Check{Name: "CCRELAY_SINCH_MAX_CLOCK_SKEW", Got: in.Sinch.MaxClockSkew, Want: 5 * time.Minute},
		expect.Check{Name: "CCRELAY_HTTP_MAX_BODY_BYTES", Got: in.HTTP.MaxBodyBytes, Want: int64(512 << 10)},
		expect.Check{Name: "CCRELAY_CONTACTPRO_API_KEY_HEADER", Got: in.ContactPro.Auth.APIKeyHeader, Want: "x-api-key"},
		expect.Check{Name: "CCRELAY_CONNECT_API_KEY_HEADER", Got: in.Connect.Auth.APIKeyHeader, Want: "x-api-key"},
		expect.Check{Name: "CCRELAY_SUBJECT_PREFIX", Got: in.Streams.Subjects.Prefix(), Want: "ccrelay"},
		expect.Check{Name: "sealing enabled", Got: in.SealKeys.Enabled(), Want: false},
	)
}

func TestValuesAndFiles(t *testing.T) {
	files := map[string]string{"/run/secrets/sinch": "svc1:from-file\n", "/run/secrets/seal": "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"}
	read := func(p string) ([]byte, error) {
		if v, ok := files[p]; ok {
			return []byte(v), nil
		}
		return nil, os.ErrNotExist
	}
	cfg, err := config.Load([]string{
		"CCRELAY_NATS_URL=nats://a:4222,nats://b:4222",
		"CCRELAY_STREAM_REPLICAS=3",
		"CCRELAY_SINCH_WEBHOOK_SECRETS_FILE=/run/secrets/sinch",
		"CCRELAY_SEAL_KEYS_FILE=/run/secrets/seal",
		"CCRELAY_SINCH_MAX_CLOCK_SKEW=0",
		"CCRELAY_CONTACTPRO_BASIC_USERS=u:p:with:colons",
		"CCRELAY_LOG_LEVEL=debug",
		"PATH=/usr/bin",
	}, read)
	if err != nil {
		t.Fatal(err)
	}
	in := cfg.Ingest
	if !expect.All(t,
		expect.Check{Name: "embedded NATS", Got: cfg.Broker.Embedded(), Want: false},
		expect.Check{Name: "CCRELAY_STREAM_REPLICAS", Got: in.Streams.Replicas, Want: 3},
		expect.Check{Name: "CCRELAY_SINCH_MAX_CLOCK_SKEW", Got: in.Sinch.MaxClockSkew, Want: time.Duration(0)},
		expect.Check{Name: "sealing enabled (from CCRELAY_SEAL_KEYS_FILE)", Got: in.SealKeys.Enabled(), Want: true},
	) {
		t.FailNow()
	}
	if !in.Sinch.WebhookSecrets.Check("svc1", "from-file") {
		t.Error("secret from file not read (or newline kept)")
	}
	if !in.ContactPro.Auth.BasicUsers.Check("u", "p:with:colons") {
		t.Error("password with colons")
	}
}

func TestErrorsNameTheVariable(t *testing.T) {
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"CCRELAY_STREAM_MAX_AGE=forever"}, "CCRELAY_STREAM_MAX_AGE:"},
		{[]string{"CCRELAY_STREAM_REPLICAS=9"}, "CCRELAY_STREAM_REPLICAS:"},
		{[]string{"CCRELAY_STREAM_REPLICAS=three"}, "CCRELAY_STREAM_REPLICAS:"},
		{[]string{"CCRELAY_HTTP_PORT=1"}, "CCRELAY_HTTP_PORT: unknown setting"},
		{[]string{"CCRELAY_SINCH_WEBHOOK_SECRETS=nocolonXYZZY"}, "CCRELAY_SINCH_WEBHOOK_SECRETS:"},
		{[]string{"CCRELAY_CONTACTPRO_API_KEYS=a,,b"}, "CCRELAY_CONTACTPRO_API_KEYS:"},
		{[]string{"CCRELAY_CONNECT_BASIC_USERS=nocolonXYZZY"}, "CCRELAY_CONNECT_BASIC_USERS:"},
		{[]string{"CCRELAY_SEAL_KEYS=k1:tooshortXYZZY"}, "CCRELAY_SEAL_KEYS:"},
		{[]string{"CCRELAY_SINCH_MAX_CLOCK_SKEW=-1m"}, "CCRELAY_SINCH_MAX_CLOCK_SKEW:"},
		{[]string{"CCRELAY_DEDUP_WINDOW=30d"}, "CCRELAY_DEDUP_WINDOW:"},
		{[]string{"CCRELAY_DEDUP_WINDOW=9m"}, "CCRELAY_DEDUP_WINDOW: 9m0s is shorter than twice CCRELAY_SINCH_MAX_CLOCK_SKEW"},
		{[]string{"CCRELAY_SINCH_MAX_CLOCK_SKEW=6m"}, "CCRELAY_DEDUP_WINDOW: 10m0s is shorter than twice CCRELAY_SINCH_MAX_CLOCK_SKEW"},
		{[]string{"CCRELAY_SUMMARIES_STATUS_TTL=24h"}, "CCRELAY_SUMMARIES_STATUS_TTL:"},
		{[]string{"CCRELAY_SUMMARIES_RECONCILE_EVERY=-1m"}, "CCRELAY_SUMMARIES_RECONCILE_EVERY:"},
		{[]string{"CCRELAY_DEDUP_WINDOW=200h"}, "CCRELAY_DEDUP_WINDOW:"},
		{[]string{"CCRELAY_MAX_BODY_BYTES=0"}, "CCRELAY_MAX_BODY_BYTES:"},
		{[]string{"CCRELAY_NATS_SYNC=sometimes"}, "CCRELAY_NATS_SYNC:"},
		{[]string{"CCRELAY_NATS_LISTEN=4222"}, "CCRELAY_NATS_LISTEN:"},
		{[]string{"CCRELAY_SUBJECT_PREFIX=a.*"}, "CCRELAY_SUBJECT_PREFIX:"},
		{[]string{"CCRELAY_OAUTH_JWKS_URL=not a url"}, "CCRELAY_OAUTH_JWKS_URL:"},
		{[]string{"CCRELAY_OAUTH_SIGNING_KEY=shortXYZZY"}, "CCRELAY_OAUTH_SIGNING_KEY:"},
		{[]string{"CCRELAY_LOG_LEVEL=loud"}, "CCRELAY_LOG_LEVEL:"},
		{[]string{"CCRELAY_METRICS_ADDR=:8080"}, "CCRELAY_METRICS_ADDR:"},
		{[]string{"CCRELAY_STREAM_MAX_AGE=720h"}, "CCRELAY_PROCESS_LEDGER_TTL:"},
		{[]string{"CCRELAY_PROCESS_BACKOFF=1s,soon"}, "CCRELAY_PROCESS_BACKOFF:"},
		{[]string{"CCRELAY_PROCESS_CONCURRENCY=0"}, "CCRELAY_PROCESS_CONCURRENCY:"},
		{[]string{"CCRELAY_C4C_CHAT_FILTER=ExternalID eq 'x'"}, "CCRELAY_C4C_CHAT_FILTER:"},
		{[]string{"CCRELAY_C4C_URL=my-tenant"}, "CCRELAY_C4C_URL:"},
		{[]string{"CCRELAY_SEAL_KEYS=a", "CCRELAY_SEAL_KEYS_FILE=/x"}, "CCRELAY_SEAL_KEYS: set either"},
		{[]string{"CCRELAY_SEAL_KEYS_FILE=/does/not/exist"}, "CCRELAY_SEAL_KEYS_FILE:"},
		{[]string{"CCRELAY_MESSAGING_SECRETS=twilio/us:XYZZY"}, "CCRELAY_PUBLIC_URL:"},
		{[]string{"CCRELAY_MESSAGING_SECRETS=twilio/us:XYZZY", "CCRELAY_PUBLIC_URL=https://relay.example.com/"}, "CCRELAY_PUBLIC_URL:"},
		{[]string{"CCRELAY_MESSAGING_SECRETS=sinchconversation/eu:XYZZY"}, "CCRELAY_MESSAGING_SECRETS:"},
		{[]string{"CCRELAY_MESSAGING_SECRETS=wavy/a.b:XYZZY"}, "CCRELAY_MESSAGING_SECRETS:"},
		{[]string{"CCRELAY_MESSAGING_BASIC_USERS=twilio/us=u:XYZZY"}, "CCRELAY_MESSAGING_SECRETS:"},
		{[]string{"CCRELAY_MESSAGING_BASIC_USERS=wavy/br=XYZZY"}, "CCRELAY_MESSAGING_BASIC_USERS:"},
		{[]string{"CCRELAY_MESSAGING_VERIFY_TOKENS=twilio/us:XYZZY"}, "CCRELAY_MESSAGING_VERIFY_TOKENS:"},
		{[]string{"CCRELAY_MESSAGING_MAX_CLOCK_SKEW=6m"}, "CCRELAY_DEDUP_WINDOW: 10m0s is shorter than twice CCRELAY_MESSAGING_MAX_CLOCK_SKEW"},
		{[]string{"CCRELAY_FORWARD_URLS=sinch/eu=https://u:XYZZY@cp.example/"}, "CCRELAY_FORWARD_URLS:"},
		{[]string{"CCRELAY_FORWARD_URLS=sinch/eu=https://cp.example/"}, "CCRELAY_FORWARD_URLS:"},
		{[]string{"CCRELAY_FORWARD_URLS=wavy/br=https://cp.example/"}, "CCRELAY_FORWARD_URLS:"},
		{[]string{"CCRELAY_SINCH_WEBHOOK_SECRETS=eu:s", "CCRELAY_FORWARD_URLS=sinch/eu=https://cp.example/", "CCRELAY_FORWARD_PARTITIONS=3"}, "CCRELAY_FORWARD_PARTITIONS:"},
		{[]string{"CCRELAY_SINCH_WEBHOOK_SECRETS=eu:s", "CCRELAY_FORWARD_URLS=sinch/eu=https://cp.example/", "CCRELAY_FORWARD_BASIC_USERS=sinch/other=u:XYZZY"}, "CCRELAY_FORWARD_BASIC_USERS:"},
	} {
		_, err := config.Load(c.env, func(string) ([]byte, error) { return nil, os.ErrNotExist })
		if err == nil {
			t.Errorf("%v: accepted", c.env)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, c.want) {
			t.Errorf("%v: %q does not start with %q", c.env, msg, c.want)
		}
		if strings.Contains(msg, "XYZZY") || strings.Contains(msg, "\n") {
			t.Errorf("%v: error is not one safe line: %q", c.env, msg)
		}
	}
	if _, err := config.Load([]string{"CCRELAY_SEAL_KEYS_FILE=/x"}, func(string) ([]byte, error) { return nil, os.ErrPermission }); !errors.Is(err, os.ErrPermission) {
		t.Errorf("file error not wrapped: %v", err)
	}
}

func TestVariablesListsEverySetting(t *testing.T) {
	names := map[string]bool{}
	for _, v := range config.Variables() {
		names[v.Name] = true
	}
	for _, want := range []string{"CCRELAY_HTTP_ADDR", "CCRELAY_METRICS_ADDR", "CCRELAY_NATS_URL", "CCRELAY_DATA_DIR", "CCRELAY_STREAM_REPLICAS",
		"CCRELAY_STREAM_MAX_AGE", "CCRELAY_DEDUP_WINDOW", "CCRELAY_MAX_BODY_BYTES", "CCRELAY_SINCH_WEBHOOK_SECRETS", "CCRELAY_SINCH_MAX_CLOCK_SKEW",
		"CCRELAY_CONTACTPRO_API_KEYS", "CCRELAY_CONTACTPRO_BASIC_USERS", "CCRELAY_OAUTH_CLIENTS", "CCRELAY_OAUTH_JWKS_URL", "CCRELAY_CONNECT_API_KEYS",
		"CCRELAY_SEAL_KEYS"} {
		if !names[want] {
			t.Errorf("%s missing", want)
		}
	}
}

// The relay signs with the secrets ingest verifies: they are read once.
func TestRelayConfiguration(t *testing.T) {
	cfg, err := config.Load([]string{
		"CCRELAY_SINCH_WEBHOOK_SECRETS=eu:sinch-secret",
		"CCRELAY_PUBLIC_URL=https://relay.example.com",
		"CCRELAY_MESSAGING_SECRETS=twilio/us:tw-token",
		"CCRELAY_MESSAGING_BASIC_USERS=wavy/br=wavy:pw",
		"CCRELAY_FORWARD_URLS=sinch/eu=https://cp.example/sms/sinch,twilio/us=https://cp.example/sms/twilio,wavy/br=http://10.1.2.3/sms",
		"CCRELAY_FORWARD_BASIC_USERS=sinch/eu=ext:pw:1",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := cfg.Processors.Forward
	expect.All(t,
		expect.Check{Name: "destinations", Got: f.URLs.Keys(), Want: []string{"sinch/eu", "twilio/us", "wavy/br"}},
		expect.Check{Name: "partitions", Got: f.Partitions, Want: 16},
		expect.Check{Name: "sinch secret shared", Got: f.SinchSecrets["eu"].Reveal(), Want: "sinch-secret"},
		expect.Check{Name: "twilio token shared", Got: f.MessagingSecrets["twilio/us"].Reveal(), Want: "tw-token"},
		expect.Check{Name: "enabled", Got: f.Enabled(), Want: true},
	)
}

// secretKeys finds the settings whose Go type keeps a secret, walking t as
// env does: nested structs without an env tag add their envPrefix.
func secretKeys(t reflect.Type, prefix string, out map[string]bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, tagged := f.Tag.Lookup("env")
		switch {
		case tagged && name != "-":
			ft := f.Type
			if strings.HasSuffix(ft.PkgPath(), "/messages/secret") || ft == reflect.TypeOf(seal.KeyRing{}) {
				out[prefix+strings.Split(name, ",")[0]] = true
			}
		case !tagged && f.Type.Kind() == reflect.Struct:
			secretKeys(f.Type, prefix+f.Tag.Get("envPrefix"), out)
		}
	}
}

// Every setting says what it does, in one line, under a heading, and a
// secret says that it is one.
func TestEveryVariableHasHelp(t *testing.T) {
	secrets := map[string]bool{}
	secretKeys(reflect.TypeOf(config.Config{}), config.Prefix, secrets)
	if !secrets["CCRELAY_C4C_PASSWORD"] || !secrets["CCRELAY_SEAL_KEYS"] || !secrets["CCRELAY_CONNECT_API_KEYS"] {
		t.Fatalf("the walk misses secrets: %v", secrets)
	}
	vars := config.Variables()
	seen := map[string]bool{}
	for _, v := range vars {
		seen[v.Name] = true
		switch {
		case v.Help == "":
			t.Errorf("%s: no help tag beside its env tag", v.Name)
		case strings.ContainsAny(v.Help, "\n`"):
			t.Errorf("%s: help is not one plain line: %q", v.Name, v.Help)
		case secrets[v.Name] != strings.HasPrefix(v.Help, "secret: "):
			t.Errorf("%s: secret %v, but its help is %q (a secret's help starts with \"secret: \")", v.Name, secrets[v.Name], v.Help)
		}
		if v.Group == "" {
			t.Errorf("%s: no group", v.Name)
		}
	}
	for k := range secrets {
		if !seen[k] {
			t.Errorf("%s: a secret Variables does not list", k)
		}
	}
}

var update = flag.Bool("update", false, "rewrite README.md's configuration table from Variables")

// The README's configuration table is what Variables renders: run with
// -update to rewrite it after changing a setting.
func TestREADMEConfigTable(t *testing.T) {
	const begin, end = "<!-- config:begin -->\n", "<!-- config:end -->"
	path := filepath.Join("..", "..", "..", "README.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i, j := strings.Index(readme, begin), strings.Index(readme, end)
	if i < 0 || j < i {
		t.Fatalf("README.md has no %q ... %q in its Configuration section", strings.TrimSpace(begin), end)
	}
	want := configTable(config.Variables())
	got := readme[i+len(begin) : j]
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(readme[:i+len(begin)]+want+readme[j:]), 0o644); err != nil { // #nosec G306 -- a README
			t.Fatal(err)
		}
		return
	}
	gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
	for k := 0; k < max(len(gl), len(wl)); k++ {
		if k >= len(gl) || k >= len(wl) || gl[k] != wl[k] {
			t.Fatalf("README.md's configuration table differs from the settings' help tags at row %d\nREADME: %s\ntags:   %s\n"+
				"(run: go test ./cmd/ccrelay/config -run TestREADMEConfigTable -update)", k+1, at(gl, k), at(wl, k))
		}
	}
}

func at(lines []string, k int) string {
	if k < len(lines) {
		return lines[k]
	}
	return "(none)"
}

// configTable renders vars as the README's table, a heading row for each
// group.
func configTable(vars []config.Variable) string {
	var b strings.Builder
	b.WriteString("| variable | default | meaning |\n|---|---|---|\n")
	group := ""
	for _, v := range vars {
		if v.Group != group {
			group = v.Group
			fmt.Fprintf(&b, "| **%s** | | |\n", group)
		}
		d := ""
		if v.Default != "" {
			d = "`" + v.Default + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, d, markdown(v.Help))
	}
	return b.String()
}

// markdown sets a help line's 'quoted' values as code and escapes the
// table's pipes. A quote opens after a space, '(' or '/' and closes before
// a space, punctuation or the end, so apostrophes (Go's) stay text.
func markdown(help string) string {
	var b strings.Builder
	for i := 0; i < len(help); i++ {
		c := help[i]
		if c == '\'' && (i == 0 || strings.IndexByte(" (/", help[i-1]) >= 0) {
			if j := closingQuote(help, i+1); j > i+1 {
				b.WriteString("`" + help[i+1:j] + "`")
				i = j
				continue
			}
		}
		if c == '|' {
			b.WriteString(`\|`)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func closingQuote(s string, from int) int {
	for j := from; j < len(s); j++ {
		if s[j] == '\'' && (j+1 == len(s) || strings.IndexByte(" ,.;:)/", s[j+1]) >= 0) {
			return j
		}
	}
	return -1
}
