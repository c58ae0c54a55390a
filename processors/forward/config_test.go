package forward_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/messages/secret"
	"github.com/ccrelay/ccrelay/processors/forward"
)

func config(t *testing.T, urls, users string) forward.Config {
	t.Helper()
	c := forward.Config{Partitions: 16, Timeout: time.Second, Backoff: []time.Duration{time.Second}}
	if err := c.URLs.UnmarshalText([]byte(urls)); err != nil {
		t.Fatalf("URLs %q: %v", urls, err)
	}
	if err := c.BasicUsers.UnmarshalText([]byte(users)); err != nil {
		t.Fatal(err)
	}
	c.SinchSecrets = secret.Credentials{"eu": "s"}
	c.MessagingSecrets = secret.Credentials{"twilio/us": "t"}
	return c
}

func TestConfig(t *testing.T) {
	good := config(t, "sinch/eu=https://cp.example/sms/sinch,twilio/us=https://cp.example/sms/twilio,wavy/br=http://10.0.0.5/sms", "sinch/eu=ext:pw:with:colons")
	if err := good.Validate(); err != nil {
		t.Fatalf("valid configuration refused: %v", err)
	}
	for _, bad := range []string{
		"sinch/eu=https://user:SECRETVALUE@cp.example/", // credentials in the URL
		"sinch/eu=ftp://cp.example/",
		"sinch/eu=/relative",
		"telegram/x=https://cp.example/",
		"twilio/us east=https://cp.example/",
		"sinch/eu=https://a,sinch/eu=https://b",
		"https://cp.example/",
	} {
		var d forward.Destinations
		err := d.UnmarshalText([]byte(bad))
		if err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "SECRETVALUE") {
			t.Errorf("%q: error quotes a secret: %v", bad, err)
		}
	}
	for name, c := range map[string]forward.Config{
		"user without a URL":         config(t, "sinch/eu=https://cp.example/", "twilio/us=u:p"),
		"user without a password":    config(t, "sinch/eu=https://cp.example/", "sinch/eu=justuser"),
		"sinch service not ingested": config(t, "sinch/other=https://cp.example/", ""),
		"twilio without a token":     config(t, "twilio/other=https://cp.example/", ""),
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, p := range []int{0, 3, 512} {
		c := good
		c.Partitions = p
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "CCRELAY_FORWARD_PARTITIONS") {
			t.Errorf("partitions %d: %v", p, err)
		}
	}
}
