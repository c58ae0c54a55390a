package auth

import (
	"container/list"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ThrottleConfig sets how repeated credential failures from one address
// are slowed down. Its env tags are read with the CCRELAY_ prefix.
type ThrottleConfig struct {
	// Burst is how many failed checks an address may make at once.
	Burst int `env:"AUTH_FAILURE_BURST" envDefault:"10" help:"failed credential checks (basic, digest, API key, OAuth client secret) one client address may make before it is slowed down: its next ones get 429 with Retry-After, without being checked"`
	// Interval is how often an address earns one more failed check.
	Interval time.Duration `env:"AUTH_FAILURE_INTERVAL" envDefault:"6s" help:"after the burst, one more failed check per client address every this long; a success costs nothing and other addresses are not slowed"`
	// TrustedProxies are the peers whose X-Forwarded-For names the client.
	// None by default: a peer trusted by mistake lets every client that
	// reaches ingest through it, or past it, name itself anyone, and so
	// dodge the slowing down and the per-address bounds or blame a genuine
	// sender; a proxy not trusted only makes its clients share one address.
	TrustedProxies Proxies `env:"AUTH_TRUSTED_PROXIES" envDefault:"none" help:"peers whose 'X-Forwarded-For' names the client address that the slowing down of refused credentials and the per-address bounds count by (CIDRs, 'loopback', 'private' or 'none'): the right-most address of it that is not one of these; behind a load balancer, ingress or local proxy set exactly its addresses, or all senders share its address"`
}

// Validate checks the fields. Errors name the variable.
func (c ThrottleConfig) Validate() error {
	switch {
	case c.Burst < 1:
		return errors.New("CCRELAY_AUTH_FAILURE_BURST: must be at least 1")
	case c.Interval < 100*time.Millisecond:
		return errors.New("CCRELAY_AUTH_FAILURE_INTERVAL: must be at least 100ms")
	}
	return nil
}

// Proxies is a list of address prefixes: CIDRs, single addresses, or the
// words "loopback", "private" (RFC 1918 and RFC 4193) and "none".
type Proxies []netip.Prefix

// UnmarshalText parses "10.0.0.0/8,loopback,192.0.2.7".
func (p *Proxies) UnmarshalText(b []byte) error {
	*p = nil
	for _, part := range strings.Split(string(b), ",") {
		switch part = strings.TrimSpace(part); part {
		case "", "none":
		case "loopback":
			*p = append(*p, netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"))
		case "private":
			for _, s := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"} {
				*p = append(*p, netip.MustParsePrefix(s))
			}
		default:
			pfx, err := netip.ParsePrefix(part)
			if err != nil {
				a, aerr := netip.ParseAddr(part)
				if aerr != nil {
					return fmt.Errorf("%q is neither a CIDR, an address, loopback, private nor none", part)
				}
				pfx = netip.PrefixFrom(a, a.BitLen())
			}
			*p = append(*p, pfx.Masked())
		}
	}
	return nil
}

// Contains reports whether a is one of the proxies.
func (p Proxies) Contains(a netip.Addr) bool {
	for _, pfx := range p {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// ErrThrottled is wrapped by Throttle's refusals: the address used up its
// failed checks for now.
var ErrThrottled = errors.New("too many failed credential checks from this address")

// ThrottledError is a refusal of Throttle.Take, with when to come back.
type ThrottledError struct {
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("%s; retry after %s", ErrThrottled, e.RetryAfter)
}

func (e *ThrottledError) Unwrap() error { return ErrThrottled }

// maxTracked bounds the addresses a Throttle remembers (about 100 bytes
// each). An address forgotten starts again with a full burst, so an
// attacker with more addresses than this gains little it would not gain
// from the addresses themselves.
const maxTracked = 1 << 16

// Throttle is a token bucket of failed credential checks per client
// address: each address may fail Burst times at once and once more every
// Interval. A check takes a token before it runs and gives it back when it
// succeeds, so concurrent guesses cannot overrun the bucket and a success
// costs nothing. Failures of one address never slow down another. It is
// shared by every endpoint of one process; replicas each keep their own
// (each guess still meets a bucket, and sharing one would cost a write per
// failure).
type Throttle struct {
	cfg   ThrottleConfig
	now   func() time.Time
	mu    sync.Mutex
	byKey map[netip.Prefix]*list.Element
	// lru holds *bucket values, the most recently used in front.
	lru       *list.List
	throttled *prometheus.CounterVec
	tracked   prometheus.GaugeFunc
}

type bucket struct {
	key    netip.Prefix
	tokens float64
	at     time.Time
}

// NewThrottle returns a Throttle with cfg, registering its metrics with
// reg (nil: none).
func NewThrottle(cfg ThrottleConfig, reg prometheus.Registerer) (*Throttle, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Throttle{cfg: cfg, now: time.Now, byKey: map[netip.Prefix]*list.Element{}, lru: list.New()}
	t.throttled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ccrelay_auth_throttled_total",
		Help: "Requests refused with 429, without checking their credentials, because their client address failed too many checks, by endpoint.",
	}, []string{"endpoint"})
	t.tracked = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ccrelay_auth_throttle_addresses",
		Help: "Client addresses with failed credential checks remembered by this process.",
	}, func() float64 {
		t.mu.Lock()
		defer t.mu.Unlock()
		return float64(t.lru.Len())
	})
	if reg != nil {
		reg.MustRegister(t.throttled, t.tracked)
	}
	return t, nil
}

// Ticket is one credential check admitted by Take.
type Ticket struct {
	t   *Throttle
	key netip.Prefix
}

// Take admits one credential check of a request to endpoint (a metrics
// label: contactpro, connect, messaging, oauth), or refuses it with a
// *ThrottledError. The check's token counts as a failure unless the
// ticket is refunded. A nil Throttle admits everything.
func (t *Throttle) Take(r *http.Request, endpoint string) (Ticket, error) {
	if t == nil {
		return Ticket{}, nil
	}
	key := t.cfg.TrustedProxies.Client(r)
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.bucket(key, now)
	if b.tokens < 1 {
		wait := time.Duration((1 - b.tokens) * float64(t.cfg.Interval))
		t.throttled.WithLabelValues(endpoint).Inc()
		return Ticket{}, &ThrottledError{RetryAfter: max(wait, time.Second)}
	}
	b.tokens--
	return Ticket{t: t, key: key}, nil
}

// Refund gives the ticket's token back: the check succeeded, or the
// request carried no credential to check.
func (k Ticket) Refund() {
	if k.t == nil {
		return
	}
	t := k.t
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byKey[k.key]
	if !ok {
		return
	}
	b := e.Value.(*bucket)
	b.tokens++
	if b.tokens >= float64(t.cfg.Burst) {
		// A full bucket says nothing: forget the address.
		t.lru.Remove(e)
		delete(t.byKey, k.key)
	}
}

// bucket returns key's bucket refilled to now, creating it full and
// evicting the least recently used one when there are too many.
func (t *Throttle) bucket(key netip.Prefix, now time.Time) *bucket {
	if e, ok := t.byKey[key]; ok {
		b := e.Value.(*bucket)
		if d := now.Sub(b.at); d > 0 {
			b.tokens = min(float64(t.cfg.Burst), b.tokens+float64(d)/float64(t.cfg.Interval))
		}
		b.at = now
		t.lru.MoveToFront(e)
		return b
	}
	b := &bucket{key: key, tokens: float64(t.cfg.Burst), at: now}
	t.byKey[key] = t.lru.PushFront(b)
	for t.lru.Len() > maxTracked {
		old := t.lru.Back()
		t.lru.Remove(old)
		delete(t.byKey, old.Value.(*bucket).key)
	}
	return b
}

// Client is the address a request counts against, in the failure
// throttle and in ingest's per-address bounds: the peer, or, when the peer
// is one of p, the right-most address of X-Forwarded-For that is not one
// (each proxy appends the address it saw, so everything left of that may
// be forged by the client). IPv6 clients count by /64, the least a single
// subscriber is given.
func (p Proxies) Client(r *http.Request) netip.Prefix {
	addr := parseAddr(r.RemoteAddr)
	if addr.IsValid() && p.Contains(addr) {
		hops := r.Header.Values("X-Forwarded-For")
		var list []string
		for _, h := range hops {
			list = append(list, strings.Split(h, ",")...)
		}
		for i := len(list) - 1; i >= 0; i-- {
			a := parseAddr(strings.TrimSpace(list[i]))
			if !a.IsValid() {
				break // a hop that is no address: stop at the last good one
			}
			addr = a
			if !p.Contains(a) {
				break
			}
		}
	}
	return AddressKey(addr)
}

// AddressKey is what a client address counts as: the address itself, or
// its /64 for IPv6 (IPv4-mapped addresses as IPv4). An invalid address is
// the zero Prefix, one key for all of them.
func AddressKey(addr netip.Addr) netip.Prefix {
	if !addr.IsValid() {
		return netip.Prefix{}
	}
	addr = addr.Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p
	}
	return netip.PrefixFrom(addr, 32)
}

// parseAddr reads "host:port" or a bare address.
func parseAddr(s string) netip.Addr {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Addr{}
	}
	return a.WithZone("")
}
