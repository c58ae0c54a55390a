package e2e_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/test/expect"

	"github.com/ccrelay/ccrelay/test/fakes/blob"
	"github.com/ccrelay/ccrelay/test/fakes/c4cfake"
	"github.com/ccrelay/ccrelay/test/fakes/cmifake"
	"github.com/ccrelay/ccrelay/test/fakes/mediafake"
	"github.com/ccrelay/ccrelay/test/natstest"
)

const cmiUser = "transcript.user"

type attachmentsEnv struct {
	d     *deployment
	sap   *c4cfake.Server
	cmi   *cmifake.Server
	media *mediafake.Server
}

func attachmentsDeployment(t *testing.T, natsURL string, extra ...string) *attachmentsEnv {
	e := &attachmentsEnv{
		sap:   c4cfake.New(t, c4cUser, c4cPassword),
		cmi:   cmifake.New(t, cmiUser, cmiPassword, cmiAPIKey),
		media: mediafake.New(t),
	}
	env := append([]string{
		// The defaults are a different user: the call's own sap_v1 and
		// sealed password must win.
		"CCRELAY_C4C_URL=" + e.sap.URL, "CCRELAY_C4C_USER=default-user", "CCRELAY_C4C_PASSWORD=default-password",
		// CMI is the configured one (the call names the same origin), so
		// its answers decide which staged media is the chat's. The fakes
		// live on loopback over http.
		"CCRELAY_CMI_URL=" + e.cmi.CMIURL(), "CCRELAY_ALLOW_PRIVATE_NETWORKS=true",
		"CCRELAY_PROCESS_BACKOFF=50ms", "CCRELAY_PROCESS_ACK_WAIT=2s", "CCRELAY_PROCESS_MAX_DELIVER=20",
	}, extra...)
	e.d = deploy(t, natsURL, 1, env...)
	e.d.startProcessors("attachments")
	return e
}

func mediaInbound(msgID, url, filename string) []byte {
	return fmt.Appendf(nil, `{"app_id":%q,"project_id":"p","event_time":"2026-11-21T10:00:00Z","message":{"id":%q,"direction":"TO_APP",
"contact_message":{"media_message":{"url":%q,"filename_override":%q}},"channel_identity":{"channel":"WHATSAPP","identity":"46732000000","app_id":%q}}}`,
		appID, msgID, url, filename, appID)
}

// chatAttachmentsCall is the call as Contact Pro makes it, credentials in
// headers.
func (e *attachmentsEnv) call(t *testing.T, contactID, event string) response {
	t.Helper()
	body := fmt.Appendf(nil, `{"cmi_url":%q,"cmi_user":%q,"sap_v1":{"url":%q,"user":%q},"contact_id":%q}`,
		e.cmi.CMIURL(), cmiUser, e.sap.URL, c4cUser, contactID)
	h := jsonHeader()
	h.Set("x-api-key", cpAPIKey)
	h.Set("x-cmi-api-key", cmiAPIKey)
	h.Set("x-cmi-password", cmiPassword)
	h.Set("x-sap-v1-password", c4cPassword)
	r := e.d.post("/v1/contactpro/chat-attachments/"+event, h, body)
	if r.status != 202 && r.status != 200 {
		t.Fatalf("call: %d %s", r.status, r.body)
	}
	return r
}

func TestAttachments(t *testing.T) {
	ns := natstest.Embedded(t)
	e := attachmentsDeployment(t, ns.ClientURL())
	d := e.d

	// 1. A customer sends a PDF on WhatsApp: ccrelay stages it at once.
	pdf := []byte("%PDF-1.7 receipt for order 4711")
	url := e.media.Put("/media/receipt.pdf", mediafake.File{Content: pdf, ContentType: "application/pdf"})
	mb := mediaInbound("01MEDIAMSG", url, "receipt.pdf")
	if r := d.post("/v1/sinch/svc1", signed(sinchSecret, mb, timeNow()), mb); r.status != 202 {
		t.Fatalf("inbound: %d %s", r.status, r.body)
	}
	store, err := d.js.ObjectStore(context.Background(), d.subjects.MediaBucket())
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "media staged", func() bool {
		_, err := store.GetInfo(context.Background(), appID+"/01MEDIAMSG")
		return err == nil
	})
	staged, _ := store.GetBytes(context.Background(), appID+"/01MEDIAMSG")
	if !bytes.Equal(staged, pdf) {
		t.Fatal("staged bytes differ")
	}
	// The channel URL then expires; the chat ends later.
	e.media.Put("/media/receipt.pdf", mediafake.File{Status: http.StatusNotFound})

	// 2. The chat has the staged PDF and a photo only CMI holds.
	photo := blob.Bytes(7, 300_000)
	e.cmi.AddChat(cmifake.Chat{ContactID: "guid-1", QueueAddress: appID + "@whatsapp.sinchconversation.com", Messages: []cmifake.Message{
		{ID: "cm-1", ExternalID: "01MEDIAMSG", Attachments: []cmifake.File{{ID: "a-1", Name: "receipt.pdf", MimeType: "application/pdf", Content: pdf}}},
		{ID: "cm-2", ExternalID: "01TEXT"},
		{ID: "cm-3", ExternalID: "01PHOTO", Attachments: []cmifake.File{{ID: "a-2", Name: "photo.jpg", MimeType: "image/jpeg", Content: photo}}},
	}})
	activity := e.sap.AddChatActivity("guid-1")
	e.call(t, "guid-1", "Ended")
	eventually(t, "two attachments in C4C", func() bool { return len(e.sap.Attachments(activity)) == 2 })

	atts := e.sap.Attachments(activity)
	byName := map[string]c4cfake.Attachment{}
	for _, a := range atts {
		byName[a.Name] = a
	}
	a := byName["receipt.pdf"]
	expect.All(t,
		expect.Check{Name: "receipt content intact", Got: bytes.Equal(a.Content, pdf), Want: true},
		expect.Check{Name: "receipt mime type", Got: a.MimeType, Want: "application/pdf"},
		expect.Check{Name: "receipt category", Got: a.CategoryCode, Want: "2"},
		expect.Check{Name: "receipt type", Got: a.TypeCode, Want: "10001"},
	)
	if a := byName["photo.jpg"]; !bytes.Equal(a.Content, photo) || a.MimeType != "image/jpeg" {
		t.Errorf("photo: %d bytes, %s", len(a.Content), a.MimeType)
	}

	// What SAP received, request by request.
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(c4cUser+":"+c4cPassword))
	var posts []c4cfake.Request
	var sawFetch, sawFind bool
	for _, r := range e.sap.Requests() {
		if r.Header.Get("Authorization") != wantAuth {
			t.Errorf("%s %s not authenticated as the call's sap_v1 user", r.Method, r.Path)
		}
		switch {
		case r.Method == "GET" && r.Header.Get("X-Csrf-Token") == "Fetch":
			sawFetch = true
		case r.Method == "GET" && strings.HasSuffix(r.Path, "/SocialMediaActivityCollection"):
			sawFind = strings.Contains(r.Query, "%24filter=ExternalID+eq+%27guid-1%27")
		case r.Method == "POST":
			posts = append(posts, r)
		}
	}
	if !sawFetch || !sawFind || len(posts) != 2 {
		t.Fatalf("csrf fetch %v, activity look-up %v, %d uploads", sawFetch, sawFind, len(posts))
	}
	for _, p := range posts {
		if p.Path != "/sap/c4c/odata/v1/c4codataapi/SocialMediaActivityAttachmentFolderCollection" || p.Header.Get("X-Csrf-Token") == "" || p.Header.Get("Content-Type") != "application/json" {
			t.Errorf("upload %s %v", p.Path, p.Header)
		}
		var body map[string]string
		if err := json.Unmarshal(p.Body, &body); err != nil {
			t.Fatalf("upload body: %v", err)
		}
		want := map[string]string{"ParentObjectID": activity, "CategoryCode": "2", "TypeCode": "10001"}
		switch body["Name"] {
		case "receipt.pdf":
			want["MimeType"], want["Binary"] = "application/pdf", base64.StdEncoding.EncodeToString(pdf)
		case "photo.jpg":
			want["MimeType"], want["Binary"] = "image/jpeg", base64.StdEncoding.EncodeToString(photo)
		}
		for k, v := range want {
			if body[k] != v {
				t.Errorf("upload %s: %s = %.40q, want %.40q", body["Name"], k, body[k], v)
			}
		}
	}
	// CMI was asked as the call's user with the sealed credentials, and
	// only for the photo's bytes: the PDF came from the object store.
	var attachmentGets []string
	for _, r := range e.cmi.Requests() {
		if u, p, _ := basicOf(r.Header); u != cmiUser || p != cmiPassword || r.Header.Get("x-api-key") != cmiAPIKey {
			t.Errorf("CMI %s: wrong credentials", r.Path)
		}
		if strings.Contains(r.Path, "/attachments/") {
			attachmentGets = append(attachmentGets, r.Path)
		}
	}
	if len(attachmentGets) != 1 || attachmentGets[0] != cmifake.BasePath+"/chatMessages/cm-3/attachments/a-2" {
		t.Errorf("CMI attachment downloads %v", attachmentGets)
	}

	// 3. Contact Pro calls again with Closed: the files are there already.
	e.call(t, "guid-1", "Closed")
	eventually(t, "closed handled", func() bool { return d.processed("attachments", "done") >= 3 })
	if n := len(e.sap.Attachments(activity)); n != 2 {
		t.Errorf("%d attachments after a second call", n)
	}

	// 4. Replaying the stored call with the NATS CLI: skipped by the ledger.
	before := len(e.sap.Requests())
	// The stored body, byte for byte, as `nats stream get | nats pub` does.
	republishBody(t, d, d.subjects.ContactPro("chat-attachments", "ended"), fmt.Appendf(nil, `{"cmi_url":%q,"cmi_user":%q,"sap_v1":{"url":%q,"user":%q},"contact_id":%q}`,
		e.cmi.CMIURL(), cmiUser, e.sap.URL, c4cUser, "guid-1"))
	eventually(t, "replay skipped", func() bool { return d.processed("attachments", "skipped_duplicate") >= 1 })
	if after := len(e.sap.Requests()); after != before {
		t.Errorf("a replay reached SAP: %d requests", after-before)
	}

	// 5. Other events, direct chats and text messages are acknowledged and
	// counted, nothing else; the ones it can tell from the event alone do
	// not even touch the ledger.
	ledgerWrites := func() uint64 {
		st, err := d.js.Stream(context.Background(), "KV_"+d.subjects.LedgerBucket())
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	writesBefore := ledgerWrites()
	e.call(t, "guid-1", "Queued")
	e.cmi.AddChat(cmifake.Chat{ContactID: "guid-direct", Direct: true})
	e.call(t, "guid-direct", "Ended")
	tb := inboundText("01TEXTONLY", timeNow())
	d.post("/v1/sinch/svc1", signed(sinchSecret, tb, timeNow()), tb)
	eventually(t, "ignored counted", func() bool { return d.processed("attachments", "ignored") == 3 })
	// The direct chat is only known to be direct after asking CMI: it
	// claims and releases (two writes); the Queued event and the text
	// message write nothing.
	if w := ledgerWrites() - writesBefore; w != 2 {
		t.Errorf("ignored events wrote %d times to the ledger, want 2 (the direct chat's claim and release)", w)
	}

	// 6. Media whose URL expired before ccrelay got it: dead-lettered.
	gone := e.media.Put("/media/gone.jpg", mediafake.File{Status: http.StatusNotFound})
	gb := mediaInbound("01GONE", gone, "gone.jpg")
	d.post("/v1/sinch/svc1", signed(sinchSecret, gb, timeNow()), gb)
	eventually(t, "expired media dead-lettered", func() bool { return d.processed("attachments", "dead_lettered") == 1 })
	if dls := listDLQ(t, d); len(dls) != 1 || !strings.Contains(dls[0].Error, "HTTP 404") {
		t.Errorf("dead letters %+v", dls)
	}
}

// TestAttachmentsSAPFailures: an expired CSRF session is renewed once, and
// SAP answering 503 for a while only delays the upload.
func TestAttachmentsSAPFailures(t *testing.T) {
	ns := natstest.Embedded(t)
	e := attachmentsDeployment(t, ns.ClientURL())
	doc := []byte("contract text")
	e.cmi.AddChat(cmifake.Chat{ContactID: "guid-2", QueueAddress: "other@sms.example", Messages: []cmifake.Message{
		{ID: "m", Attachments: []cmifake.File{{ID: "x", Name: "contract.txt", MimeType: "text/plain", Content: doc}}},
	}})
	activity := e.sap.AddChatActivity("guid-2")
	// Warm a session, then expire it: the POST meets 403 Required.
	e.cmi.AddChat(cmifake.Chat{ContactID: "guid-warm", Messages: []cmifake.Message{{ID: "w", Attachments: []cmifake.File{{ID: "y", Name: "w.txt", MimeType: "text/plain", Content: []byte("w")}}}}})
	warm := e.sap.AddChatActivity("guid-warm")
	e.call(t, "guid-warm", "Ended")
	eventually(t, "warm-up upload", func() bool { return len(e.sap.Attachments(warm)) == 1 })
	e.sap.ExpireSessions()
	e.sap.Inject(c4cfake.Fault{Path: "/sap/c4c/odata", Status: http.StatusServiceUnavailable, Times: 3})
	e.call(t, "guid-2", "Ended")
	eventually(t, "uploaded after 503s and a new CSRF token", func() bool { return len(e.sap.Attachments(activity)) == 1 })
	fetches := 0
	for _, r := range e.sap.Requests() {
		if r.Header.Get("X-Csrf-Token") == "Fetch" {
			fetches++
		}
	}
	if fetches < 2 {
		t.Errorf("the expired CSRF token was not fetched again (%d fetches)", fetches)
	}
	if a := e.sap.Attachments(activity)[0]; !bytes.Equal(a.Content, doc) {
		t.Error("content differs")
	}
	if e.d.processed("attachments", "retried") == 0 {
		t.Error("503s were not retried")
	}
}

func basicOf(h http.Header) (string, string, bool) {
	r := &http.Request{Header: h}
	return r.BasicAuth()
}
