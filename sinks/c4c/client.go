// Package c4c is the one place ccrelay talks HTTP to SAP Service Cloud
// (C4C): the OData v2 API (CSRF tokens, $filter look-ups, attachment upload)
// and the phone-service REST API. Every call is authenticated with basic
// auth, bounded by a timeout, limited per tenant, retried after Retry-After
// on 429 and 503, counted, and fails with an *Error that says whether a
// retry can help.
package c4c

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages/secret"
	"github.com/ccrelay/ccrelay/sinks/egress"
	"github.com/ccrelay/ccrelay/sinks/retry"
)

// Config sets the client. Its env tags are read with the CCRELAY_ prefix.
// URL, User and Password are the defaults; a Contact Pro call that names
// its tenant (sap_v1) and carries a password wins for that call.
type Config struct {
	URL      string        `env:"C4C_URL" help:"default SAP tenant ('https://my123456.crm.ondemand.com'); a Contact Pro call's 'sap_v1' wins"`
	User     string        `env:"C4C_USER" help:"user of the default tenant"`
	Password secret.Secret `env:"C4C_PASSWORD" help:"secret: password of 'CCRELAY_C4C_USER'"`
	// Timeout bounds one HTTP exchange (uploads of large files included).
	Timeout time.Duration `env:"C4C_TIMEOUT" envDefault:"60s" help:"one HTTP exchange with SAP (uploads of large files included)"`
	// MaxConcurrency bounds the requests in flight per tenant and process.
	MaxConcurrency int `env:"C4C_MAX_CONCURRENCY" envDefault:"16" help:"requests in flight per tenant and process"`
	// MaxRetryAfter is the longest Retry-After honoured by waiting; a
	// longer one fails the call (transiently), so the message is retried
	// later rather than holding a worker.
	MaxRetryAfter time.Duration `env:"C4C_MAX_RETRY_AFTER" envDefault:"30s" help:"longest 'Retry-After' (429/503) waited for in place; longer ones retry the message later"`

	// ODataService is the OData v2 service path.
	ODataService string `env:"C4C_ODATA_SERVICE" envDefault:"/sap/c4c/odata/v1/c4codataapi" help:"SAP resource: the OData v2 service"`
	// ChatCollection holds the activities of Contact Pro chats.
	ChatCollection string `env:"C4C_CHAT_COLLECTION" envDefault:"SocialMediaActivityCollection" help:"SAP resource: the collection holding the activities of Contact Pro chats"`
	// ChatFilter finds a chat's activity; {contact_id} is replaced by the
	// Contact Pro contact id, quoted for OData.
	ChatFilter string `env:"C4C_CHAT_FILTER" envDefault:"ExternalID eq {contact_id}" help:"SAP resource: finds a chat's activity; '{contact_id}' is replaced by the Contact Pro contact id"`
	// AttachmentCollection receives the chat's attachments.
	AttachmentCollection string `env:"C4C_ATTACHMENT_COLLECTION" envDefault:"SocialMediaActivityAttachmentFolderCollection" help:"SAP resource: the collection receiving a chat's attachments"`
	// PhoneService is the phone-service REST API path.
	PhoneService string `env:"C4C_PHONE_SERVICE_PATH" envDefault:"/sap/c4c/api/v1/phone-service/" help:"SAP resource: the phone-service REST API the call summaries are written to"`
}

// Validate checks the fields. Errors name the environment variable.
func (c Config) Validate() error {
	if c.URL != "" {
		if err := checkBase(c.URL); err != nil {
			return fmt.Errorf("CCRELAY_C4C_URL: %w", err)
		}
	}
	switch {
	case c.Timeout <= 0:
		return errors.New("CCRELAY_C4C_TIMEOUT: must be positive")
	case c.MaxConcurrency < 1:
		return errors.New("CCRELAY_C4C_MAX_CONCURRENCY: must be at least 1")
	case !strings.Contains(c.ChatFilter, "{contact_id}"):
		return errors.New("CCRELAY_C4C_CHAT_FILTER: must contain {contact_id}")
	case c.ChatCollection == "" || c.AttachmentCollection == "" || c.ODataService == "" || c.PhoneService == "":
		return errors.New("CCRELAY_C4C_*: collection and service paths must not be empty")
	}
	return nil
}

func checkBase(u string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
		return errors.New("must be an absolute http(s) URL")
	}
	return nil
}

// Tenant is one C4C tenant and the technical user to call it with.
type Tenant struct {
	URL      string
	User     string
	Password secret.Secret
}

// DefaultTenant is the configured tenant with its technical user.
func (c Config) DefaultTenant() Tenant {
	return Tenant{URL: strings.TrimRight(c.URL, "/"), User: c.User, Password: c.Password}
}

// TenantFor is the tenant of one call that may name its own tenant URL
// (sap_v1.url), user and password. Credentials travel as a unit with
// their origin: the configured user and password go only to the
// configured URL's origin, and a URL the call names at another origin is
// used only with the call's own user and password, over https, when
// origin's allow-list holds its host (egress.Origin.Bind). Refusals wrap
// egress.ErrRefused.
func (c Config) TenantFor(origin egress.Origin, callURL, callUser string, callPassword secret.Secret) (Tenant, error) {
	own := callPassword != ""
	b, err := origin.Bind(callURL, own)
	if err != nil {
		return Tenant{}, err
	}
	base := strings.TrimRight(b.URL.String(), "/")
	if !own {
		return Tenant{URL: base, User: c.User, Password: c.Password}, nil
	}
	if callUser == "" {
		return Tenant{}, fmt.Errorf("%w: the call brings a C4C password but no sap_v1.user", egress.ErrRefused)
	}
	return Tenant{URL: base, User: callUser, Password: callPassword}, nil
}

// ErrNoTenant is returned for a call with no tenant URL or user configured
// anywhere. It is permanent: configuration is missing.
var ErrNoTenant = errors.New("no C4C tenant configured (CCRELAY_C4C_URL/USER/PASSWORD or the call's sap_v1)")

// Error is a failed C4C call.
type Error struct {
	Op     string
	Status int // 0 for network errors
	// Code and Message come from an OData or JSON error body, if any.
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("c4c " + e.Op)
	if e.Status != 0 {
		b.WriteString(": HTTP " + strconv.Itoa(e.Status))
	}
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Transient reports whether retrying later can succeed: what retry says of
// every HTTP answer, and C4C's own 409 and 412 (the record changed under
// the request: read it again and retry). A request egress refused (a
// private address, too many redirects) has no answer, yet is refused the
// same way every time.
func (e *Error) Transient() bool {
	if errors.Is(e.Err, egress.ErrRefused) {
		return false
	}
	return retry.TransientStatus(e.Status) || e.Status == 409 || e.Status == 412
}

// IsTransient reports whether err is worth retrying: true for transient
// *Error values and for anything that is not an *Error (contexts, I/O),
// unless it is missing configuration or an egress refusal.
func IsTransient(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Transient()
	}
	return !errors.Is(err, ErrNoTenant) && !errors.Is(err, egress.ErrRefused)
}

// Client calls C4C tenants.
type Client struct {
	cfg     Config
	http    *http.Client
	metrics *metrics

	mu sync.Mutex
	// limits bound the requests in flight per tenant URL, whoever logs in.
	limits map[string]chan struct{}
	// sessions are per credential: a session cookie and its CSRF token
	// stand for the login that obtained them, and a request carrying them
	// may be served as that login whatever its own password. Keyed by
	// credential, a call with a wrong password never rides another call's
	// session: it gets its own 401.
	sessions map[sessionKey]*tenantState
	// passwordKey keys the passwords' digests in sessionKey, so that no
	// password, nor a digest that could be tried against guesses, sits in
	// a map key a dump or a debugger prints.
	passwordKey []byte
}

// sessionKey names one credential: tenant URL, user and a keyed digest of
// the password.
type sessionKey struct {
	url, user string
	password  [sha256.Size]byte
}

// tenantState is per credential: its tenant's concurrency limit (shared
// with the tenant's other credentials), and the cookie jar and CSRF token
// of the credential's OData session (bound to the session cookies).
type tenantState struct {
	key   sessionKey
	sem   chan struct{}
	jar   http.CookieJar
	mu    sync.Mutex
	token string
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New returns a Client whose dials go through guard. transport may be nil
// (a pooled transport with guard's dial check).
func New(cfg Config, guard egress.Guard, transport http.RoundTripper, reg prometheus.Registerer) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if transport == nil {
		t := guard.Transport()
		t.MaxIdleConnsPerHost = cfg.MaxConcurrency
		transport = t
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_sink_requests_total",
			Help: "Requests to sinks, by sink, operation and status class (2xx, 4xx, 5xx, error).",
		}, []string{"sink", "operation", "status_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ccrelay_sink_request_duration_seconds",
			Help:    "Sink request latency, by sink and operation.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"sink", "operation"}),
	}
	reg.MustRegister(m.requests, m.duration)
	// A redirect to another origin would take the tenant's credentials
	// with it: such a redirect is an answer, not a new destination.
	hc := &http.Client{Transport: transport, Timeout: cfg.Timeout, CheckRedirect: egress.SameOriginRedirects}
	passwordKey := make([]byte, 32)
	if _, err := rand.Read(passwordKey); err != nil {
		return nil, fmt.Errorf("c4c: session key: %w", err)
	}
	return &Client{cfg: cfg, http: hc, metrics: m, limits: map[string]chan struct{}{},
		sessions: map[sessionKey]*tenantState{}, passwordKey: passwordKey}, nil
}

// Config returns the client's configuration.
func (c *Client) Config() Config { return c.cfg }

// state is the session of t's credential, new if it has none.
func (c *Client) state(t Tenant) *tenantState {
	mac := hmac.New(sha256.New, c.passwordKey)
	mac.Write([]byte(t.Password.Reveal()))
	key := sessionKey{url: t.URL, user: t.User}
	mac.Sum(key.password[:0])
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sessions[key]
	if !ok {
		sem, ok := c.limits[t.URL]
		if !ok {
			sem = make(chan struct{}, c.cfg.MaxConcurrency)
			c.limits[t.URL] = sem
		}
		jar, _ := cookiejar.New(nil)
		s = &tenantState{key: key, sem: sem, jar: jar}
		c.sessions[key] = s
	}
	return s
}

// forget drops st's session after the tenant refused its credential: it
// holds nothing worth keeping, and a credential refused for good (a
// mistyped password sealed into calls) would otherwise keep one each.
func (c *Client) forget(st *tenantState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessions[st.key] == st {
		delete(c.sessions, st.key)
	}
}

// request is one call to make.
type request struct {
	op     string
	method string
	url    string
	header http.Header
	body   func() (io.ReadCloser, error) // nil: no body; called again on retry
	length int64                         // -1: unknown
}

// do runs req against tenant t: concurrency limit, basic auth, cookies,
// Retry-After on 429/503, metrics. The caller closes the response body.
func (c *Client) do(ctx context.Context, t Tenant, st *tenantState, req request) (*http.Response, error) {
	if t.URL == "" || t.User == "" {
		return nil, ErrNoTenant
	}
	select {
	case st.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, &Error{Op: req.op, Err: ctx.Err()}
	}
	defer func() { <-st.sem }()

	waited := time.Duration(0)
	for {
		res, err := c.once(ctx, t, st, req)
		if err != nil {
			return nil, err
		}
		if res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusServiceUnavailable {
			wait, ok := retryAfter(res.Header.Get("Retry-After"), time.Now())
			if ok && waited+wait <= c.cfg.MaxRetryAfter {
				drain(res)
				waited += wait
				select {
				case <-time.After(wait):
					continue
				case <-ctx.Done():
					return nil, &Error{Op: req.op, Status: res.StatusCode, Err: ctx.Err()}
				}
			}
		}
		return res, nil
	}
}

func (c *Client) once(ctx context.Context, t Tenant, st *tenantState, req request) (*http.Response, error) {
	var body io.ReadCloser
	if req.body != nil {
		b, err := req.body()
		if err != nil {
			return nil, fmt.Errorf("c4c %s: open body: %w", req.op, err)
		}
		body = b
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, req.url, body)
	if err != nil {
		if body != nil {
			_ = body.Close()
		}
		return nil, &Error{Op: req.op, Err: err}
	}
	if req.length >= 0 && body != nil {
		hr.ContentLength = req.length
	}
	for k, v := range req.header {
		hr.Header[k] = v
	}
	hr.SetBasicAuth(t.User, t.Password.Reveal())
	for _, ck := range st.jar.Cookies(hr.URL) {
		hr.AddCookie(ck)
	}
	start := time.Now()
	res, err := c.http.Do(hr)
	c.metrics.duration.WithLabelValues("c4c", req.op).Observe(time.Since(start).Seconds())
	if err != nil {
		c.metrics.requests.WithLabelValues("c4c", req.op, "error").Inc()
		return nil, &Error{Op: req.op, Err: scrub(err)}
	}
	c.metrics.requests.WithLabelValues("c4c", req.op, strconv.Itoa(res.StatusCode/100)+"xx").Inc()
	if res.StatusCode == http.StatusUnauthorized {
		c.forget(st)
		return res, nil
	}
	if cks := res.Cookies(); len(cks) > 0 {
		st.jar.SetCookies(hr.URL, cks)
	}
	return res, nil
}

// scrub drops the URL (which may carry a tenant's query with ids) from
// transport errors, keeping the cause.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// retryAfter parses Retry-After: seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d, true
		}
		return 0, true
	}
	return 0, false
}

func drain(res *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	_ = res.Body.Close()
}
