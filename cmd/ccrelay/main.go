// Command ccrelay takes contact-centre webhooks, keeps them in NATS
// JetStream, and does the slow work in SAP from there.
//
// It only wires: configuration is loaded by package config, everything with
// behaviour lives in ingest, processors and messages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
	"github.com/ccrelay/ccrelay/ingest/server"
	"github.com/ccrelay/ccrelay/messages/broker"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors/service"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

const usage = `ccrelay: durable webhook ingest and SAP processors for Sinch, Contact Pro and Amazon Connect

Usage:
  ccrelay serve     run everything: embedded NATS JetStream (unless CCRELAY_NATS_URL is set), ingest, processors, metrics
  ccrelay ingest    run the ingest server alone against CCRELAY_NATS_URL (for many replicas)
  ccrelay process   run processors alone against CCRELAY_NATS_URL (for many replicas)
  ccrelay dlq       list and requeue dead letters
  ccrelay relay     list, release and drop the conversations the relay to Contact Pro parked
  ccrelay trace     what happened to an event, a contact, a conversation, a message or a call, in time order
  ccrelay replay    store a window of events again so the processors see them again
  ccrelay reconcile find analysed calls without a summary and trigger it (reconcile summaries)
  ccrelay check     validate a deployment: NATS and streams, C4C, CMI, the Connect bucket
  ccrelay version   print the version

Run 'ccrelay <command> --help' for the flags and settings of a command.
`

func run(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "version":
		fs := flag.NewFlagSet("version", flag.ContinueOnError)
		fs.SetOutput(flagOutput(rest, stdout, stderr))
		fs.Usage = func() {
			fmt.Fprintln(fs.Output(), "Usage: ccrelay version\n\nPrints the version and the Go version it was built with.")
			printFlags(fs.Output(), fs)
		}
		if err := fs.Parse(rest); err != nil {
			return exitCode(err)
		}
		fmt.Fprintf(stdout, "ccrelay %s (%s)\n", versionString(), goVersion())
		return 0
	case "serve", "ingest", "process":
		fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
		fs.SetOutput(flagOutput(rest, stdout, stderr))
		names := ""
		if cmd != "ingest" {
			fs.StringVar(&names, "processors", "", "comma-separated `NAMES` of the processors to run; default all: "+strings.Join(service.Names(), ","))
		}
		demo := false
		if cmd == "serve" {
			fs.BoolVar(&demo, "demo", false, "make up a webhook secret, an API key, an OAuth client and a seal key for this run, and print a ready-to-paste request for each source (for trying ccrelay out)")
		}
		fs.Usage = func() { commandHelp(fs, cmd) }
		if err := fs.Parse(rest); err != nil {
			return exitCode(err)
		}
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "ccrelay %s: unexpected argument %q\n", cmd, fs.Arg(0))
			return 2
		}
		procs, err := service.ParseNames(names)
		if err != nil {
			fmt.Fprintf(stderr, "ccrelay %s: --processors: %v\n", cmd, err)
			return 2
		}
		var d config.Demo
		if demo {
			var err error
			if d, err = config.NewDemo(nil); err != nil {
				fmt.Fprintf(stderr, "ccrelay serve: --demo: %v\n", err)
				return 1
			}
			environ = d.Environ(environ)
		}
		cfg, ok := loadConfig(environ, stderr)
		if !ok {
			return 2
		}
		var onReady func(httpAddr, natsURL string) error
		if demo {
			// Before the embedded server writes its password and events
			// into it.
			if err := config.PrivateDir(cfg.Broker.DataDir); err != nil {
				fmt.Fprintf(stderr, "ccrelay serve: --demo: %v\n", err)
				return 1
			}
			onReady = func(httpAddr, natsURL string) error {
				pw, _ := cfg.Broker.ReadEmbeddedPassword()
				envFile, err := d.WriteEnvFile(cfg.Broker.DataDir, localURL(httpAddr), natsURL, broker.EmbeddedUser, pw)
				if err != nil {
					return fmt.Errorf("--demo: %w", err)
				}
				fmt.Fprint(stdout, d.Instructions(localURL(httpAddr), envFile))
				return nil
			}
		}
		if cmd != "serve" && cfg.Broker.Embedded() {
			fmt.Fprintf(stderr, "ccrelay: configuration: CCRELAY_NATS_URL: required by 'ccrelay %s' (use 'ccrelay serve' for an embedded server)\n", cmd)
			return 2
		}
		if cfg.Broker.Embedded() && !hasEnv(environ, "GOGC") {
			// The embedded server's file store keeps the blocks it wrote
			// in the last 10 s cached (8 MiB each): most of serve's heap.
			// Collecting at +50% instead of +100% keeps a quarter of its
			// memory for 3% of its throughput (test/bench.sh); GOGC wins.
			debug.SetGCPercent(50)
		}
		logger := newLogger(stderr, cfg.Process.LogLevel)
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		if cmd == "ingest" {
			procs = nil
		}
		if err := serve(ctx, cmd, cfg, procs, logger, onReady); err != nil {
			logger.Error("ccrelay stopped", "error", err)
			return 1
		}
		return 0
	case "dlq":
		return dlqCommand(rest, environ, stdout, stderr)
	case "relay":
		return relayCommand(rest, environ, stdout, stderr)
	case "trace":
		return traceCommand(rest, environ, stdout, stderr)
	case "replay":
		return replayCommand(rest, environ, stdout, stderr)
	case "reconcile":
		return reconcileCommand(rest, environ, stdout, stderr)
	case "check":
		return checkCommand(rest, environ, stdout, stderr)
	}
	fmt.Fprintf(stderr, "ccrelay: unknown command %q\n\n%s", cmd, usage)
	return 2
}

// newLogger logs JSON lines at level. Durations are written as Go duration
// strings ("1.5s"): slog's JSON handler writes nanoseconds, which no reader
// of a log line should have to divide.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				a.Value = slog.StringValue(a.Value.Duration().String())
			}
			return a
		},
	}))
}

func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

func commandHelp(fs *flag.FlagSet, cmd string) {
	w := fs.Output()
	switch cmd {
	case "serve":
		fmt.Fprintln(w, "Usage: ccrelay serve [--processors a,b] [--demo]\n\nRuns an embedded NATS JetStream server storing under CCRELAY_DATA_DIR (or uses\nCCRELAY_NATS_URL), the ingest HTTP server, the processors and the metrics listener.")
	case "ingest":
		fmt.Fprintln(w, "Usage: ccrelay ingest\n\nRuns the ingest HTTP server and the metrics listener against CCRELAY_NATS_URL.")
	case "process":
		fmt.Fprintln(w, "Usage: ccrelay process [--processors a,b]\n\nRuns processors and the metrics listener against CCRELAY_NATS_URL. Any number\nof replicas may run; each message is handled by one of them at a time.")
	}
	printFlags(w, fs)
	printSettings(w)
}

// serve runs the parts of cmd until ctx ends, then stops them in reverse
// order: ingest HTTP (finishing requests in flight), processors (finishing
// deliveries in flight), metrics, then NATS (draining) and the embedded
// server.
func serve(ctx context.Context, cmd string, cfg *config.Config, procs []string, logger *slog.Logger, onReady func(httpAddr, natsURL string) error) error {
	logger.Info("ccrelay starting", "command", cmd, "version", versionString())
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(),
	)

	b, err := broker.Open(ctx, cfg.Broker, logger)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), cfg.Ingest.HTTP.ShutdownTimeout)
		defer cancel()
		if err := b.Close(cctx); err != nil {
			logger.Error("close nats", "error", err)
		}
		logger.Info("ccrelay stopped")
	}()

	waiter := provision.Waiter{Budget: cfg.Broker.ConnectTimeout, Logger: logger}
	var parts []func(context.Context) error
	httpAddr := ""
	attrs := []any{"embedded_nats", b.Embedded(), "nats_client_url", b.ClientURL()}
	if cmd != "process" {
		srv, err := server.Assemble(ctx, waiter, cfg.Ingest, b, b.Conn.MaxPayload(), reg, logger)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", cfg.Ingest.HTTP.Addr)
		if err != nil {
			return fmt.Errorf("CCRELAY_HTTP_ADDR: %w", err)
		}
		defer ln.Close()
		httpAddr = ln.Addr().String()
		attrs = append(attrs, "http", ln.Addr().String(), "sinch_services", cfg.Ingest.Sinch.WebhookSecrets.Names(), "seal_keys", cfg.Ingest.SealKeys.String())
		parts = append(parts, func(ctx context.Context) error { return srv.Run(ctx, ln) })
	}
	if len(procs) > 0 {
		rt, err := service.New(ctx, cfg.Processors, procs, service.Deps{JS: b.JS, Waiter: waiter, Connect: b.NewConn, Registry: reg, Logger: logger, Outage: b.Outage()})
		if err != nil {
			return err
		}
		parts = append(parts, rt.Run, func(ctx context.Context) error { return stopWhenClosed(ctx, b.Conn.IsClosed) })
		attrs = append(attrs, "processors", rt.Names())
	}
	metricsLn, err := net.Listen("tcp", cfg.Process.MetricsAddr)
	if err != nil {
		return fmt.Errorf("CCRELAY_METRICS_ADDR: %w", err)
	}
	attrs = append(attrs, "metrics", metricsLn.Addr().String())
	logger.Info("ccrelay ready", attrs...)
	if onReady != nil && httpAddr != "" {
		if err := onReady(httpAddr, b.ClientURL()); err != nil {
			return err
		}
	}

	// The metrics listener outlives the others, so the last scrape can
	// still see the shutdown.
	mctx, stopMetrics := context.WithCancel(context.WithoutCancel(ctx))
	metricsDone := make(chan error, 1)
	go func() {
		metricsDone <- server.Serve(mctx, metricsServer(reg, b.Conn.IsClosed), metricsLn, nil, 5*time.Second)
	}()
	if cfg.Process.Pprof {
		pln, err := net.Listen("tcp", cfg.Process.PprofAddr)
		if err != nil {
			stopMetrics()
			<-metricsDone
			return fmt.Errorf("CCRELAY_PPROF_ADDR: %w", err)
		}
		logger.Info("profiler listening", "addr", pln.Addr().String())
		go func() { _ = server.Serve(mctx, pprofServer(), pln, nil, time.Second) }()
	}

	// Parts stop together when ctx ends or one of them fails.
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(parts))
	for _, p := range parts {
		go func() {
			err := p(pctx)
			cancel()
			errs <- err
		}()
	}
	var first error
	for range parts {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	logger.Info("stopped taking work; draining nats")
	stopMetrics()
	if err := <-metricsDone; err != nil && first == nil {
		first = err
	}
	return first
}

// stopWhenClosed fails once closed reports the processors' NATS connection
// closed for good (the server closed it: a revoked or changed password, a
// protocol error). The broker reopens a connection for ingest, but the
// processors' buckets and consumers are bound to this one: the process
// stops so that its supervisor (Kubernetes, compose's restart policy)
// starts it again, rather than pull errors for ever. It returns nil when
// ctx ends.
func stopWhenClosed(ctx context.Context, closed func() bool) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if closed() {
				return errors.New("the processors' nats connection was closed by the server for good; stopping for a restart")
			}
		}
	}
}

// localURL is the base URL a person on this machine uses for a listener
// on addr: a wildcard host becomes 127.0.0.1.
func localURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// metricsServer serves /metrics and, for the probes of a process without
// the ingest listener, /healthz: 200 while the NATS connection is open or
// reconnecting, 503 once it is closed for good (a restart is the remedy).
func metricsServer(reg *prometheus.Registry, natsClosed func() bool) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if natsClosed() {
			http.Error(w, "nats connection closed", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	// Scrapers and probes send small GETs: idle connections go after a
	// minute, so clients left open cannot pile up descriptors.
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: time.Minute}
}

// pprofServer serves Go's profiler; it listens on loopback only
// (CCRELAY_PPROF_ADDR), never on the public metrics listener.
func pprofServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}

func buildInfo() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ccrelay_build_info",
		Help: "Always 1; labels say which build runs.",
	}, []string{"version", "goversion"})
	g.WithLabelValues(versionString(), goVersion()).Set(1)
	return g
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func goVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.GoVersion
	}
	return "unknown"
}

// hasEnv reports whether environ sets name.
func hasEnv(environ []string, name string) bool {
	for _, kv := range environ {
		if k, _, _ := strings.Cut(kv, "="); k == name {
			return true
		}
	}
	return false
}
