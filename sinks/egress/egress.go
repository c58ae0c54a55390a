// Package egress decides where ccrelay's outbound requests may go. Its
// rules are the trust boundary of every URL a caller can name (a Contact
// Pro call's cmi_url and sap_v1.url, a Sinch media URL):
//
//   - A configured credential is sent only to the origin of the URL it was
//     configured with. A caller's URL is used only with the caller's own
//     credentials, only over https, and only when its host is on an
//     allow-list (Origin.Bind).
//   - No dial reaches a loopback, private, link-local, CGNAT, multicast or
//     unspecified address, checked on the address actually dialled, so DNS
//     rebinding and redirects cannot get past it, unless private networks
//     are allowed (Guard). Hosts of configured URLs are dialled as
//     configured: an operator may run CMI on a private network.
//   - Redirects are followed only within the origin of the request, so no
//     credential, custom headers included, follows a redirect elsewhere.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrRefused is wrapped by every refusal of this package: an event whose
// request it refuses cannot succeed by retrying and is dead-lettered.
var ErrRefused = errors.New("egress refused")

// HostList is a comma-separated list of host patterns: "cmi.example.com"
// matches that host, "*.crm.ondemand.com" any host below that domain, "*"
// every host. Matching is case-insensitive and ignores the port.
type HostList []string

// UnmarshalText parses the list.
func (l *HostList) UnmarshalText(b []byte) error {
	*l = nil
	for _, p := range strings.Split(string(b), ",") {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == "" {
			continue
		}
		rest := strings.TrimPrefix(p, "*.")
		if p != "*" && (strings.ContainsAny(rest, "*/:@ ") || rest == "") {
			return fmt.Errorf("host pattern %q: want host, *.domain or *", p)
		}
		*l = append(*l, p)
	}
	return nil
}

// Allows reports whether host (without port) matches a pattern.
func (l HostList) Allows(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, p := range l {
		switch {
		case p == "*":
			return true
		case strings.HasPrefix(p, "*."):
			if strings.HasSuffix(host, p[1:]) && len(host) > len(p)-1 {
				return true
			}
		case host == p:
			return true
		}
	}
	return false
}

// SameOrigin reports whether a and b have the same scheme, host and port.
func SameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "http") {
		return "80"
	}
	return "443"
}

// Origin is one configured destination (CCRELAY_CMI_URL, CCRELAY_C4C_URL)
// and the hosts callers may name instead.
type Origin struct {
	// Setting names the URL's variable in refusals.
	Setting string
	// Configured is the configured URL; nil when none is.
	Configured *url.URL
	// Allowed are the hosts a caller's URL may name (its own setting,
	// e.g. CCRELAY_CMI_ALLOWED_HOSTS). The configured host is always
	// allowed.
	Allowed HostList
	// AllowedSetting names Allowed's variable in refusals.
	AllowedSetting string
	// AllowHTTP lets a caller's URL be plain http (private networks and
	// tests only).
	AllowHTTP bool
}

// NewOrigin parses the configured URL (empty: none).
func NewOrigin(setting, configured string, allowed HostList, allowedSetting string, allowHTTP bool) (Origin, error) {
	o := Origin{Setting: setting, Allowed: allowed, AllowedSetting: allowedSetting, AllowHTTP: allowHTTP}
	if configured == "" {
		return o, nil
	}
	u, err := url.Parse(configured)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return o, fmt.Errorf("%s: %q is not an absolute http(s) URL without user info", setting, configured)
	}
	o.Configured = u
	return o, nil
}

// Binding is the outcome of Origin.Bind: the URL to use, and whether the
// configured credentials may go with it.
type Binding struct {
	URL *url.URL
	// Configured is true when URL is at the configured origin: the
	// configured credentials go with it, unless the call brought its own.
	Configured bool
}

// Bind decides which URL one call uses. callURL is what the caller named
// ("" for none); callHasCredentials says whether the call brought its own
// credentials. A caller's URL at another origin than the configured one
// must be https, on the allow-list, and come with the caller's own
// credentials: it never receives the configured ones. Refusals wrap
// ErrRefused and say which setting to change.
func (o Origin) Bind(callURL string, callHasCredentials bool) (Binding, error) {
	if callURL == "" {
		if o.Configured == nil {
			return Binding{}, fmt.Errorf("%w: no URL: neither the call nor %s names one", ErrRefused, o.Setting)
		}
		return Binding{URL: o.Configured, Configured: true}, nil
	}
	u, err := url.Parse(callURL)
	if err != nil || u.Host == "" || u.User != nil {
		return Binding{}, fmt.Errorf("%w: %q is not an absolute URL without user info", ErrRefused, callURL)
	}
	if o.Configured != nil && SameOrigin(u, o.Configured) {
		return Binding{URL: u, Configured: true}, nil
	}
	switch {
	case u.Scheme != "https" && !(u.Scheme == "http" && o.AllowHTTP):
		return Binding{}, fmt.Errorf("%w: a URL named by the caller must be https, not %s (%s)", ErrRefused, u.Scheme, u.Host)
	case !o.Allowed.Allows(u.Hostname()):
		return Binding{}, fmt.Errorf("%w: host %s named by the caller is not in %s", ErrRefused, u.Hostname(), o.AllowedSetting)
	case !callHasCredentials:
		return Binding{}, fmt.Errorf("%w: the call names its own URL (%s) but brings no credentials of its own; configured credentials go only to %s", ErrRefused, u.Hostname(), o.Setting)
	}
	return Binding{URL: u}, nil
}

// Guard refuses dials to addresses that are not public.
type Guard struct {
	// AllowPrivate turns the address check off
	// (CCRELAY_ALLOW_PRIVATE_NETWORKS), for deployments whose systems
	// live on private networks and for tests against loopback fakes.
	AllowPrivate bool
	// Trusted are the hosts of configured URLs: dialled whatever their
	// address, as the operator configured them.
	Trusted []string
}

// Client returns an HTTP client with the guard on its dials, no proxy, and
// redirects followed only within the origin of each request.
func (g Guard) Client(timeout time.Duration) *http.Client {
	return &http.Client{Transport: g.Transport(), Timeout: timeout, CheckRedirect: SameOriginRedirects}
}

// Transport returns a transport with the guard on its dials and no proxy
// (a proxy would be the dialled address, and the check meaningless).
func (g Guard) Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = g.DialContext
	return t
}

// DialContext dials addr, refusing addresses that are not public unless
// the host is trusted or private networks are allowed. The check runs on
// the resolved address the socket connects to (a dialer Control), so a
// name that resolves to a public address first and a private one later
// cannot pass.
func (g Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	host, _, _ := net.SplitHostPort(addr)
	if !g.AllowPrivate && !g.trusted(host) {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			return CheckAddress(address)
		}
	}
	return d.DialContext(ctx, network, addr)
}

func (g Guard) trusted(host string) bool {
	for _, t := range g.Trusted {
		if strings.EqualFold(t, host) {
			return true
		}
	}
	return false
}

// CheckAddress refuses an ip:port that is not a public unicast address.
func CheckAddress(address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot check address %q: %w", ErrRefused, address, err)
	}
	if !Public(ap.Addr()) {
		return fmt.Errorf("%w: %s is not a public address (loopback, private, link-local and metadata addresses are refused; CCRELAY_ALLOW_PRIVATE_NETWORKS=true allows them)", ErrRefused, ap.Addr())
	}
	return nil
}

var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // CGNAT, also used for cloud metadata (Alibaba)
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64: may embed any IPv4 address
	netip.MustParsePrefix("2001:db8::/32"),
}

// Public reports whether a is a public unicast address: not loopback,
// private (RFC 1918, fc00::/7), link-local (169.254.0.0/16 with the cloud
// metadata services, fe80::/10), multicast, unspecified, CGNAT or reserved.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// SameOriginRedirects is an http.Client CheckRedirect that follows at most
// five redirects, each within the origin of the first request. A redirect
// elsewhere is not followed: the 3xx answer is returned as it is, so no
// credential or custom header reaches another host.
func SameOriginRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return fmt.Errorf("%w: more than 5 redirects", ErrRefused)
	}
	if !SameOrigin(req.URL, via[0].URL) {
		return http.ErrUseLastResponse
	}
	return nil
}

// Settings are the egress settings. Their env tags are read with the
// CCRELAY_ prefix.
type Settings struct {
	// AllowPrivate allows dials to loopback, private and link-local
	// addresses, and http for URLs callers name: for systems on private
	// networks, and tests against loopback fakes.
	AllowPrivate bool `env:"ALLOW_PRIVATE_NETWORKS" envDefault:"false" help:"let outbound requests reach loopback, private and link-local addresses (and callers' URLs be http): for systems on private networks and tests with local fakes"`
	// CMIAllowedHosts may be named by a chat-attachments call's cmi_url
	// (with the call's own credentials). The host of CCRELAY_CMI_URL is
	// always allowed.
	CMIAllowedHosts HostList `env:"CMI_ALLOWED_HOSTS" help:"hosts a call's own 'cmi_url' may name ('cmi.example.com,*.example.net'), with the call's own credentials, over https; the host of 'CCRELAY_CMI_URL' always may"`
	// C4CAllowedHosts may be named by a call's sap_v1.url, e.g.
	// "*.crm.ondemand.com,*.crm.cloud.sap". CCRELAY_C4C_URL's host is
	// always allowed.
	C4CAllowedHosts HostList `env:"C4C_ALLOWED_HOSTS" help:"hosts a call's own 'sap_v1.url' may name ('*.crm.ondemand.com,*.crm.cloud.sap'), likewise; the host of 'CCRELAY_C4C_URL' always may"`
	// MediaAllowedHosts may serve Sinch media (no credentials are sent
	// there). Every public host by default.
	MediaAllowedHosts HostList `env:"MEDIA_ALLOWED_HOSTS" envDefault:"*" help:"hosts Sinch media may be downloaded from (https, public addresses; no credentials are sent there)"`
}

// Guard returns the dial guard, trusting the hosts of the configured URLs.
func (s Settings) Guard(configured ...string) Guard {
	g := Guard{AllowPrivate: s.AllowPrivate}
	for _, c := range configured {
		if u, err := url.Parse(c); err == nil && u.Hostname() != "" {
			g.Trusted = append(g.Trusted, u.Hostname())
		}
	}
	return g
}

// CheckMedia checks a media URL a caller named: https (or http where
// private networks are allowed), a host on the allow-list.
func (s Settings) CheckMedia(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.User != nil:
		return nil, fmt.Errorf("%w: media URL is not an absolute URL without user info", ErrRefused)
	case u.Scheme != "https" && !(u.Scheme == "http" && s.AllowPrivate):
		return nil, fmt.Errorf("%w: media URL must be https, not %q", ErrRefused, u.Scheme)
	case !s.MediaAllowedHosts.Allows(u.Hostname()):
		return nil, fmt.Errorf("%w: media host %s is not in CCRELAY_MEDIA_ALLOWED_HOSTS", ErrRefused, u.Hostname())
	}
	return u, nil
}
