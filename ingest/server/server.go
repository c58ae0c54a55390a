// Package server puts the ingest adapters, the OAuth token endpoint and the
// health checks behind one HTTP handler, and runs it with a graceful
// shutdown: stop accepting, finish what is in flight, then return.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/ingest/messaging"
	"github.com/ccrelay/ccrelay/messages"
)

// headerAllowance is what the contract's headers may add to a body.
const headerAllowance = 8 << 10

// tokenBodyBytes is the most the OAuth token endpoint reads of a body (a
// client-credentials form is a few hundred bytes).
const tokenBodyBytes = 16 << 10

// Config sets the ingest HTTP server. Its env tags are read with the
// CCRELAY_ prefix.
type Config struct {
	// Addr is the ingest listener.
	Addr string `env:"HTTP_ADDR" envDefault:":8080" help:"ingest listener"`
	// MaxBodyBytes is the largest request body accepted (413 above). With
	// headers it must fit the NATS server's max_payload (1 MiB by default).
	MaxBodyBytes int64 `env:"MAX_BODY_BYTES" envDefault:"524288" help:"largest body (with headers it must fit the NATS 'max_payload', checked at start)"`
	// PublishTimeout bounds the wait for JetStream's acknowledgement.
	PublishTimeout time.Duration `env:"PUBLISH_TIMEOUT" envDefault:"5s" help:"wait for the JetStream ack before answering 503"`
	// RetryAfter is sent with 503 answers.
	RetryAfter time.Duration `env:"RETRY_AFTER" envDefault:"5s" help:"'Retry-After' of 503 answers"`
	// ReadTimeout bounds reading one request, headers and body.
	ReadTimeout time.Duration `env:"HTTP_READ_TIMEOUT" envDefault:"15s" help:"read timeout of one request, headers and body"`
	// ShutdownDelay keeps serving, while /readyz already says 503, before
	// shutting down, so load balancers stop sending first.
	ShutdownDelay time.Duration `env:"SHUTDOWN_DELAY" envDefault:"0s" help:"keep serving (unready) before closing the listener, for load balancers"`
	// ShutdownTimeout bounds the wait for requests in flight at shutdown.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"25s" help:"wait for requests in flight at shutdown"`
	// MaxInFlight and MaxBufferedBytes bound what requests hold at once,
	// so that no number of senders, stalled or not, takes the process
	// past its memory limit. The defaults fit the shipped 256 MiB pod:
	// 32 MiB of bodies, which 512 requests of up to 64 KiB fill exactly.
	MaxInFlight      int   `env:"MAX_IN_FLIGHT" envDefault:"512" help:"requests handled at once; more are answered 503 with 'Retry-After' before their body is read"`
	MaxBufferedBytes int64 `env:"MAX_BUFFERED_BYTES" envDefault:"33554432" help:"body bytes the requests handled at once may reserve (each its Content-Length, 'CCRELAY_MAX_BODY_BYTES' when unknown); more are answered 503 before their body is read; at least 'CCRELAY_MAX_BODY_BYTES'"`
	// MaxConnections and MaxHeaderBytes bound what connections hold
	// before any request on them is handled: net/http's own limit is 1 MiB
	// of head per connection and no limit of connections.
	MaxConnections int `env:"MAX_CONNECTIONS" envDefault:"1024" help:"ingest connections open at once; more are closed as soon as they are accepted; at least 'CCRELAY_MAX_IN_FLIGHT'"`
	MaxHeaderBytes int `env:"MAX_HEADER_BYTES" envDefault:"32768" help:"largest request head (request line and headers); larger is answered 431"`
	// MaxInFlightPerAddress and MaxConnectionsPerAddress keep one client
	// address from taking every request slot or connection, which would
	// shut out every other sender without a single credential. The
	// defaults are a sixteenth of the process's bounds: a sender needs a
	// handful at a time, and 16 addresses are needed to fill them.
	MaxInFlightPerAddress    int `env:"MAX_IN_FLIGHT_PER_ADDRESS" envDefault:"32" help:"requests of one client address handled at once (the address the slowing down of refused credentials counts: IPv6 per /64, 'X-Forwarded-For' only from 'CCRELAY_AUTH_TRUSTED_PROXIES'); more are answered 503 with 'Retry-After' before their body is read; above 'CCRELAY_MAX_IN_FLIGHT' it is that"`
	MaxConnectionsPerAddress int `env:"MAX_CONNECTIONS_PER_ADDRESS" envDefault:"64" help:"connections open at once from one peer address (IPv6 per /64; peers in 'CCRELAY_AUTH_TRUSTED_PROXIES' are bounded by 'CCRELAY_MAX_CONNECTIONS' alone); more are closed as soon as they are accepted; at least 'CCRELAY_MAX_IN_FLIGHT_PER_ADDRESS'"`
	// BodyReadTimeout bounds the body alone: ReadTimeout counts from the
	// request's first byte, so a request that passed every check of its
	// headers and then stalled held its slot for all of it.
	BodyReadTimeout time.Duration `env:"BODY_READ_TIMEOUT" envDefault:"5s" help:"time a request's body has to arrive once its headers passed every check; a body not in by then is answered 408 and its slot freed (at most 'CCRELAY_HTTP_READ_TIMEOUT')"`
}

// Validate checks the fields against each other and against maxPayload, the
// NATS server's limit (0 skips that check). Errors name the variable.
func (c Config) Validate(maxPayload int64) error {
	switch {
	case c.MaxBodyBytes <= 0:
		return errors.New("CCRELAY_MAX_BODY_BYTES: must be positive")
	case maxPayload > 0 && c.MaxBodyBytes+headerAllowance > maxPayload:
		return fmt.Errorf("CCRELAY_MAX_BODY_BYTES: %d plus headers does not fit the NATS server's max_payload of %d bytes; lower it or raise max_payload", c.MaxBodyBytes, maxPayload)
	case c.PublishTimeout < 100*time.Millisecond || c.PublishTimeout > time.Minute:
		return fmt.Errorf("CCRELAY_PUBLISH_TIMEOUT: %s is not between 100ms and 1m", c.PublishTimeout)
	case c.RetryAfter < time.Second:
		return errors.New("CCRELAY_RETRY_AFTER: must be at least 1s")
	case c.ReadTimeout <= 0:
		return errors.New("CCRELAY_HTTP_READ_TIMEOUT: must be positive")
	case c.ShutdownTimeout <= 0:
		return errors.New("CCRELAY_SHUTDOWN_TIMEOUT: must be positive")
	case c.ShutdownDelay < 0:
		return errors.New("CCRELAY_SHUTDOWN_DELAY: must not be negative")
	case c.MaxInFlight <= 0:
		return errors.New("CCRELAY_MAX_IN_FLIGHT: must be positive")
	case c.MaxBufferedBytes < c.MaxBodyBytes:
		return fmt.Errorf("CCRELAY_MAX_BUFFERED_BYTES: %d is less than CCRELAY_MAX_BODY_BYTES (%d), so the largest body could never be received", c.MaxBufferedBytes, c.MaxBodyBytes)
	case c.MaxConnections < c.MaxInFlight:
		return fmt.Errorf("CCRELAY_MAX_CONNECTIONS: %d is less than CCRELAY_MAX_IN_FLIGHT (%d); each request in flight has a connection", c.MaxConnections, c.MaxInFlight)
	case c.MaxHeaderBytes < 4<<10:
		return errors.New("CCRELAY_MAX_HEADER_BYTES: must be at least 4096")
	case c.MaxInFlightPerAddress <= 0:
		return errors.New("CCRELAY_MAX_IN_FLIGHT_PER_ADDRESS: must be positive")
	case c.MaxConnectionsPerAddress <= 0:
		return errors.New("CCRELAY_MAX_CONNECTIONS_PER_ADDRESS: must be positive")
	case min(c.MaxConnectionsPerAddress, c.MaxConnections) < min(c.MaxInFlightPerAddress, c.MaxInFlight):
		return fmt.Errorf("CCRELAY_MAX_CONNECTIONS_PER_ADDRESS: %d is less than CCRELAY_MAX_IN_FLIGHT_PER_ADDRESS (%d); each request in flight has a connection", c.MaxConnectionsPerAddress, c.MaxInFlightPerAddress)
	case c.BodyReadTimeout <= 0:
		return errors.New("CCRELAY_BODY_READ_TIMEOUT: must be positive")
	}
	return nil
}

// bodyReadTimeout is BodyReadTimeout within ReadTimeout, which bounds the
// whole request anyway.
func (c Config) bodyReadTimeout() time.Duration { return min(c.BodyReadTimeout, c.ReadTimeout) }

// ReadyChecker tells whether JetStream answers, and whether the process
// has a NATS connection at all (its liveness).
type ReadyChecker interface {
	Ready(ctx context.Context) error
	Live() error
}

// Routes are the handlers the server mounts.
type Routes struct {
	Pipeline   *ingest.Pipeline
	Sinch      ingest.Adapter
	ContactPro ingest.Adapter
	Connect    ingest.Adapter
	// Messaging takes the webhooks of Contact Pro's messaging services;
	// nil leaves /v1/messaging/ unmounted.
	Messaging *messaging.Adapter
	// Token is the OAuth token endpoint; nil leaves /oauth/token unmounted.
	Token http.Handler
	Ready ReadyChecker
}

// Server is the ingest HTTP server.
type Server struct {
	cfg      Config
	handler  http.Handler
	ready    ReadyChecker
	stopping atomic.Bool
	logger   *slog.Logger
	pipeline *ingest.Pipeline
	// patterns are the routes registered, for the ingest contract's test:
	// a route no row of it covers fails it.
	patterns []string
}

// New returns the server for routes.
func New(cfg Config, routes Routes, logger *slog.Logger) *Server {
	s := &Server{cfg: cfg, ready: routes.Ready, logger: logger, pipeline: routes.Pipeline}
	mux := http.NewServeMux()
	handle := func(pattern string, h http.Handler) {
		mux.Handle(pattern, h)
		s.patterns = append(s.patterns, pattern)
	}
	p := routes.Pipeline
	// Patterns carry no method so that the pipeline answers a wrong method
	// with a JSON 405 rather than the mux's plain-text one.
	handle("/v1/sinch/{service}", p.Handler(routes.Sinch))
	handle("/v1/contactpro/{integration}", p.Handler(routes.ContactPro))
	handle("/v1/contactpro/{integration}/{event}", p.Handler(routes.ContactPro))
	handle("/v1/contactpro/{integration}/{event}/{rest...}", p.Handler(routes.ContactPro))
	handle("/v1/connect/events", p.Handler(routes.Connect))
	if routes.Messaging != nil {
		handle("/v1/messaging/{type}/{service}", p.Handler(routes.Messaging))
		// The handshake reads no body, but counts as in flight.
		handle("GET /v1/messaging/{type}/{service}", p.Bound(messages.SourceMessaging, 0, http.HandlerFunc(routes.Messaging.Handshake)))
	}
	if routes.Token != nil {
		handle("/oauth/token", p.Bound("oauth", tokenBodyBytes, routes.Token))
	}
	handle("/healthz", http.HandlerFunc(s.healthz))
	handle("/readyz", http.HandlerFunc(s.readyz))
	handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ingest.CloseUnread(w, r)
		ingest.WriteError(w, ingest.Errorf(http.StatusNotFound, ingest.CodeNotFound, "no such endpoint; see the README for the list"))
	}))
	s.handler = mux
	return s
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Patterns returns the routes the server registered, as registered.
func (s *Server) Patterns() []string { return append([]string(nil), s.patterns...) }

type status struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// healthz is liveness: it fails while the NATS connection is closed and not
// reopened, so an orchestrator restarts a process that cannot store, rather
// than leaving it answering 503 for good.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	if err := s.ready.Live(); err != nil {
		ingest.WriteJSON(w, http.StatusServiceUnavailable, status{Status: "unavailable", Error: err.Error()})
		return
	}
	ingest.WriteJSON(w, http.StatusOK, status{Status: "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.stopping.Load() {
		ingest.WriteJSON(w, http.StatusServiceUnavailable, status{Status: "stopping"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.ready.Ready(ctx); err != nil {
		ingest.WriteJSON(w, http.StatusServiceUnavailable, status{Status: "unavailable", Error: "jetstream is not reachable"})
		return
	}
	ingest.WriteJSON(w, http.StatusOK, status{Status: "ready"})
}

// Run serves on ln until ctx ends, then shuts down gracefully: /readyz turns
// 503, after ShutdownDelay the listener closes, and requests in flight get
// up to ShutdownTimeout to finish (each waits for its JetStream ack).
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.ReadTimeout + s.cfg.PublishTimeout + 5*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	return Serve(ctx, srv, s.pipeline.LimitConnections(ln, s.cfg.MaxConnections, s.cfg.MaxConnectionsPerAddress), func() {
		s.stopping.Store(true)
		if s.cfg.ShutdownDelay > 0 {
			s.logger.Info("shutdown: unready, waiting before closing the listener", "delay", s.cfg.ShutdownDelay)
			time.Sleep(s.cfg.ShutdownDelay)
		}
	}, s.cfg.ShutdownTimeout)
}

// Serve runs srv on ln until ctx ends, then calls beforeShutdown (may be nil)
// and shuts srv down, waiting up to timeout for requests in flight.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, beforeShutdown func(), timeout time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	if beforeShutdown != nil {
		beforeShutdown()
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown %s: %w", ln.Addr(), err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
