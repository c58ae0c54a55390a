package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
	"github.com/ccrelay/ccrelay/messages/broker"
)

// operatorTimeout bounds an operator command's connection attempt: a
// person is waiting for the answer.
const operatorTimeout = 5 * time.Second

// loadConfig loads the configuration, printing the one-line error.
func loadConfig(environ []string, stderr io.Writer) (*config.Config, bool) {
	cfg, err := config.Load(environ, nil)
	if err != nil {
		fmt.Fprintf(stderr, "ccrelay: configuration: %v\n", err)
		return nil, false
	}
	return cfg, true
}

// operatorConn is an operator command's connection to JetStream.
type operatorConn struct {
	Conn  *nats.Conn
	JS    jetstream.JetStream
	close func(context.Context) error
}

// Close closes the connection. Every publish of an operator command waits
// for its acknowledgement, so nothing is in flight to drain.
func (o *operatorConn) Close(ctx context.Context) error { return o.close(ctx) }

// dialOperator connects an operator command (dlq, replay, reconcile,
// check) to CCRELAY_NATS_URL or, when it is unset, to the embedded server
// of a running 'ccrelay serve' with the same configuration, at its
// CCRELAY_NATS_LISTEN address.
func dialOperator(ctx context.Context, cfg *config.Config) (*operatorConn, error) {
	bc := cfg.Broker
	if !bc.Embedded() {
		bc.ConnectTimeout = operatorTimeout
		b, err := broker.Open(ctx, bc, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			return nil, err
		}
		return &operatorConn{Conn: b.Conn, JS: b.JS, close: b.Close}, nil
	}
	target, err := embeddedTarget(bc)
	if err != nil {
		return nil, err
	}
	pw, err := bc.ReadEmbeddedPassword()
	if err != nil {
		return nil, err
	}
	// The password travels as user info, never in the URL, so no error
	// that names the URL can carry it.
	opts := []nats.Option{
		nats.Name("ccrelay operator"),
		nats.UserInfo(broker.EmbeddedUser, pw),
		nats.Timeout(operatorTimeout),
		nats.NoReconnect(),
		nats.SetCustomDialer(ctxDialer{ctx}),
	}
	if target.TLS != nil {
		opts = append(opts, nats.Secure(target.TLS))
	}
	nc, err := nats.Connect(target.URL, opts...)
	if err != nil {
		return nil, target.explain(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &operatorConn{Conn: nc, JS: js, close: func(context.Context) error { nc.Close(); return nil }}, nil
}

// ctxDialer dials within the command's context.
type ctxDialer struct{ ctx context.Context }

func (d ctxDialer) Dial(network, address string) (net.Conn, error) {
	dl := net.Dialer{Timeout: operatorTimeout}
	return dl.DialContext(d.ctx, network, address)
}

// target is where the embedded server of 'ccrelay serve' takes clients.
type target struct {
	// URL holds no credentials.
	URL string
	// TLS is set when the server's client port requires TLS.
	TLS *tls.Config
	// listen is CCRELAY_NATS_LISTEN, for messages.
	listen string
}

// embeddedTarget derives the address of the embedded server from the
// configuration 'ccrelay serve' runs with, never from a fixed port: dialling
// another address would hand the password to whatever listens there. A
// wildcard host (0.0.0.0, [::], empty) is dialled on loopback.
func embeddedTarget(bc broker.Config) (target, error) {
	t := target{listen: bc.Listen}
	if bc.Listen == "none" {
		return t, errors.New("CCRELAY_NATS_LISTEN is none: the embedded server of 'ccrelay serve' listens nowhere, so there is nothing to dial; " +
			"set CCRELAY_NATS_LISTEN (for serve and this command) to a client address such as 127.0.0.1:4222, or CCRELAY_NATS_URL to a NATS server")
	}
	host, port, err := net.SplitHostPort(bc.Listen)
	if err != nil {
		return t, fmt.Errorf("CCRELAY_NATS_LISTEN: want host:port or none: %w", err)
	}
	if n, err := strconv.Atoi(port); err == nil && n == 0 {
		return t, fmt.Errorf("CCRELAY_NATS_LISTEN is %s: the embedded server takes a free port at each start, so there is no address to dial; "+
			"set a fixed port in CCRELAY_NATS_LISTEN (for serve and this command), or CCRELAY_NATS_URL to a NATS server", bc.Listen)
	}
	switch ip := net.ParseIP(host); {
	case host == "" || ip != nil && ip.Equal(net.IPv4zero):
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	addr := net.JoinHostPort(host, port)
	if bc.TLSCert == "" {
		t.URL = "nats://" + addr
		return t, nil
	}
	// tls:// makes the client refuse a server that does not offer TLS, so
	// the password never travels in the clear to something else on the
	// port.
	t.URL = "tls://" + addr
	t.TLS, err = trustConfigured(bc.TLSCert, host)
	return t, err
}

// trustConfigured is a TLS configuration that trusts exactly the
// certificate (chain) the embedded server is configured with: the operator
// command reads the same CCRELAY_NATS_TLS_CERT, so a server holding that
// certificate's key is the one 'ccrelay serve' runs. The name checked is
// host when the certificate names it (the listen address is often a
// wildcard dialled on loopback, which a certificate rarely names), else the
// certificate's own first name.
func trustConfigured(certFile, host string) (*tls.Config, error) {
	b, err := os.ReadFile(certFile) // #nosec G304 -- the configured certificate
	if err != nil {
		return nil, fmt.Errorf("CCRELAY_NATS_TLS_CERT: %w", err)
	}
	pool := x509.NewCertPool()
	var leaf *x509.Certificate
	for block, rest := pem.Decode(b); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CCRELAY_NATS_TLS_CERT: %w", err)
		}
		if leaf == nil {
			leaf = c
		}
		pool.AddCert(c)
	}
	if leaf == nil {
		return nil, fmt.Errorf("CCRELAY_NATS_TLS_CERT: no PEM certificate in %s", certFile)
	}
	name := host
	if leaf.VerifyHostname(host) != nil {
		switch {
		case len(leaf.DNSNames) > 0:
			name = leaf.DNSNames[0]
		case len(leaf.IPAddresses) > 0:
			name = leaf.IPAddresses[0].String()
		default:
			return nil, errors.New("CCRELAY_NATS_TLS_CERT: the certificate names no host or address (no subject alternative name), so no client can verify it; " +
				"issue it with a DNS or IP subject alternative name")
		}
	}
	return &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS12}, nil
}

// explain says what a failed connection to the embedded server means.
func (t target) explain(err error) error {
	var (
		unknown   x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
	)
	where := fmt.Sprintf("%s (CCRELAY_NATS_LISTEN=%s)", t.URL, t.listen)
	switch {
	case errors.As(err, &unknown), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verifyErr):
		return fmt.Errorf("the server at %s does not present the certificate of CCRELAY_NATS_TLS_CERT, so it is not the embedded server and the password was not sent: %w", where, err)
	case errors.Is(err, nats.ErrSecureConnWanted):
		return fmt.Errorf("the server at %s does not offer TLS although CCRELAY_NATS_TLS_CERT is set, so it is not the embedded server and the password was not sent: %w", where, err)
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, nats.ErrNoServers):
		return fmt.Errorf("nothing answers at %s: is 'ccrelay serve' running with this configuration? (%w)", where, err)
	case errors.Is(err, nats.ErrAuthorization):
		return fmt.Errorf("the server at %s refused the password in <data dir>/nats-password: is it the 'ccrelay serve' of this CCRELAY_DATA_DIR? (%w)", where, err)
	}
	return fmt.Errorf("connect to the embedded server at %s: %w", where, err)
}
