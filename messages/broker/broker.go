// Package broker connects ccrelay to NATS JetStream: to an external server or
// cluster, or to a server embedded in the process, reached through an
// in-process connection (no sockets, no copies through the kernel).
package broker

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"
)

// Config says where JetStream is. Its env tags are read with the CCRELAY_
// prefix.
type Config struct {
	// URL of an external NATS server or cluster (comma-separated). Empty
	// starts an embedded server.
	URL string `env:"NATS_URL" help:"external NATS server or cluster (comma-separated, 'nats://user:password@host:4222'); empty starts the embedded server"`
	// CredsFile is a NATS credentials file for the external server.
	CredsFile string `env:"NATS_CREDS_FILE" help:"NATS credentials file for the external server"`
	// ConnectTimeout bounds how long start-up waits for NATS.
	ConnectTimeout time.Duration `env:"NATS_CONNECT_TIMEOUT" envDefault:"15s" help:"how long start-up waits for NATS"`

	// PingInterval is how often the client pings its server. A server that
	// hangs (paused, partitioned) keeps its TCP connection open, so only
	// unanswered pings tell: after two, the client moves to another node.
	// nats.go's default, 2 minutes, left a replica on a paused node for
	// up to 6 minutes.
	PingInterval time.Duration `env:"NATS_PING_INTERVAL" envDefault:"2s" help:"how often the client pings its NATS server; after two unanswered pings it reconnects, to another node of a cluster"`

	// DataDir is where the embedded server stores JetStream data.
	DataDir string `env:"DATA_DIR" envDefault:"./data" help:"embedded server: JetStream storage, and the password of its client port ('nats-password')"`
	// Listen is the client address of the embedded server, so operators can
	// point the NATS CLI at it; "none" listens nowhere. Port 0 picks a free one.
	Listen string `env:"NATS_LISTEN" envDefault:"127.0.0.1:4222" help:"embedded server: client address for the NATS CLI and the operator commands (user 'ccrelay', password in '<data dir>/nats-password'); 'none' for none; anything but loopback needs TLS"`
	// Sync is the embedded server's fsync policy: "default" (the server
	// flushes periodically, every 2 minutes), "always" (fsync every write:
	// survives power loss, costs throughput) or a duration such as "1s".
	Sync string `env:"NATS_SYNC" envDefault:"default" help:"embedded server: fsync policy, 'default' (flush every 2 minutes), 'always' (survives power loss, costs throughput) or a duration"`
	// TLSCert and TLSKey put TLS on the embedded server's client port;
	// required when it listens on anything but loopback.
	TLSCert string `env:"NATS_TLS_CERT" help:"embedded server: TLS certificate (PEM) of the client port; the operator commands trust exactly this certificate"`
	TLSKey  string `env:"NATS_TLS_KEY" help:"embedded server: private key (PEM) of 'CCRELAY_NATS_TLS_CERT'"`
}

// EmbeddedUser is the user of the embedded server's client port. Its
// password is generated into PasswordFile at the first start.
const EmbeddedUser = "ccrelay"

// PasswordFile is the file, in the data directory, holding the password of
// the embedded server's client port (mode 0600).
func (c Config) PasswordFile() string { return filepath.Join(c.DataDir, "nats-password") }

// ReadEmbeddedPassword reads the password of a running embedded server, for
// operator commands; it never creates one.
func (c Config) ReadEmbeddedPassword() (string, error) {
	b, err := os.ReadFile(c.PasswordFile())
	if err != nil {
		return "", fmt.Errorf("the embedded server's password: %w (run the command where 'ccrelay serve' keeps CCRELAY_DATA_DIR, or set CCRELAY_NATS_URL)", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// EmbeddedPassword reads (or, the first time, generates) the password of
// the embedded server's client port: without one, any process on the host,
// or any container of the pod, could read every event and publish work.
//
// The file is its owner's only (0600), also when it was found wider: a
// password others can read opens the port to them.
func (c Config) EmbeddedPassword() (string, error) {
	b, err := os.ReadFile(c.PasswordFile())
	if err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		if err := ownerOnly(c.PasswordFile()); err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", c.PasswordFile(), err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	pw := hex.EncodeToString(raw)
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return "", err
	}
	if err := writeOwnerOnly(c.PasswordFile(), []byte(pw+"\n")); err != nil {
		return "", err
	}
	return pw, nil
}

// ownerOnly narrows path to mode 0600 when others may read or write it.
func ownerOnly(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("%s is readable by others and cannot be narrowed: %w", path, err)
	}
	return nil
}

// writeOwnerOnly writes data to path through a new file created 0600 and
// renamed over path: written in place, a file that existed keeps its mode,
// and a chmod after the write leaves a moment in which others can read it.
func writeOwnerOnly(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// Gone after the rename; only a failed write leaves it to remove.
	defer func() { _ = os.Remove(f.Name()) }()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Embedded reports whether the configuration asks for an embedded server.
func (c Config) Embedded() bool { return c.URL == "" }

// Validate checks the fields. Errors name the environment variable.
func (c Config) Validate() error {
	if c.ConnectTimeout <= 0 {
		return errors.New("CCRELAY_NATS_CONNECT_TIMEOUT: must be positive")
	}
	if c.PingInterval != 0 && c.PingInterval < 100*time.Millisecond {
		return errors.New("CCRELAY_NATS_PING_INTERVAL: must be at least 100ms")
	}
	if !c.Embedded() {
		if err := checkURLs(c.URL); err != nil {
			return fmt.Errorf("CCRELAY_NATS_URL: %w", err)
		}
		return nil
	}
	if c.DataDir == "" {
		return errors.New("CCRELAY_DATA_DIR: must not be empty")
	}
	host, _, err := c.listenAddr()
	if err != nil {
		return fmt.Errorf("CCRELAY_NATS_LISTEN: %w", err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("CCRELAY_NATS_TLS_CERT and CCRELAY_NATS_TLS_KEY: set both or neither")
	}
	if c.Listen != "none" && !loopback(host) && c.TLSCert == "" {
		return fmt.Errorf("CCRELAY_NATS_LISTEN: %s is not a loopback address; set CCRELAY_NATS_TLS_CERT and CCRELAY_NATS_TLS_KEY to listen there (or listen on 127.0.0.1)", c.Listen)
	}
	if _, _, err := c.syncPolicy(); err != nil {
		return fmt.Errorf("CCRELAY_NATS_SYNC: %w", err)
	}
	return nil
}

// loopback reports whether a listen host can only be reached from this
// machine.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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
	// Conn and JS are the connection opened at start. A connection the
	// server closes is reopened: parts that live as long as the process
	// (ingest) use JetStream and Live, which follow the reopened one.
	Conn   *nats.Conn
	JS     jetstream.JetStream
	server *server.Server
	logger *slog.Logger
	url    string
	// opts are every connection's options but the handlers, which
	// options adds for the connection's own Part of the outage.
	opts   []nats.Option
	outage *Outage
	// main is the Part of the connection opened at start and of the ones
	// reopened in its place.
	main *Part

	mu      sync.RWMutex
	cur     *nats.Conn
	curJS   jetstream.JetStream
	closing atomic.Bool
	// reopens counts connections reopened after the server closed one.
	reopens atomic.Int64
}

// Open connects to the configured NATS server, starting the embedded one
// first when no URL is set.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	outage := NewOutage(logger)
	b := &Broker{logger: logger, outage: outage, main: outage.Part("nats connection")}
	opts := []nats.Option{
		nats.Name("ccrelay"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.PingInterval(cmp.Or(cfg.PingInterval, 2*time.Second)),
		nats.MaxPingsOutstanding(2),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			logger.Error("nats async error", "error", err)
		}),
	}
	url := cfg.URL
	if cfg.Embedded() {
		password, err := cfg.EmbeddedPassword()
		if err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
		ns, err := startEmbedded(cfg, password, logger)
		if err != nil {
			return nil, err
		}
		b.server = ns
		url = ""
		opts = append(opts, nats.InProcessServer(ns), nats.UserInfo(EmbeddedUser, password))
	} else if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}

	b.url, b.opts = url, opts
	nc, err := connect(ctx, url, cfg.ConnectTimeout, b.options(b.main))
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
	b.cur, b.curJS = nc, js
	b.watch(nc)
	return b, nil
}

// options are the connection options for a connection reporting to part:
// its disconnects and failed reconnects are failed attempts, a reconnect a
// success. Each is logged at debug; the outage is logged once.
func (b *Broker) options(part *Part) []nats.Option {
	return append(slices.Clip(b.opts),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// A nil error is our own Drain or Close: no outage.
			if err != nil {
				b.logger.Debug("nats disconnected", "error", err)
				part.Failed(err)
			}
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			b.logger.Debug("nats reconnect failed", "error", err)
			part.Failed(err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.logger.Debug("nats reconnected", "server", nc.ConnectedUrlRedacted())
			// Not in the callback: nats.go runs every connection callback
			// on one goroutine, and JetStream may take seconds to answer.
			go b.confirmJetStream(nc, part)
		}),
	)
}

// confirmJetStream reports part's success once JetStream answers on nc: a
// connection is back when it reached a server, but ccrelay is back only
// when that server has JetStream (a node restarting, or a server without
// it on the same address). It stops when nc disconnects or closes; the
// next reconnect starts it again.
func (b *Broker) confirmJetStream(nc *nats.Conn, part *Part) {
	js, err := jetstream.New(nc)
	wait := 250 * time.Millisecond
	for !b.closing.Load() && nc.IsConnected() {
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
			if err == nil {
				part.Succeeded()
				return
			}
		}
		b.logger.Debug("nats reconnected, but jetstream does not answer yet", "server", nc.ConnectedUrlRedacted(), "error", err)
		part.Failed(err)
		time.Sleep(wait)
		wait = min(2*wait, 2*time.Second)
		js, err = jetstream.New(nc)
	}
}

// Outage is the process's NATS outage, for the other parts that wait for
// NATS (the processors' pull loops) to report to.
func (b *Broker) Outage() *Outage { return b.outage }

// watch reopens nc when it closes without Close being called: nats.go
// gives up on a connection the server closed for a protocol violation, and
// in-process connections cannot reconnect at all, and a process whose
// connection is gone answers 503 to everything for good.
func (b *Broker) watch(nc *nats.Conn) {
	nc.SetClosedHandler(func(*nats.Conn) {
		if !b.closing.Load() {
			go b.reopen()
		}
	})
}

func (b *Broker) reopen() {
	b.logger.Error("nats connection closed; reopening it")
	wait := 100 * time.Millisecond
	for attempt := 1; !b.closing.Load(); attempt++ {
		nc, err := nats.Connect(b.url, b.options(b.main)...)
		if err == nil {
			js, jerr := jetstream.New(nc)
			if jerr == nil {
				b.mu.Lock()
				b.cur, b.curJS = nc, js
				b.mu.Unlock()
				b.watch(nc)
				b.reopens.Add(1)
				b.logger.Info("nats connection reopened", "attempt", attempt)
				b.main.Succeeded()
				if b.closing.Load() {
					nc.Close()
				}
				return
			}
			nc.Close()
			err = jerr
		}
		b.logger.Debug("nats connection not reopened yet", "attempt", attempt, "retry_in", wait.String(), "error", err.Error())
		b.main.Failed(err)
		time.Sleep(wait)
		wait = min(2*wait, 5*time.Second)
	}
}

// JetStream is the JetStream context of the current connection.
func (b *Broker) JetStream() jetstream.JetStream {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.curJS
}

// Live fails while the connection is closed and not reopened yet: the
// process cannot store anything then, and a liveness probe should say so.
// A connection that is only reconnecting is live.
func (b *Broker) Live() error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.cur == nil || b.cur.IsClosed() {
		return errors.New("the NATS connection is closed and not reopened yet")
	}
	return nil
}

// Reopens is how often a closed connection was reopened.
func (b *Broker) Reopens() int64 { return b.reopens.Load() }

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
			return nil, fmt.Errorf("connect to nats %s: %w", redact(url), withoutUserInfo(err, url))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// userInfo returns where the user info of one NATS URL (as nats.Connect
// takes it: with or without a scheme) starts and ends; end < 0 when it has
// none. It ends at the last '@', as url.Parse reads an authority, so a
// password with an unescaped '@' is covered whole.
func userInfo(u string) (start, end int) {
	end = strings.LastIndex(u, "@")
	if end < 0 {
		return 0, -1
	}
	if s := strings.Index(u, "://"); s >= 0 && s < end {
		return s + 3, end
	}
	return len(u) - len(strings.TrimLeft(u, " \t")), end
}

// redact drops user info from NATS URLs before they reach an error or log.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if start, end := userInfo(p); end >= 0 {
			parts[i] = p[:start] + "[redacted]@" + p[end+1:]
		}
	}
	return strings.Join(parts, ",")
}

// withoutUserInfo is err, unless its text holds the user info of urls or
// a piece of it (url.Parse's errors quote the URL, and an invalid escape
// in a password): then the text with them redacted, and without err's
// chain, whose errors would still print them.
func withoutUserInfo(err error, urls string) error {
	text := err.Error()
	leaks := false
	for _, p := range strings.Split(urls, ",") {
		start, end := userInfo(p)
		if end < 0 {
			continue
		}
		info := p[start:end]
		_, pass, _ := strings.Cut(info, ":")
		for _, secret := range []string{info, pass} {
			if secret != "" && strings.Contains(text, secret) {
				text, leaks = strings.ReplaceAll(text, secret, "[redacted]"), true
			}
		}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// The reason may quote a piece of the password ("%zz").
		return fmt.Errorf("%s: not a valid URL (user info not shown)", redact(ue.URL))
	}
	if leaks {
		return errors.New(text)
	}
	return err
}

// checkURLs checks NATS URLs as nats.Connect reads them (comma-separated,
// with or without a scheme), so that it never fails on one with an error
// quoting it. Its errors show the URL with its user info redacted, and
// for invalid user info no reason: url.Parse's would quote a piece of it.
func checkURLs(urls string) error {
	n := 0
	for _, p := range strings.Split(urls, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		n++
		full := p
		if !strings.Contains(full, "://") {
			full = "nats://" + full
		}
		start, end := userInfo(full)
		if end < 0 {
			if _, err := url.Parse(full); err != nil {
				return fmt.Errorf("URL %d (%s): %w", n, full, unwrapURLError(err))
			}
			continue
		}
		// The URL with stand-in user info fails for reasons of its own
		// (host, port), which may be told; else the user info is at fault.
		if _, err := url.Parse(full[:start] + "user@" + full[end+1:]); err != nil {
			return fmt.Errorf("URL %d (%s): %w", n, redact(full), unwrapURLError(err))
		}
		if _, err := url.Parse(full); err != nil {
			return fmt.Errorf("URL %d (%s): the user or password is not valid in a URL: percent-encode '%%', '@', ':', '/', '?', '#' and spaces in them", n, redact(full))
		}
	}
	if n == 0 {
		return errors.New("names no server")
	}
	return nil
}

// unwrapURLError is url.Parse's reason without the URL it quotes.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func startEmbedded(cfg Config, password string, logger *slog.Logger) (*server.Server, error) {
	// The server keeps a bcrypt hash, not the password. The password is
	// 192 random bits, so the minimum cost is enough, and it keeps every
	// connection's authentication fast.
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	hashed := string(h)
	host, port, _ := cfg.listenAddr()
	interval, always, _ := cfg.syncPolicy()
	opts := &server.Options{
		ServerName:   "ccrelay-embedded",
		JetStream:    true,
		StoreDir:     cfg.DataDir,
		NoSigs:       true, // ccrelay owns signal handling
		SyncInterval: interval,
		SyncAlways:   always,
		// Every connection, ccrelay's own in-process one included,
		// authenticates: the client port is closed to anyone without the
		// password in the data directory.
		Username: EmbeddedUser,
		Password: hashed,
	}
	if cfg.Listen == "none" {
		opts.DontListen = true
	} else {
		opts.Host, opts.Port = host, port
	}
	if cfg.TLSCert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey})
		if err != nil {
			return nil, fmt.Errorf("CCRELAY_NATS_TLS_CERT: %w", err)
		}
		opts.TLSConfig, opts.TLS = tc, true
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
		logger.Info("embedded nats listening; it requires the password in "+cfg.PasswordFile(), "url", ns.ClientURL(), "store_dir", cfg.DataDir,
			"user", EmbeddedUser, "password_file", cfg.PasswordFile(),
			"nats_cli", fmt.Sprintf(`nats context save ccrelay --server %s --user %s --password "$(cat %s)" --select`, ns.ClientURL(), EmbeddedUser, cfg.PasswordFile()))
	}
	return ns, nil
}

// Embedded reports whether b runs the embedded server.
func (b *Broker) Embedded() bool { return b.server != nil }

// NewConn opens another connection to the same server (in process for the
// embedded one), for parts that must own their connection.
func (b *Broker) NewConn() (*nats.Conn, error) {
	return connect(context.Background(), b.url, 5*time.Second, b.options(b.outage.Part("nats connection")))
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
	b.closing.Store(true)
	b.mu.RLock()
	nc := b.cur
	b.mu.RUnlock()
	if nc != nil && !nc.IsClosed() {
		closed := make(chan struct{})
		nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := nc.Drain(); err != nil {
			errs = append(errs, fmt.Errorf("drain: %w", err))
			nc.Close()
		} else {
			select {
			case <-closed:
			case <-ctx.Done():
				nc.Close()
				errs = append(errs, fmt.Errorf("drain: %w", ctx.Err()))
			}
		}
	}
	if b.Conn != nil && b.Conn != nc {
		b.Conn.Close()
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
