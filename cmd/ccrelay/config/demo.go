package config

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Demo holds the credentials 'ccrelay serve --demo' makes up for one run,
// so that a first run accepts requests without reading the configuration
// table first. It is never the default: a server with made-up credentials
// printed to its terminal is for trying ccrelay out.
type Demo struct {
	SinchService string
	SinchSecret  string
	// APIKey is accepted by the Contact Pro and Connect endpoints.
	APIKey      string
	OAuthClient string
	OAuthSecret string
	SealKey     string
}

// NewDemo generates fresh credentials from r (crypto/rand when nil).
func NewDemo(r io.Reader) (Demo, error) {
	if r == nil {
		r = rand.Reader
	}
	token := func(n int) (string, error) {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return "", fmt.Errorf("demo credentials: %w", err)
		}
		return hex.EncodeToString(b), nil
	}
	d := Demo{SinchService: "demo", OAuthClient: "demo"}
	var err error
	for _, f := range []*string{&d.SinchSecret, &d.APIKey, &d.OAuthSecret} {
		if *f, err = token(16); err != nil {
			return Demo{}, err
		}
	}
	key := make([]byte, 32)
	if _, err := io.ReadFull(r, key); err != nil {
		return Demo{}, fmt.Errorf("demo credentials: %w", err)
	}
	d.SealKey = "demo:" + base64.StdEncoding.EncodeToString(key)
	return d, nil
}

// Settings are the variables the demo sets. Its listeners answer this
// machine only: the credentials they accept are printed to a terminal.
func (d Demo) Settings() map[string]string {
	return map[string]string{
		Prefix + "SINCH_WEBHOOK_SECRETS": d.SinchService + ":" + d.SinchSecret,
		Prefix + "CONTACTPRO_API_KEYS":   d.APIKey,
		Prefix + "CONNECT_API_KEYS":      d.APIKey,
		Prefix + "OAUTH_CLIENTS":         d.OAuthClient + "@contactpro+connect:" + d.OAuthSecret,
		Prefix + "SEAL_KEYS":             d.SealKey,
		Prefix + "HTTP_ADDR":             onLoopback(Prefix + "HTTP_ADDR"),
		Prefix + "METRICS_ADDR":          onLoopback(Prefix + "METRICS_ADDR"),
	}
}

// onLoopback is the default address of the variable name, on 127.0.0.1
// instead of every interface: the same port as without --demo.
func onLoopback(name string) string {
	for _, v := range Variables() {
		if v.Name != name {
			continue
		}
		if _, port, err := net.SplitHostPort(v.Default); err == nil {
			return net.JoinHostPort("127.0.0.1", port)
		}
	}
	return "127.0.0.1:0"
}

// PrivateDir creates dir for the demo, or narrows an existing one, to its
// owner only (0700): the demo writes its credentials and the embedded
// server's password into it, and the events the embedded server stores
// there carry what callers sent.
func PrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil { // #nosec G302 -- a directory needs its x bit; 0700 is its owner's only
		return fmt.Errorf("data directory: %w", err)
	}
	return nil
}

// WriteEnvFile writes EnvFile into dir as demo.env, readable by its owner
// only, and returns its path. It writes a new file, created 0600, and
// renames it over the old one: an existing demo.env keeps its mode when
// written in place, and a chmod after the write would leave a moment in
// which the credentials are readable by others.
func (d Demo) WriteEnvFile(dir, base, natsURL, natsUser, natsPassword string) (string, error) {
	path := filepath.Join(dir, "demo.env")
	f, err := os.CreateTemp(dir, ".demo.env-*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	// Gone after the rename; only a failed write leaves it to remove.
	defer func() { _ = os.Remove(f.Name()) }()
	_, werr := f.WriteString(d.EnvFile(base, natsURL, natsUser, natsPassword))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), path)
	}
	if werr != nil {
		return "", fmt.Errorf("write %s: %w", path, werr)
	}
	return path, nil
}

// Environ returns environ with the demo's settings added. A setting the
// user made (directly or with _FILE) is kept: --demo fills gaps only.
func (d Demo) Environ(environ []string) []string {
	set := map[string]bool{}
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		set[strings.TrimSuffix(k, "_FILE")] = true
	}
	out := append([]string(nil), environ...)
	for _, k := range slices.Sorted(maps.Keys(d.Settings())) {
		if !set[k] {
			out = append(out, k+"="+d.Settings()[k])
		}
	}
	return out
}

// Instructions is what --demo prints once the server is ready: the
// credentials, and one ready-to-paste request per source against base
// (e.g. http://127.0.0.1:8080). The Sinch request is signed in the shell
// when pasted, so its timestamp is fresh however long after start-up it is
// used.
func (d Demo) Instructions(base, envFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `
ccrelay is running in demo mode with credentials made up for this run (also written, with
the NATS password, to %s, readable by you only; a new run makes new ones):

  CCRELAY_SINCH_WEBHOOK_SECRETS=%s:%s
  CCRELAY_CONTACTPRO_API_KEYS=%s
  CCRELAY_CONNECT_API_KEYS=%s
  CCRELAY_OAUTH_CLIENTS=%s@contactpro+connect:%s
  CCRELAY_SEAL_KEYS=%s

Paste any of these into another terminal (they need curl and openssl), or run
'bash test/quickstart.sh %s' for a walk through every source, the NATS CLI and
ccrelay's operator commands.

# Sinch Conversation API: an inbound WhatsApp message, signed with the webhook secret
SECRET='%s'
body='%s'
nonce=$(openssl rand -hex 16); ts=$(date +%%s)
sig=$(printf '%%s.%%s.%%s' "$body" "$nonce" "$ts" | openssl dgst -sha256 -hmac "$SECRET" -binary | base64)
curl -i %s/v1/sinch/%s -H 'Content-Type: application/json' \
  -H "X-Sinch-Webhook-Signature-Nonce: $nonce" -H "X-Sinch-Webhook-Signature-Timestamp: $ts" \
  -H 'X-Sinch-Webhook-Signature-Algorithm: HmacSHA256' -H "X-Sinch-Webhook-Signature: $sig" \
  --data-binary "$body"

# Contact Pro: a conversation lifecycle event, with an API key
curl -i '%s/v1/contactpro/lifecycle/Allocated' -H 'x-api-key: %s' -H 'Content-Type: application/json' \
  --data-binary '%s'

# Contact Pro: the same with an OAuth token from ccrelay's token endpoint
token=$(curl -s %s/oauth/token -u '%s:%s' -d grant_type=client_credentials | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
curl -i '%s/v1/contactpro/lifecycle/Accepted' -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  --data-binary '%s'

# Amazon Connect: a Contact Lens post-call event, as an EventBridge API destination sends it
# (stored with 202; without CCRELAY_CONNECT_BUCKET the summaries processor then dead-letters
# it, with an ERROR line saying so: there is no analysis file to read in a demo)
curl -i %s/v1/connect/events -H 'x-api-key: %s' -H 'Content-Type: application/json' \
  --data-binary '%s'

`, envFile, d.SinchService, d.SinchSecret, d.APIKey, d.APIKey, d.OAuthClient, d.OAuthSecret, d.SealKey, envFile,
		d.SinchSecret, DemoSinchInbound, base, d.SinchService,
		base, d.APIKey, DemoContactProAllocated,
		base, d.OAuthClient, d.OAuthSecret, base, DemoContactProAccepted,
		base, d.APIKey, DemoContactLens)
	return b.String()
}

// EnvFile is a shell file with the demo's credentials and addresses, for
// scripts such as test/quickstart.sh to source. serve --demo writes it
// into the data directory, readable by its owner only.
func (d Demo) EnvFile(base, natsURL, natsUser, natsPassword string) string {
	return fmt.Sprintf(`# written by 'ccrelay serve --demo' for this run only
# (shell variables, not exported: ccrelay refuses CCRELAY_ variables it
# does not know, and these are for the script, not for ccrelay)
demo_url='%s'
demo_nats_url='%s'
demo_nats_user='%s'
demo_nats_password='%s'
demo_sinch_service='%s'
demo_sinch_secret='%s'
demo_api_key='%s'
demo_oauth_client='%s'
demo_oauth_secret='%s'
`, base, natsURL, natsUser, natsPassword, d.SinchService, d.SinchSecret, d.APIKey, d.OAuthClient, d.OAuthSecret)
}

// Sample bodies of the demo, in the senders' own shapes.
const (
	DemoSinchInbound = `{"app_id":"01EB37HMH1M6SV18ABNS3G135H","accepted_time":"2026-11-21T10:00:00.000Z","event_time":"2026-11-21T10:00:00Z","project_id":"c36f3d3d-1523-4edd-ae42-11995557ff61","message":{"id":"01DEMO0000000000000000000A","direction":"TO_APP","contact_message":{"text_message":{"text":"Hello, I need help with my order"}},"channel_identity":{"channel":"WHATSAPP","identity":"46732000000","app_id":"01EB37HMH1M6SV18ABNS3G135H"},"conversation_id":"01DEMOCONV00000000000000000","contact_id":"01DEMOCONTACT0000000000000","metadata":"","accept_time":"2026-11-21T10:00:00.000Z"},"message_metadata":""}`
	// The lifecycle bodies are those of Contact Pro's "listen to
	// conversation lifecycle events" example, with the placeholders
	// ({event.name}, {event.datetime}, {contact.id}, ...) filled in.
	DemoContactProAllocated = `{"Event name":"Allocated","Event date":"2026-11-21T10:00:05.000Z","Channel type":"chat","Direction":"inbound","ID":"0a1b2c3d-0000-4000-8000-000000000001","Current queue":"Support"}`
	DemoContactProAccepted  = `{"Event name":"Accepted","Event date":"2026-11-21T10:00:09.000Z","Channel type":"chat","Direction":"inbound","ID":"0a1b2c3d-0000-4000-8000-000000000001","Current queue":"Support"}`
	DemoContactLens         = `{"version":"0","id":"6f1c2b3a-0000-4000-8000-000000000001","detail-type":"Contact Lens Post Call Rules Matched","source":"aws.connect","account":"123456789012","time":"2026-11-21T09:58:00Z","region":"eu-central-1","resources":[],"detail":{"version":"1.0","ruleName":"SAPPostCallAnalytics","actionName":"SAPPostCallAnalytics","instanceArn":"arn:aws:connect:eu-central-1:123456789012:instance/b1e4f6a2-0000-4000-8000-000000000001","contactArn":"arn:aws:connect:eu-central-1:123456789012:instance/b1e4f6a2-0000-4000-8000-000000000001/contact/c0ffee00-0000-4000-8000-000000000001"}}`
)
