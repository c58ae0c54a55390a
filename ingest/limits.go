package ingest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ccrelay/ccrelay/ingest/auth"
)

// smallBody is the largest body that counts as small: every webhook the
// providers send is, and its buffer may go back to the pool.
const smallBody = 64 << 10

// Refusal reasons of ccrelay_ingest_shed_requests_total: one per bound.
const (
	shedInFlight              = "in_flight"
	shedPerAddress            = "per_address"
	shedBytes                 = "buffered_bytes"
	shedConnections           = "connections"
	shedConnectionsPerAddress = "connections_per_address"
)

// gate admits requests within the process's bounds, without waiting: a
// request beyond either bound is refused at once, so senders that stall
// cannot make requests queue, and memory stays within what the bounds
// allow however many of them there are.
type gate struct {
	maxInFlight int64
	// maxPerAddress bounds the requests of one client address, so that
	// one address cannot take every slot and shut out all other senders.
	maxPerAddress int64
	maxBytes      int64
	// largeBytes is what requests with a body over smallBody may hold
	// together. The rest of maxBytes is kept for small bodies, so stalled
	// uploads declaring large bodies cannot shut out ordinary webhooks.
	largeBytes int64
	// maxBytesPerAddress is one client address's share of maxBytes, in
	// proportion to its share of the requests (at least one body): without
	// it a few addresses announcing large bodies and stalling would hold
	// every byte, however few requests each may have.
	maxBytesPerAddress int64
	metrics            *Metrics

	mu       sync.Mutex
	inFlight int64
	// byAddress counts the requests in flight of each client address
	// with any; an address leaves it at zero, so it never holds more
	// entries than there are requests in flight.
	byAddress map[netip.Prefix]int64
	bytes     int64
	// bytesByAddress counts the bytes reserved by each client address with
	// any, and like byAddress holds no address at zero.
	bytesByAddress map[netip.Prefix]int64
}

func newGate(maxInFlight, maxPerAddress int, maxBytes, maxBody int64, m *Metrics) *gate {
	// A bound below its least workable value is raised to it: one request
	// with one body. A Pipeline is never unbounded.
	maxInFlight = max(maxInFlight, 1)
	if maxPerAddress <= 0 || maxPerAddress > maxInFlight {
		maxPerAddress = maxInFlight
	}
	maxBytes = max(maxBytes, maxBody)
	return &gate{
		maxInFlight:   int64(maxInFlight),
		maxPerAddress: int64(maxPerAddress),
		maxBytes:      maxBytes,
		largeBytes:    max(maxBytes-maxBytes/4, maxBody),
		// Rounded up: a share is never less than its proportion.
		maxBytesPerAddress: max((maxBytes*int64(maxPerAddress)+int64(maxInFlight)-1)/int64(maxInFlight), maxBody),
		metrics:            m,
		byAddress:          map[netip.Prefix]int64{},
		bytesByAddress:     map[netip.Prefix]int64{},
	}
}

// enter takes an in-flight slot for a request of client; it returns the
// shed reason when none is free for it, "" when it took one.
func (g *gate) enter(client netip.Prefix) string {
	g.mu.Lock()
	reason := ""
	switch {
	case g.inFlight >= g.maxInFlight:
		reason = shedInFlight
	case g.byAddress[client] >= g.maxPerAddress:
		reason = shedPerAddress
	default:
		g.inFlight++
		g.byAddress[client]++
	}
	g.mu.Unlock()
	if reason == "" {
		g.metrics.InFlight.Inc()
	}
	return reason
}

func (g *gate) leave(client netip.Prefix) {
	g.mu.Lock()
	g.inFlight--
	if n := g.byAddress[client] - 1; n > 0 {
		g.byAddress[client] = n
	} else {
		delete(g.byAddress, client)
	}
	g.mu.Unlock()
	g.metrics.InFlight.Dec()
}

// reserve takes n bytes of the buffered-bytes bound for client; it
// returns the shed reason when they do not fit, "" when it took them.
func (g *gate) reserve(client netip.Prefix, n int64) string {
	if n == 0 {
		return ""
	}
	limit := g.maxBytes
	if n > smallBody {
		limit = g.largeBytes
	}
	g.mu.Lock()
	reason := ""
	switch {
	case g.bytes+n > limit:
		reason = shedBytes
	case g.bytesByAddress[client]+n > g.maxBytesPerAddress:
		reason = shedPerAddress
	default:
		g.bytes += n
		g.bytesByAddress[client] += n
	}
	g.mu.Unlock()
	if reason == "" {
		g.metrics.BufferedBytes.Add(float64(n))
	}
	return reason
}

func (g *gate) release(client netip.Prefix, n int64) {
	if n == 0 {
		return
	}
	g.mu.Lock()
	g.bytes -= n
	if left := g.bytesByAddress[client] - n; left > 0 {
		g.bytesByAddress[client] = left
	} else {
		delete(g.bytesByAddress, client)
	}
	g.mu.Unlock()
	g.metrics.BufferedBytes.Sub(float64(n))
}

// reservation is what a request's body may take: its Content-Length, or
// limit when the length is not known (chunked).
func reservation(r *http.Request, limit int64) int64 {
	if r.ContentLength >= 0 {
		return r.ContentLength
	}
	return limit
}

// shed is the 503 of a request refused at a bound, before its body is read.
func (p *Pipeline) shed(reason string) *Error {
	p.metrics.Shed.WithLabelValues(reason).Inc()
	msg := "too many requests are being handled; retry later"
	switch reason {
	case shedBytes:
		msg = "too many request bodies are being received; retry later"
	case shedPerAddress:
		msg = "too many requests from this address are being handled; retry later"
	}
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeOverloaded, Message: msg, RetryAfter: p.cfg.RetryAfter}
}

// bodyTimeout is the 408 of a request whose body did not arrive within
// BodyReadTimeout.
func (p *Pipeline) bodyTimeout(err error) *Error {
	return &Error{Status: http.StatusRequestTimeout, Code: CodeRequestTimeout,
		Message: fmt.Sprintf("the body did not arrive within %s of the request's headers", p.cfg.BodyReadTimeout), Err: err}
}

// IsTimeout reports whether err is a read that hit its deadline: the body
// deadline set by a Pipeline (Bound, Handler), or net/http's.
func IsTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// startBody gives the body of the request w answers BodyReadTimeout from
// now to arrive, and returns what to call once it has: net/http's
// ReadTimeout bounds the head and the body together, so a sender that
// stalls after its headers would hold its slot for all of it. Once the
// body is in, the deadline is lifted, as nothing else of the request is
// read: left, it would end the background read net/http runs after the
// body, and that cancels the request's context.
func (p *Pipeline) startBody(w http.ResponseWriter) (done func()) {
	if p.cfg.BodyReadTimeout <= 0 {
		return func() {}
	}
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(p.cfg.BodyReadTimeout)); err != nil {
		// Test recorders hold no connection to set it on.
		return func() {}
	}
	return func() { _ = rc.SetReadDeadline(time.Time{}) }
}

// unreadLinger is how long a connection answered without its body being
// read is still read from (by net/http, up to 256 KiB, discarded) before
// it is closed: as net/http itself lingers before closing a connection it
// stopped reading, so that a sender already sending gets the answer rather
// than a reset.
const unreadLinger = 500 * time.Millisecond

// CloseUnread makes the answer to a request whose body was not read the
// last on its connection, and closes that connection at most unreadLinger
// after the answer. Otherwise net/http reads up to 256 KiB of the unread
// body, before answering or after, and a sender that stalls holds its
// connection until the read timeout.
func CloseUnread(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength == 0 {
		return
	}
	w.Header().Set("Connection", "close")
	// Not supported by test recorders, which hold no connection.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(unreadLinger))
}

// Bound returns h behind the pipeline's bounds, for handlers that do not
// go through Handler (the OAuth token endpoint, Messenger's handshake).
// Each request takes an in-flight slot and reserves the body h may read,
// which is cut at maxBody; a request beyond either bound, or declaring a
// larger body, is answered without its body being read. source names h in
// the log.
//
// Its body has BodyReadTimeout to arrive once h starts: h answers a read
// that failed with a deadline (IsTimeout) with 408.
func (p *Pipeline) Bound(source string, maxBody int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := reservation(r, maxBody)
		client := p.cfg.TrustedProxies.Client(r)
		var e *Error
		if reason := p.gate.enter(client); reason != "" {
			e = p.shed(reason)
		} else {
			switch {
			case n > maxBody || (maxBody == 0 && r.ContentLength != 0):
				p.gate.leave(client)
				e = tooLarge(maxBody)
			default:
				if reason := p.gate.reserve(client, n); reason != "" {
					p.gate.leave(client)
					e = p.shed(reason)
				}
			}
		}
		if e != nil {
			CloseUnread(w, r)
			WriteError(w, e)
			p.logger.LogAttrs(r.Context(), slog.LevelInfo, "ingest request",
				slog.String("source", source), slog.String("outcome", e.Code), slog.String("reason", e.Message),
				slog.String("remote", r.RemoteAddr))
			return
		}
		defer func() {
			p.gate.release(client, n)
			p.gate.leave(client)
		}()
		if r.ContentLength != 0 {
			// Not lifted when h is done: what h left unread of the
			// body, net/http reads (up to 256 KiB) after it, and a
			// sender stalling there is held by this deadline.
			p.startBody(w)
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h.ServeHTTP(w, r)
	})
}

var errTooLarge = errors.New("the body is larger than the limit")

// readBody reads the body of r into a buffer of what it reserved: exactly
// its Content-Length when known, else grown up to limit+1 bytes (the byte
// over the limit tells a body that is too large). A small buffer comes
// from the pool (pooled), and goes back with putBody once the body is no
// longer used; a large one is nil there.
func (p *Pipeline) readBody(r *http.Request, limit int64) (body []byte, pooled *[]byte, err error) {
	n := r.ContentLength
	if n > smallBody {
		// Allocated at its size and left to the collector: a large buffer
		// never stays pinned in the pool after the request.
		body = make([]byte, n)
		_, err = io.ReadFull(r.Body, body)
		return body, nil, err
	}
	pooled = p.bufs.Get().(*[]byte)
	if n >= 0 {
		if int64(cap(*pooled)) < n {
			*pooled = make([]byte, 0, roundUp(n))
		}
		body = (*pooled)[:n]
		_, err = io.ReadFull(r.Body, body)
		return body, pooled, err
	}
	body, err = readAtMost(r.Body, (*pooled)[:0], limit)
	return body, pooled, err
}

// putBody returns the buffer of readBody to the pool, keeping the one body
// grew into when that is small.
func (p *Pipeline) putBody(pooled *[]byte, body []byte) {
	if pooled == nil {
		return
	}
	if cap(body) <= smallBody {
		*pooled = body[:0]
	}
	p.bufs.Put(pooled)
}

// readAtMost reads rd to its end into b, growing b by doubling but never
// beyond limit+1 bytes, so a body of unknown length costs at most what it
// reserved.
func readAtMost(rd io.Reader, b []byte, limit int64) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), min(max(2*cap(b), 4<<10), int(limit)+1))
			copy(nb, b)
			b = nb
		}
		n, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		switch {
		case int64(len(b)) > limit:
			return b, errTooLarge
		case errors.Is(err, io.EOF):
			return b, nil
		case err != nil:
			return b, err
		}
	}
}

// roundUp is n rounded up to a power of two of at least 4 KiB, so pooled
// buffers settle at a few sizes.
func roundUp(n int64) int64 {
	c := int64(4 << 10)
	for c < n {
		c <<= 1
	}
	return c
}

// LimitConnections returns ln closing the connections beyond max open at
// once, or beyond perAddress open at once from one peer address (IPv6 per
// /64), as soon as they are accepted. A connection costs buffers and a
// goroutine from its first byte, and its request head up to the header
// limit, before any request on it is seen, let alone authenticated; the
// bounds of requests cannot count it. The sender sees the connection
// closed, and retries. Trusted proxies (PipelineConfig.TrustedProxies),
// whose connections carry many clients, are bounded by max alone.
func (p *Pipeline) LimitConnections(ln net.Listener, max, perAddress int) net.Listener {
	if perAddress <= 0 || perAddress > max {
		perAddress = max
	}
	return &connLimit{Listener: ln, max: int64(max), perAddress: perAddress, trusted: p.cfg.TrustedProxies,
		metrics: p.metrics, byAddress: map[netip.Prefix]int{}}
}

type connLimit struct {
	net.Listener
	max        int64
	perAddress int
	trusted    auth.Proxies
	open       atomic.Int64
	metrics    *Metrics

	mu sync.Mutex
	// byAddress counts the open connections of each peer address with
	// any (trusted proxies aside); an address leaves it at zero, so it
	// holds at most max entries.
	byAddress map[netip.Prefix]int
}

func (l *connLimit) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.metrics.Shed.WithLabelValues(shedConnections).Inc()
			_ = c.Close()
			continue
		}
		key, counted := l.peer(c)
		if counted && !l.take(key) {
			l.open.Add(-1)
			l.metrics.Shed.WithLabelValues(shedConnectionsPerAddress).Inc()
			_ = c.Close()
			continue
		}
		l.metrics.Connections.Inc()
		return &limitedConn{Conn: c, l: l, key: key, counted: counted}, nil
	}
}

// peer is the key c counts against per address, and whether it counts:
// a trusted proxy's does not, nor one whose address is not an IP's.
func (l *connLimit) peer(c net.Conn) (netip.Prefix, bool) {
	ta, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}, false
	}
	a := ta.AddrPort().Addr().Unmap()
	if l.trusted.Contains(a) {
		return netip.Prefix{}, false
	}
	return auth.AddressKey(a), true
}

func (l *connLimit) take(key netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byAddress[key] >= l.perAddress {
		return false
	}
	l.byAddress[key]++
	return true
}

func (l *connLimit) give(key netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.byAddress[key] - 1; n > 0 {
		l.byAddress[key] = n
	} else {
		delete(l.byAddress, key)
	}
}

// limitedConn gives its place back when closed, once.
type limitedConn struct {
	net.Conn
	l       *connLimit
	key     netip.Prefix
	counted bool
	closed  sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.closed.Do(func() {
		if c.counted {
			c.l.give(c.key)
		}
		c.l.open.Add(-1)
		c.l.metrics.Connections.Dec()
	})
	return err
}

// CloseWrite lets net/http half-close before it closes a connection whose
// request it did not read to the end, as it does with a bare TCP
// connection, so the sender reads the answer rather than a reset.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
