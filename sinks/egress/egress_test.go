package egress_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/sinks/egress"
)

func hosts(t testing.TB, s string) egress.HostList {
	t.Helper()
	var l egress.HostList
	if err := l.UnmarshalText([]byte(s)); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestHostList(t *testing.T) {
	l := hosts(t, "cmi.example.com, *.crm.ondemand.com,*.CRM.cloud.sap")
	for host, want := range map[string]bool{
		"cmi.example.com":            true,
		"CMI.example.com":            true,
		"my1.crm.ondemand.com":       true,
		"a.b.crm.ondemand.com":       true,
		"crm.ondemand.com":           false, // *.domain is below the domain
		"evilcrm.ondemand.com":       false,
		"crm.ondemand.com.evil.test": false,
		"my2.crm.cloud.sap":          true,
		"example.com":                false,
		"":                           false,
	} {
		if got := l.Allows(host); got != want {
			t.Errorf("Allows(%q) = %v, want %v", host, got, want)
		}
	}
	for _, bad := range []string{"a*b.com", "*.", "http://x.com", "user@x.com", "x.com:443", "*.*.com"} {
		var l egress.HostList
		if err := l.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if !hosts(t, "*").Allows("anything.test") || hosts(t, "").Allows("x") {
		t.Error("* allows all, empty allows none")
	}
}

func TestBind(t *testing.T) {
	o, err := egress.NewOrigin("CCRELAY_CMI_URL", "https://cmi.acme.test/acme/cmi", hosts(t, "*.cc.sinch.test"), "CCRELAY_CMI_ALLOWED_HOSTS", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		url        string
		own        bool
		configured bool
		refused    string
	}{
		{"none named: the configured URL, configured credentials", "", false, true, ""},
		{"the configured origin, another path", "https://cmi.acme.test/other", false, true, ""},
		{"an allowed host with the call's own credentials", "https://t1.cc.sinch.test/cmi", true, false, ""},
		{"an allowed host without credentials of its own", "https://t1.cc.sinch.test/cmi", false, false, "brings no credentials"},
		{"a host off the list", "https://attacker.test/cmi", true, false, "not in CCRELAY_CMI_ALLOWED_HOSTS"},
		{"plain http", "http://t1.cc.sinch.test/cmi", true, false, "must be https"},
		{"the configured host on another port", "https://cmi.acme.test:8443/", false, false, "not in"},
		{"the configured host over http", "http://cmi.acme.test/acme/cmi", false, false, "must be https"},
		{"user info", "https://u:p@t1.cc.sinch.test/", true, false, "without user info"},
		{"not a URL", "cmi.acme.test", false, false, "not an absolute URL"},
	} {
		b, err := o.Bind(c.url, c.own)
		switch {
		case c.refused != "":
			if !errors.Is(err, egress.ErrRefused) || !strings.Contains(err.Error(), c.refused) {
				t.Errorf("%s: %v, want a refusal saying %q", c.name, err, c.refused)
			}
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case b.Configured != c.configured:
			t.Errorf("%s: configured = %v", c.name, b.Configured)
		}
	}
	none, _ := egress.NewOrigin("CCRELAY_CMI_URL", "", nil, "CCRELAY_CMI_ALLOWED_HOSTS", false)
	if _, err := none.Bind("", false); !errors.Is(err, egress.ErrRefused) {
		t.Errorf("nothing configured, nothing named: %v", err)
	}
}

func TestPublic(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8": true, "2606:4700:4700::1111": true, "52.94.1.1": true,
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.169.254": false, "fd00:ec2::254": false, "fe80::1": false, "100.100.100.200": false,
		"0.0.0.0": false, "::": false, "224.0.0.1": false, "::ffff:127.0.0.1": false, "::ffff:10.0.0.1": false,
		"64:ff9b::7f00:1": false, "255.255.255.255": false,
	} {
		if got := egress.Public(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Public(%s) = %v, want %v", addr, got, want)
		}
	}
}

// TestGuardDials: a loopback server is refused unless private networks are
// allowed or it is the configured host; the refusal is ErrRefused.
func TestGuardDials(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	for _, c := range []struct {
		name  string
		guard egress.Guard
		ok    bool
	}{
		{"public only", egress.Guard{}, false},
		{"private allowed", egress.Guard{AllowPrivate: true}, true},
		{"configured host", egress.Guard{Trusted: []string{u.Hostname()}}, true},
		{"another configured host", egress.Guard{Trusted: []string{"cmi.acme.test"}}, false},
	} {
		before := hits.Load()
		res, err := c.guard.Client(5 * time.Second).Get(srv.URL)
		if res != nil {
			res.Body.Close()
		}
		if got := err == nil; got != c.ok {
			t.Errorf("%s: err %v", c.name, err)
		}
		if !c.ok && !errors.Is(err, egress.ErrRefused) {
			t.Errorf("%s: refused with %v, not ErrRefused", c.name, err)
		}
		if !c.ok && hits.Load() != before {
			t.Errorf("%s: refused, but the server was reached %d times", c.name, hits.Load()-before)
		}
	}
}

// TestRedirectsStayInTheirOrigin: a redirect to another origin is not
// followed, so neither basic credentials nor a custom API-key header reach
// it; one within the origin is.
func TestRedirectsStayInTheirOrigin(t *testing.T) {
	var leaked atomic.Int32
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { leaked.Add(1) }))
	defer attacker.Close()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, attacker.URL+"/steal", http.StatusFound)
		case "/here":
			http.Redirect(w, r, "/final", http.StatusFound)
		case "/final":
			if r.Header.Get("x-api-key") != "k" {
				w.WriteHeader(http.StatusUnauthorized)
			}
		}
	}))
	defer origin.Close()
	c := egress.Guard{AllowPrivate: true}.Client(5 * time.Second)
	req, _ := http.NewRequest("GET", origin.URL+"/away", nil)
	req.SetBasicAuth("user", "password")
	req.Header.Set("x-api-key", "k")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound || leaked.Load() != 0 {
		t.Errorf("cross-origin redirect: status %d, attacker hit %d times", res.StatusCode, leaked.Load())
	}
	req, _ = http.NewRequest("GET", origin.URL+"/here", nil)
	req.Header.Set("x-api-key", "k")
	res, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("same-origin redirect: status %d", res.StatusCode)
	}
}

func TestCheckMedia(t *testing.T) {
	s := egress.Settings{MediaAllowedHosts: hosts(t, "*")}
	for raw, ok := range map[string]bool{
		"https://media.whatsapp.test/a.jpg": true,
		"http://media.whatsapp.test/a.jpg":  false,
		"file:///etc/passwd":                false,
		"gopher://x/":                       false,
		"https://u:p@media.test/":           false,
		"/relative":                         false,
	} {
		if _, err := s.CheckMedia(raw); (err == nil) != ok {
			t.Errorf("%s: %v", raw, err)
		}
	}
	only := egress.Settings{MediaAllowedHosts: hosts(t, "*.whatsapp.test")}
	if _, err := only.CheckMedia("https://evil.test/x"); !errors.Is(err, egress.ErrRefused) {
		t.Errorf("host off the list: %v", err)
	}
}

// FuzzBind: whatever a caller names, a URL that does not share the
// configured origin is never bound to the configured credentials, and an
// accepted foreign URL is https and on the list.
func FuzzBind(f *testing.F) {
	for _, s := range []string{"https://cmi.acme.test/x", "https://CMI.ACME.TEST:443/", "https://t.cc.sinch.test", "http://cmi.acme.test", "https://cmi.acme.test.evil/", "https://cmi.acme.test@evil/", "//cmi.acme.test/"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	o, _ := egress.NewOrigin("CCRELAY_CMI_URL", "https://cmi.acme.test/acme/cmi", egress.HostList{"*.cc.sinch.test"}, "CCRELAY_CMI_ALLOWED_HOSTS", false)
	f.Fuzz(func(t *testing.T, raw string, own bool) {
		b, err := o.Bind(raw, own)
		if err != nil {
			if !errors.Is(err, egress.ErrRefused) {
				t.Fatalf("refusal without ErrRefused: %v", err)
			}
			return
		}
		if b.Configured != egress.SameOrigin(b.URL, o.Configured) {
			t.Fatalf("%q bound with configured=%v", raw, b.Configured)
		}
		if !b.Configured && (b.URL.Scheme != "https" || !own || !o.Allowed.Allows(b.URL.Hostname())) {
			t.Fatalf("%q accepted as a foreign URL (own credentials %v)", raw, own)
		}
	})
}

func FuzzHostList(f *testing.F) {
	f.Add("a.test,*.b.test", "x.b.test")
	f.Add("*", "")
	f.Fuzz(func(t *testing.T, list, host string) {
		var l egress.HostList
		if l.UnmarshalText([]byte(list)) != nil {
			return
		}
		if l.Allows(host) && !strings.Contains(list, "*") && !strings.Contains(strings.ToLower(list), strings.ToLower(strings.TrimSuffix(host, "."))) {
			t.Fatalf("%q allows %q", list, host)
		}
	})
}
