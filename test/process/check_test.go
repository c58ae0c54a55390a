package process_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/test/fakes/c4cfake"
	"github.com/ccrelay/ccrelay/test/fakes/cmifake"
	"github.com/ccrelay/ccrelay/test/fakes/cpfake"
	"github.com/ccrelay/ccrelay/test/fakes/s3fake"
	"github.com/ccrelay/ccrelay/test/natstest"
)

func TestCheckCommand(t *testing.T) {
	ns := natstest.Embedded(t)
	sap := c4cfake.New(t, "v1user", "c4c-pass")
	cmi := cmifake.New(t, "cmi-user", "cmi-pass", "cmi-key")
	s3 := s3fake.New(t, bucket)
	cpSvc := cpfake.Service{Type: "sinch", Name: "eu", Secret: "sinch-secret"}
	cp := cpfake.New(t, "ext", "ext-password", cpSvc)
	env := func(over ...string) []string {
		base := map[string]string{
			"PATH": os.Getenv("PATH"), "CCRELAY_NATS_URL": ns.ClientURL(),
			"CCRELAY_C4C_URL": sap.URL, "CCRELAY_C4C_USER": "v1user", "CCRELAY_C4C_PASSWORD": "c4c-pass",
			"CCRELAY_CMI_URL": cmi.CMIURL(), "CCRELAY_CMI_USER": "cmi-user", "CCRELAY_CMI_PASSWORD": "cmi-pass", "CCRELAY_CMI_API_KEY": "cmi-key",
			"CCRELAY_CONNECT_BUCKET": bucket, "CCRELAY_S3_ENDPOINT": s3.URL,
			"AWS_ACCESS_KEY_ID": s3fake.AccessKey, "AWS_SECRET_ACCESS_KEY": s3fake.SecretKey,
			"CCRELAY_SINCH_WEBHOOK_SECRETS": "eu:sinch-secret",
			"CCRELAY_FORWARD_URLS":          "sinch/eu=" + cp.URLOf(cpSvc), "CCRELAY_FORWARD_BASIC_USERS": "sinch/eu=ext:ext-password",
		}
		for _, o := range over {
			k, v, _ := strings.Cut(o, "=")
			base[k] = v
		}
		var out []string
		for k, v := range base {
			out = append(out, k+"="+v)
		}
		return out
	}
	line := func(out, name string) string {
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(l[6:], name) {
				return l
			}
		}
		return ""
	}

	// Before any ccrelay ran: no streams.
	code, out, _ := runCmd(t, env(), "check")
	if l := line(out, "streams"); code != 1 || !strings.HasPrefix(l, "FAIL") || !strings.Contains(l, "does not exist") {
		t.Fatalf("no streams: exit %d (want 1), streams line %q (want FAIL ... does not exist)\n%s", code, l, out)
	}
	_, js := natstest.Connect(t, ns.ClientURL())
	if err := messages.EnsureStreams(context.Background(), provision.Waiter{}, js, messages.StreamConfig{Replicas: 1, MaxAge: 168 * time.Hour, DedupWindow: 10 * time.Minute, MaxBytes: -1, DLQMaxAge: 720 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, env(), "check")
	if code != 0 {
		t.Fatalf("all good: %d\n%s%s", code, out, errOut)
	}
	for _, name := range []string{"nats", "streams", "c4c odata", "c4c phone-service", "cmi", "connect bucket", "contact pro"} {
		if !strings.HasPrefix(line(out, name), "ok") {
			t.Errorf("%s not ok:\n%s", name, out)
		}
	}
	// The check says which source gave the AWS credentials.
	if l := line(out, "connect bucket"); !strings.Contains(l, "credentials from environment (AWS_ACCESS_KEY_ID)") {
		t.Errorf("connect bucket line %q does not name the credentials' source", l)
	}

	for _, c := range []struct {
		env   []string
		check string
		want  string
	}{
		{[]string{"CCRELAY_C4C_PASSWORD=wrong"}, "c4c odata", "CCRELAY_C4C_USER/PASSWORD"},
		{[]string{"CCRELAY_C4C_ATTACHMENT_COLLECTION=NoSuchCollection"}, "c4c odata", "no entity set NoSuchCollection"},
		{[]string{"CCRELAY_C4C_CHAT_FILTER=ContactGUID eq {contact_id}"}, "c4c odata", "no property ContactGUID"},
		{[]string{"CCRELAY_CMI_API_KEY=wrong"}, "cmi", "credentials refused"},
		{[]string{"CCRELAY_CONNECT_BUCKET=no-such-bucket"}, "connect bucket", "NoSuchBucket"},
		{[]string{"CCRELAY_STREAM_REPLICAS=3"}, "streams", "has 1 replicas"},
		{[]string{"CCRELAY_FORWARD_BASIC_USERS=sinch/eu=ext:wrong"}, "contact pro", "refused the external user"},
		{[]string{"CCRELAY_FORWARD_URLS=sinch/eu=http://127.0.0.1:1/sms"}, "contact pro", "connection refused"},
	} {
		code, out, _ := runCmd(t, env(c.env...), "check")
		if l := line(out, c.check); code != 1 || !strings.HasPrefix(l, "FAIL") || !strings.Contains(l, c.want) {
			t.Errorf("%v: exit %d (want 1), %s line %q (want FAIL ... %s)\n%s", c.env, code, c.check, l, c.want, out)
		}
	}
	sap.RemoveFromMetadata("SocialMediaActivityAttachmentFolder.TypeCode")
	if code, out, _ := runCmd(t, env(), "check"); code != 1 || !strings.Contains(line(out, "c4c odata"), "no property TypeCode") {
		t.Errorf("missing property: exit %d (want 1), c4c odata line %q (want no property TypeCode)", code, line(out, "c4c odata"))
	}
	// Not configured is skipped, not failed.
	_, out, _ = runCmd(t, env("CCRELAY_CMI_URL=", "CCRELAY_CONNECT_BUCKET=", "CCRELAY_FORWARD_URLS=", "CCRELAY_FORWARD_BASIC_USERS="), "check")
	for _, name := range []string{"cmi", "connect bucket", "contact pro"} {
		if l := line(out, name); !strings.HasPrefix(l, "skip") {
			t.Errorf("unconfigured %s: %q, want skip\n%s", name, l, out)
		}
	}

	// Eleven checks later, JetStream holds what the test created and
	// nothing else: no ledger, no media object store, no status bucket.
	var streams []string
	names := js.StreamNames(context.Background())
	for n := range names.Name() {
		streams = append(streams, n)
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	if n := len(cp.Received()); n != 0 {
		t.Errorf("the checks delivered %d messages to Contact Pro", n)
	}
	slices.Sort(streams)
	if want := []string{"CCRELAY_DLQ", "CCRELAY_EVENTS"}; !slices.Equal(streams, want) {
		t.Errorf("streams after checks: %v, want only %v (a check created something)", streams, want)
	}
}
