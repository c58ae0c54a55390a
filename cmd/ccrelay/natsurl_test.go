package main

import (
	"strings"
	"testing"
)

// TestNATSURLPasswordNeverShown: a CCRELAY_NATS_URL whose password does
// not parse stops every command with a configuration error naming the
// variable and the URL with its user info redacted; one that parses but
// names nothing that answers fails the same way after the connect timeout.
// Neither prints the password, nor a piece of it.
func TestNATSURLPasswordNeverShown(t *testing.T) {
	for _, c := range []struct {
		args []string
		url  string
		code int
	}{
		{[]string{"process"}, "nats://ccrelay:XYZZY%zzSECRET@127.0.0.1:1", 2},
		{[]string{"ingest"}, "nats://ccrelay:XYZZY SECRET@127.0.0.1:1", 2},
		{[]string{"dlq", "list"}, "nats://ccrelay:XYZZY%zzSECRET@127.0.0.1:1", 2},
		{[]string{"check"}, "nats://ccrelay:XYZZYSECRET@bad host:4222", 2},
		{[]string{"process"}, "nats://ccrelay:XYZZYSECRET@127.0.0.1:1", 1},
		{[]string{"process"}, "ccrelay:XYZZYSECRET@127.0.0.1:1", 1},
	} {
		t.Run(strings.Join(c.args, " ")+" "+c.url, func(t *testing.T) {
			environ := []string{"CCRELAY_NATS_URL=" + c.url, "CCRELAY_NATS_CONNECT_TIMEOUT=300ms", "CCRELAY_DATA_DIR=" + t.TempDir(),
				"CCRELAY_HTTP_ADDR=127.0.0.1:0", "CCRELAY_METRICS_ADDR=127.0.0.1:0"}
			code, out, errOut := runCLI(c.args, environ)
			if code != c.code {
				t.Errorf("exit %d, want %d\n%s%s", code, c.code, out, errOut)
			}
			for _, piece := range []string{"XYZZY", "SECRET", "%zz"} {
				if strings.Contains(out+errOut, piece) {
					t.Errorf("prints %q:\n%s%s", piece, out, errOut)
				}
			}
			if !strings.Contains(errOut, "[redacted]@") {
				t.Errorf("does not name the URL:\n%s", errOut)
			}
		})
	}
}
