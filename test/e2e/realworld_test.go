package e2e_test

import (
	"bytes"
	"crypto/md5" //nolint:gosec // the digest client Contact Pro is, for the test
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/messages"
)

const fixtures = "../../messages/testdata"

// realSinchCallbacks posts every callback of Sinch's SDK test resources and
// documentation (messages/testdata/sinch), signed as Sinch signs: each is
// answered 2xx and stored byte for byte under its trigger's subject,
// project-level ones under the _project app token. The SDKs' own signature
// vectors are then replayed as they are (with their 2021 timestamps) on a
// deployment without the clock check: they verify.
func realSinchCallbacks(t *testing.T, natsURL string) {
	d := deploy(t, natsURL, 1)
	files, _ := filepath.Glob(filepath.Join(fixtures, "sinch", "*", "*.json"))
	stored := 0
	for _, f := range files {
		if filepath.Base(f) == "vectors.json" {
			continue
		}
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := d.post("/v1/sinch/svc1", signed(sinchSecret, body, time.Now()), body)
		if r.status/100 != 2 {
			t.Errorf("%s: %d %s", f, r.status, r.body)
			continue
		}
		if r.status == http.StatusOK {
			continue // the SDKs share some bodies byte for byte: a duplicate
		}
		stored++
		m := d.stored(r)
		if !bytes.Equal(m.Data, body) {
			t.Errorf("%s: stored body differs", f)
		}
		var top struct {
			AppID *string `json:"app_id"`
		}
		_ = json.Unmarshal(body, &top)
		if a, err := d.subjects.Parse(m.Subject); top.AppID != nil && *top.AppID == "" && (err != nil || a.Name != messages.SinchProjectApp) {
			t.Errorf("%s: project-level callback on %q", f, m.Subject)
		}
	}
	if stored < 30 {
		t.Errorf("%d distinct callbacks stored", stored)
	}

	raw := deploy(t, natsURL, 1, "CCRELAY_SINCH_WEBHOOK_SECRETS=sdk:foo_secret1234", "CCRELAY_SINCH_MAX_CLOCK_SKEW=0")
	var vectors []struct{ Body, Nonce, Timestamp, Signature string }
	b, _ := os.ReadFile(filepath.Join(fixtures, "sinch", "signed", "vectors.json"))
	if err := json.Unmarshal(b, &vectors); err != nil || len(vectors) < 3 {
		t.Fatalf("vectors: %v", err)
	}
	for _, v := range vectors {
		body, _ := os.ReadFile(filepath.Join(fixtures, "sinch", "signed", v.Body))
		h := jsonHeader()
		h.Set("X-Sinch-Webhook-Signature", v.Signature)
		h.Set("X-Sinch-Webhook-Signature-Nonce", v.Nonce)
		h.Set("X-Sinch-Webhook-Signature-Timestamp", v.Timestamp)
		h.Set("X-Sinch-Webhook-Signature-Algorithm", "HmacSHA256")
		if r := raw.post("/v1/sinch/sdk", h, body); r.status != http.StatusAccepted {
			t.Errorf("%s signed by the SDK vector: %d %s", v.Body, r.status, r.body)
		}
	}
}

// realContactProCalls sends the calls of Contact Pro's documented
// integration set-ups (messages/testdata/contactpro/calls.json) as Contact
// Pro sends them: POST, GET without a body, PUT with query parameters,
// placeholders in the path, authenticated with digest (SHA-256, as Contact
// Pro's "digest:<user>" does) beside an API key in another header. Every
// lifecycle event of the conversation is stored on its own event's
// subject, a retry is a duplicate, and the request line is kept.
func realContactProCalls(t *testing.T, natsURL string) {
	d := deploy(t, natsURL, 1, "CCRELAY_CONTACTPRO_DIGEST_USERS=cpdigest:digest-password-1")
	b, _ := os.ReadFile(filepath.Join(fixtures, "contactpro", "calls.json"))
	var calls []struct {
		Name, Method, Path, Query, Event, Contact string
		Body                                      json.RawMessage
	}
	if err := json.Unmarshal(b, &calls); err != nil || len(calls) < 15 {
		t.Fatalf("calls: %v", err)
	}
	ids := map[string]string{}
	storedOn := map[string]int{}
	for _, c := range calls {
		var body []byte
		if len(c.Body) > 0 && string(c.Body) != "null" {
			var buf bytes.Buffer
			_ = json.Compact(&buf, c.Body)
			body = buf.Bytes()
		}
		uri := c.Path
		if c.Query != "" {
			uri += "?" + (&urlQuery{c.Query}).encoded()
		}
		send := func() response {
			// Contact Pro's digest client: ask, get the challenge, answer.
			h := http.Header{}
			if body != nil {
				h.Set("Content-Type", "application/json")
			}
			first := d.do(0, c.Method, uri, h, body)
			if first.status != http.StatusUnauthorized {
				t.Fatalf("%s without credentials: %d", c.Name, first.status)
			}
			var challenge string
			for _, v := range first.header.Values("WWW-Authenticate") {
				if strings.Contains(v, "algorithm=SHA-256") {
					challenge = v
				}
			}
			h.Set("Authorization", digestAnswer(t, challenge, c.Method, uri, "cpdigest", "digest-password-1"))
			h.Set("x-api-key", "an API key of another system, not ccrelay's")
			return d.do(0, c.Method, uri, h, body)
		}
		r := send()
		if r.status != http.StatusAccepted {
			t.Errorf("%s: %d %s", c.Name, r.status, r.body)
			continue
		}
		m := d.stored(r)
		storedOn[m.Subject]++
		if want := d.subjects.ContactPro(strings.Split(strings.TrimPrefix(c.Path, "/v1/contactpro/"), "/")[0], c.Event); m.Subject != want {
			t.Errorf("%s: subject %q, want %q", c.Name, m.Subject, want)
		}
		if !bytes.Equal(m.Data, body) {
			t.Errorf("%s: stored body differs", c.Name)
		}
		if m.Header.Get(messages.HeaderRequestMethod) != c.Method {
			t.Errorf("%s: method header %q", c.Name, m.Header.Get(messages.HeaderRequestMethod))
		}
		id := m.Header.Get("Nats-Msg-Id")
		if prev, dup := ids[id]; dup {
			t.Errorf("%s and %s share dedup id %q", c.Name, prev, id)
		}
		ids[id] = c.Name
		if !strings.Contains(id, ":"+c.Contact+":") {
			t.Errorf("%s: dedup id %q does not name contact %s", c.Name, id, c.Contact)
		}
		// Contact Pro retries when it gets no answer in time: the same
		// call is answered 200 and not stored again.
		if again := send(); again.status != http.StatusOK {
			t.Errorf("%s again: %d %s", c.Name, again.status, again.body)
		}
	}
	if n := d.count(); int(n) != len(calls) {
		t.Errorf("%d events stored for %d distinct calls", n, len(calls))
	}
	// One conversation's lifecycle, the event named in the body only:
	// each event on its own subject, both Allocated events stored.
	for ev, want := range map[string]int{"received": 1, "queued": 1, "allocated": 2, "accepted": 1, "rejected": 1, "transferred": 1, "forwarded": 1, "ended": 1} {
		if got := storedOn[d.subjects.ContactPro("lifecycle", ev)]; got != want {
			t.Errorf("%d events on %s, want %d", got, ev, want)
		}
	}
}

// urlQuery keeps a fixture's query as written but escaped for a URL.
type urlQuery struct{ raw string }

func (q *urlQuery) encoded() string {
	parts := strings.Split(q.raw, "&")
	for i, p := range parts {
		k, v, _ := strings.Cut(p, "=")
		parts[i] = k + "=" + strings.ReplaceAll(v, ":", "%3A")
	}
	return strings.Join(parts, "&")
}

// digestAnswer answers a Digest challenge as an RFC 7616 client.
func digestAnswer(t *testing.T, challenge, method, uri, user, pass string) string {
	t.Helper()
	get := func(name string) string {
		m := regexp.MustCompile(name + `="?([^",]+)"?`).FindStringSubmatch(challenge)
		if m == nil {
			t.Fatalf("challenge %q has no %s", challenge, name)
		}
		return m[1]
	}
	var newHash func() hash.Hash = md5.New
	if get("algorithm") == "SHA-256" {
		newHash = sha256.New
	}
	H := func(s string) string { h := newHash(); h.Write([]byte(s)); return hex.EncodeToString(h.Sum(nil)) }
	realm, nonce := get("realm"), get("nonce")
	resp := H(H(user+":"+realm+":"+pass) + ":" + nonce + ":00000001:0a4f113b:auth:" + H(method+":"+uri))
	return fmt.Sprintf(`Digest username="%s", realm="%s", uri="%s", algorithm=%s, nonce="%s", nc=00000001, cnonce="0a4f113b", qop=auth, response="%s", opaque="%s"`,
		user, realm, uri, get("algorithm"), nonce, resp, get("opaque"))
}

// realS3Events posts the S3 EventBridge events of messages/testdata/aws:
// an analysis file's event is stored byte for byte under the bucket's
// analysis subject, the redacted file's event of the same call is the same
// trigger (a duplicate), and AWS's own examples (another key, another
// detail-type) and the redacted audio's event are refused with 422 and
// change nothing.
func realS3Events(t *testing.T, natsURL string) {
	d := deploy(t, natsURL, 1, "CCRELAY_CONNECT_BUCKET=amazon-connect-acme")
	h := jsonHeader()
	h.Set("x-api-key", connectAPIKey)
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(fixtures, "aws", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	body := read("s3_object_created_analysis.json")
	r := d.post("/v1/connect/events", h, body)
	if r.status != http.StatusAccepted {
		t.Fatalf("analysis file event: %d %s", r.status, r.body)
	}
	m := d.stored(r)
	if !bytes.Equal(m.Data, body) {
		t.Error("stored body differs")
	}
	const contact = "6c0f4a8e-2b1d-4e4b-9d57-0f6a2a1c9e11"
	expectHeaders := map[string]string{
		"ce-id": "connect.analysis:amazon-connect-acme:" + contact, "ce-type": messages.TypeS3ObjectCreated,
		"ce-source": "arn:aws:s3:::amazon-connect-acme", "ce-time": "2020-02-04T21:14:20Z",
	}
	for k, want := range expectHeaders {
		if got := m.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if want := d.subjects.AnalysisFile("amazon-connect-acme"); m.Subject != want {
		t.Errorf("subject %q, want %q", m.Subject, want)
	}
	if r := d.post("/v1/connect/events", h, read("s3_object_created_redacted.json")); r.status != http.StatusOK || r.header.Get("Ccrelay-Duplicate") != "true" {
		t.Errorf("redacted file event of the same call: %d (duplicate %q), want 200 duplicate", r.status, r.header.Get("Ccrelay-Duplicate"))
	}
	before := d.count()
	for _, name := range []string{"s3_object_created_docs.json", "s3_object_deleted_docs.json", "s3_object_created_recording.json"} {
		if r := d.post("/v1/connect/events", h, read(name)); r.status != http.StatusUnprocessableEntity || r.code(t) != "unsupported_event" {
			t.Errorf("%s: %d %s, want 422 unsupported_event", name, r.status, r.body)
		}
	}
	if after := d.count(); after != before {
		t.Errorf("refused events changed the stream: %d -> %d", before, after)
	}
}
