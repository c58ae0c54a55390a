// Package broker connects ccrelay to NATS JetStream: to an external server or
// cluster, or to a server embedded in the process, reached through an
// in-process connection (no sockets, no copies through the kernel).
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config says where JetStream is. Its env tags are read with the CCRELAY_
// prefix.
type Config struct {
	// URL of an external NATS server or cluster (comma-separated). Empty
	// starts an embedded server.
	URL string `env:"NATS_URL"`
	// CredsFile is a NATS credentials file for the external server.
	CredsFile string `env:"NATS_CREDS_FILE"`
	// ConnectTimeout bounds how long start-up waits for NATS.
	ConnectTimeout time.Duration `env:"NATS_CONNECT_TIMEOUT" envDefault:"15s"`

	// DataDir is where the embedded server stores JetStream data.
	DataDir string `env:"DATA_DIR" envDefault:"./data"`
	// Listen is the client address of the embedded server, so operators can
	// point the NATS CLI at it; "none" listens nowhere. Port 0 picks a free one.
	Listen string `env:"NATS_LISTEN" envDefault:"127.0.0.1:4222"`
	// Sync is the embedded server's fsync policy: "default" (the server
	// flushes periodically, every 2 minutes), "always" (fsync every write:
	// survives power loss, costs throughput) or a duration such as "1s".
	Sync string `env:"NATS_SYNC" envDefault:"default"`
}

// Embedded reports whether the configuration asks for an embedded server.
func (c Config) Embedded() bool { return c.URL == "" }

// Validate checks the fields. Errors name the environment variable.
func (c Config) Validate() error {
	if c.ConnectTimeout <= 0 {
		return errors.New("CCRELAY_NATS_CONNECT_TIMEOUT: must be positive")
	}
	if !c.Embedded() {
		return nil
	}
	if c.DataDir == "" {
		return errors.New("CCRELAY_DATA_DIR: must not be empty")
	}
	if _, _, err := c.listenAddr(); err != nil {
		return fmt.Errorf("CCRELAY_NATS_LISTEN: %w", err)
	}
	if _, _, err := c.syncPolicy(); err != nil {
		return fmt.Errorf("CCRELAY_NATS_SYNC: %w", err)
	}
	return nil
}

func (c Config) listenAddr() (host string, port int, err error) {
	if c.Listen == "none" {
		return "", 0, nil
	}
	h, p, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return "", 0, fmt.Errorf("want host:port or none: %w", err)
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return h, port, nil
}

func (c Config) syncPolicy() (interval time.Duration, always bool, err error) {
	switch strings.ToLower(c.Sync) {
	case "", "default":
		return 0, false, nil
	case "always":
		return 0, true, nil
	}
	d, err := time.ParseDuration(c.Sync)
	if err != nil || d <= 0 {
		return 0, false, fmt.Errorf("want default, always or a positive duration, got %q", c.Sync)
	}
	return d, false, nil
}

// Broker is a connection to JetStream, and the embedded server when there is
// one.
type Broker struct {
	Conn   *nats.Conn
	JS     jetstream.JetStream
	server *server.Server
	logger *slog.Logger
	url    string
	opts   []nats.Option
}

// Open connects to the configured NATS server, starting the embedded one
// first when no URL is set.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Broker{logger: logger}
	opts := []nats.Option{
		nats.Name("ccrelay"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// A nil error is our own Drain or Close: not worth a warning.
			if err != nil {
				logger.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			logger.Error("nats async error", "error", err)
		}),
	}
	url := cfg.URL
	if cfg.Embedded() {
		ns, err := startEmbedded(cfg, logger)
		if err != nil {
			return nil, err
		}
		b.server = ns
		url = ""
		opts = append(opts, nats.InProcessServer(ns))
	} else if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}

	b.url, b.opts = url, opts
	nc, err := connect(ctx, url, cfg.ConnectTimeout, opts)
	if err != nil {
		b.shutdownServer()
		return nil, err
	}
	b.Conn = nc
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		b.shutdownServer()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b.JS = js
	return b, nil
}

// connect retries until the deadline, so that ccrelay started together with
// its NATS cluster (compose, Kubernetes) does not fail only because it won
// the race.
func connect(ctx context.Context, url string, timeout time.Duration, opts []nats.Option) (*nats.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			return nc, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to nats %s: %w", redact(url), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// redact drops user info from NATS URLs before they reach an error or log.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if s := strings.Index(p, "://"); s >= 0 && s < at {
				parts[i] = p[:s+3] + "[redacted]@" + p[at+1:]
			}
		}
	}
	return strings.Join(parts, ",")
}

func startEmbedded(cfg Config, logger *slog.Logger) (*server.Server, error) {
	host, port, _ := cfg.listenAddr()
	interval, always, _ := cfg.syncPolicy()
	opts := &server.Options{
		ServerName:   "ccrelay-embedded",
		JetStream:    true,
		StoreDir:     cfg.DataDir,
		NoSigs:       true, // ccrelay owns signal handling
		SyncInterval: interval,
		SyncAlways:   always,
	}
	if cfg.Listen == "none" {
		opts.DontListen = true
	} else {
		opts.Host, opts.Port = host, port
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.SetLoggerV2(serverLogger{logger.With("component", "nats-server")}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(cfg.ConnectTimeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after %s (is %s free and %s writable?)", cfg.ConnectTimeout, cfg.Listen, cfg.DataDir)
	}
	if cfg.Listen != "none" {
		logger.Info("embedded nats listening", "url", ns.ClientURL(), "store_dir", cfg.DataDir)
	}
	return ns, nil
}

// Embedded reports whether b runs the embedded server.
func (b *Broker) Embedded() bool { return b.server != nil }

// NewConn opens another connection to the same server (in process for the
// embedded one), for parts that must own their connection.
func (b *Broker) NewConn() (*nats.Conn, error) {
	return connect(context.Background(), b.url, 5*time.Second, b.opts)
}

// ClientURL is the embedded server's client URL, or "" when it listens
// nowhere or there is none.
func (b *Broker) ClientURL() string {
	if b.server == nil || b.server.Addr() == nil {
		return ""
	}
	return b.server.ClientURL()
}

// Close drains the connection, so every publish in flight gets its ack, and
// then stops the embedded server, which flushes JetStream to disk.
func (b *Broker) Close(ctx context.Context) error {
	var errs []error
	if b.Conn != nil && !b.Conn.IsClosed() {
		closed := make(chan struct{})
		b.Conn.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := b.Conn.Drain(); err != nil {
			errs = append(errs, fmt.Errorf("drain: %w", err))
			b.Conn.Close()
		} else {
			select {
			case <-closed:
			case <-ctx.Done():
				b.Conn.Close()
				errs = append(errs, fmt.Errorf("drain: %w", ctx.Err()))
			}
		}
	}
	b.shutdownServer()
	return errors.Join(errs...)
}

func (b *Broker) shutdownServer() {
	if b.server == nil {
		return
	}
	b.server.Shutdown()
	b.server.WaitForShutdown()
}

// serverLogger sends the embedded server's log lines to slog. Its notices
// (a 28-line start-up banner, ASCII art included) go to debug: what an
// operator of ccrelay needs from it is a warning or an error.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(f string, v ...any) { s.l.Debug(fmt.Sprintf(f, v...)) }
func (s serverLogger) Warnf(f string, v ...any)   { s.l.Warn(fmt.Sprintf(f, v...)) }
func (s serverLogger) Fatalf(f string, v ...any)  { s.l.Error(fmt.Sprintf(f, v...), "fatal", true) }
func (s serverLogger) Errorf(f string, v ...any)  { s.l.Error(fmt.Sprintf(f, v...)) }
func (s serverLogger) Debugf(f string, v ...any)  { s.l.Debug(fmt.Sprintf(f, v...)) }
func (s serverLogger) Tracef(f string, v ...any)  { s.l.Debug(fmt.Sprintf(f, v...)) }
