package c4c

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/sinks/egress"
	"github.com/ccrelay/ccrelay/test/expect"
	"github.com/ccrelay/ccrelay/test/fakes/c4cfake"

	"github.com/prometheus/client_golang/prometheus"
)

func TestErrorFromBodies(t *testing.T) {
	for _, c := range []struct {
		body, code, msg string
	}{
		{`{"error":{"code":"SY/530","message":{"lang":"en","value":"Parent not found"}}}`, "SY/530", "Parent not found"},
		{`{"error":{"code":"PRECONDITION_FAILED","message":"the record was changed"}}`, "PRECONDITION_FAILED", "the record was changed"},
		{`<html>gateway timeout</html>`, "", ""},
	} {
		rec := httptest.NewRecorder()
		rec.WriteHeader(400)
		rec.WriteString(c.body)
		e := errorFrom("op", rec.Result())
		expect.All(t,
			expect.Check{Name: c.body + ": code", Got: e.Code, Want: c.code},
			expect.Check{Name: c.body + ": message", Got: e.Message, Want: c.msg},
			expect.Check{Name: c.body + ": status", Got: e.Status, Want: 400},
		)
	}
	for status, transient := range map[int]bool{400: false, 401: false, 403: false, 404: false, 408: true, 409: true, 412: true, 429: true, 500: true, 503: true} {
		if (&Error{Status: status}).Transient() != transient {
			t.Errorf("HTTP %d transient should be %v", status, transient)
		}
	}
	if IsTransient(ErrNoTenant) || !IsTransient(context.DeadlineExceeded) {
		t.Error("IsTransient of non-HTTP errors")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"3": 3 * time.Second, "0": 0, "Sat, 21 Nov 2026 10:00:05 GMT": 5 * time.Second, "Sat, 21 Nov 2026 09:00:00 GMT": 0,
	} {
		if got, ok := retryAfter(v, now); !ok || got != want {
			t.Errorf("%q: %v %v", v, got, ok)
		}
	}
	for _, v := range []string{"", "soon", "-1"} {
		if _, ok := retryAfter(v, now); ok {
			t.Errorf("%q accepted", v)
		}
	}
}

// A 503 with a Retry-After longer than the client waits fails at once
// (transiently); a short one is waited for in place.
func TestRetryAfterHonoured(t *testing.T) {
	var calls atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		switch {
		case strings.Contains(r.URL.RawQuery, "long"):
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(503)
		case n == 1:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(429)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"value":[{"id":"P1","adminData":{"updatedOn":"v1"}}]}`))
		}
	}))
	defer hs.Close()
	c, err := New(Config{URL: hs.URL, User: "u", Password: "p", Timeout: 5 * time.Second, MaxConcurrency: 2, MaxRetryAfter: 10 * time.Second,
		ChatFilter: "x {contact_id}", ChatCollection: "C", AttachmentCollection: "A", ODataService: "/o", PhoneService: "/ps/"}, egress.Guard{AllowPrivate: true}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	call, err := c.FindPhoneCall(context.Background(), c.Config().DefaultTenant(), "c1")
	if err != nil || call.ID != "P1" || calls.Load() != 2 {
		t.Fatalf("after a 429 with Retry-After 0: %+v %v (%d calls)", call, err, calls.Load())
	}
	_, err = c.FindPhoneCall(context.Background(), c.Config().DefaultTenant(), "long")
	var e *Error
	if !errors.As(err, &e) || e.Status != 503 || !e.Transient() {
		t.Fatalf("long Retry-After: %v", err)
	}
}

// TestSessionsPerCredential: an OData session (its cookie and CSRF token)
// belongs to the login that obtained it. A call for the same tenant and
// user with a wrong password never carries another call's session: it
// fetches a token of its own, gets its 401, and the right password's
// session goes on working.
func TestSessionsPerCredential(t *testing.T) {
	sap := c4cfake.New(t, "TECH", "right-password")
	parent := sap.AddChatActivity("chat-1")
	c, err := New(Config{URL: sap.URL, User: "TECH", Password: "right-password", Timeout: 5 * time.Second, MaxConcurrency: 2,
		ChatFilter: "ExternalID eq {contact_id}", ChatCollection: "SocialMediaActivityCollection", AttachmentCollection: "SocialMediaActivityAttachmentFolderCollection",
		ODataService: "/sap/c4c/odata/v1/c4codataapi", PhoneService: "/sap/c4c/api/v1/phone-service/"}, egress.Guard{AllowPrivate: true}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	file := func(name string) Attachment {
		return Attachment{Name: name, MimeType: "text/plain", Size: 2, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("hi")), nil }}
	}
	ctx := context.Background()
	good := c.Config().DefaultTenant()
	if _, err := c.CreateAttachment(ctx, good, parent, file("a.txt")); err != nil {
		t.Fatalf("the right password: %v", err)
	}
	before := len(sap.Requests())
	bad := Tenant{URL: good.URL, User: good.User, Password: "wrong-password"}
	for name, call := range map[string]func() error{
		"upload": func() error { _, err := c.CreateAttachment(ctx, bad, parent, file("b.txt")); return err },
		"query":  func() error { _, err := c.FindChatActivity(ctx, bad, "chat-1"); return err },
	} {
		var e *Error
		if err := call(); !errors.As(err, &e) || e.Status != http.StatusUnauthorized {
			t.Errorf("%s with the wrong password: %v, want its own 401", name, err)
		}
	}
	for _, r := range sap.Requests()[before:] {
		if ck := r.Header.Get("Cookie"); ck != "" {
			t.Errorf("%s %s with the wrong password carried cookies %q", r.Method, r.Path, ck)
		}
		if tok := r.Header.Get("X-Csrf-Token"); tok != "" && !strings.EqualFold(tok, "fetch") {
			t.Errorf("%s %s with the wrong password carried CSRF token %q", r.Method, r.Path, tok)
		}
	}
	if got := len(sap.Attachments(parent)); got != 1 {
		t.Errorf("%d attachments, want the right password's one", got)
	}
	if _, err := c.CreateAttachment(ctx, good, parent, file("c.txt")); err != nil {
		t.Fatalf("the right password after the wrong one: %v", err)
	}
}

// TestEgressRefusalIsPermanent: a tenant whose address egress refuses (a
// loopback address that is neither configured nor allowed) is refused the
// same way on every attempt, so the call fails for good, and nothing
// reaches the address.
func TestEgressRefusalIsPermanent(t *testing.T) {
	sap := c4cfake.New(t, "TECH", "pw")
	sap.AddPhoneCall("c1")
	c, err := New(Config{URL: "https://my1.crm.ondemand.com", User: "TECH", Password: "pw", Timeout: 5 * time.Second, MaxConcurrency: 2,
		ChatFilter: "ExternalID eq {contact_id}", ChatCollection: "C", AttachmentCollection: "A", ODataService: "/o", PhoneService: "/sap/c4c/api/v1/phone-service/"},
		egress.Settings{}.Guard("https://my1.crm.ondemand.com"), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	tenant := Tenant{URL: sap.URL, User: "TECH", Password: "pw"}
	for name, call := range map[string]func() error{
		"phone-service read": func() error { _, err := c.FindPhoneCall(context.Background(), tenant, "c1"); return err },
		"OData query":        func() error { _, err := c.FindChatActivity(context.Background(), tenant, "chat-1"); return err },
	} {
		err := call()
		if !errors.Is(err, egress.ErrRefused) {
			t.Fatalf("%s: %v, want an egress refusal", name, err)
		}
		var e *Error
		if IsTransient(err) || !errors.As(err, &e) || e.Transient() {
			t.Errorf("%s: %v is transient, want permanent", name, err)
		}
	}
	if IsTransient(egress.ErrRefused) {
		t.Error("a bare egress refusal is transient")
	}
	if got := sap.Requests(); len(got) != 0 {
		t.Errorf("the refused address received %d requests", len(got))
	}
}
