package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/broker"
	"github.com/ccrelay/ccrelay/messages/provision"
)

// freeAddr is a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// startEmbedded runs the embedded server 'ccrelay serve' runs for environ,
// with its streams, until the test ends, and returns serve's connection.
func startEmbedded(t *testing.T, environ []string) *broker.Broker {
	t.Helper()
	cfg, err := config.Load(environ, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	b, err := broker.Open(ctx, cfg.Broker, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	if err := messages.EnsureStreams(ctx, provision.Waiter{Budget: 10 * time.Second}, b.JS, cfg.Ingest.Streams); err != nil {
		t.Fatal(err)
	}
	return b
}

func runCLI(args, environ []string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, environ, &out, &errb)
	return code, out.String(), errb.String()
}

func password(t *testing.T, dataDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "nats-password"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// An embedded deployment on a port of its own: the operator commands find
// it with the same environment as 'ccrelay serve', and nothing dials the
// default port with the password.
func TestOperatorDialsTheConfiguredListenAddress(t *testing.T) {
	dataDir := t.TempDir()
	environ := []string{"CCRELAY_DATA_DIR=" + dataDir, "CCRELAY_NATS_LISTEN=" + freeAddr(t)}
	startEmbedded(t, environ)

	// Whatever listens on the default port must not hear from us. When
	// something else holds it, the successful command below still shows
	// that the configured port was dialled: no other server has this
	// data directory's password.
	var (
		mu     sync.Mutex
		dialed bool
	)
	if ln, err := net.Listen("tcp", "127.0.0.1:4222"); err == nil {
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				dialed = true
				mu.Unlock()
				_ = c.Close()
			}
		}()
	}

	code, out, errOut := runCLI([]string{"dlq", "list"}, environ)
	if code != 0 || !strings.Contains(out, "0 dead letters") {
		t.Fatalf("dlq list: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI([]string{"check"}, environ)
	if !strings.Contains(out, "ok    nats") {
		t.Errorf("check: exit %d\n%s%s", code, out, errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	if dialed {
		t.Error("an operator command dialled 127.0.0.1:4222 although CCRELAY_NATS_LISTEN says otherwise")
	}
}

func TestOperatorTargetFollowsTheListenAddress(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.0.1:4333": "nats://127.0.0.1:4333",
		"0.0.0.0:4333":   "nats://127.0.0.1:4333",
		":4333":          "nats://127.0.0.1:4333",
		"[::]:4333":      "nats://[::1]:4333",
		"[::1]:4333":     "nats://[::1]:4333",
		"localhost:4333": "nats://localhost:4333",
		"10.0.0.5:4333":  "nats://10.0.0.5:4333",
	} {
		got, err := embeddedTarget(broker.Config{Listen: listen})
		if err != nil || got.URL != want || got.TLS != nil {
			t.Errorf("%s: %q %v, want %s", listen, got.URL, err, want)
		}
	}
	if _, err := embeddedTarget(broker.Config{Listen: "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "no address to dial") {
		t.Errorf("port 0: %v", err)
	}
}

// CCRELAY_NATS_LISTEN=none: nothing to dial, said at once, with what to set.
func TestOperatorListenNone(t *testing.T) {
	environ := []string{"CCRELAY_DATA_DIR=" + t.TempDir(), "CCRELAY_NATS_LISTEN=none"}
	for _, args := range [][]string{{"dlq", "list"}, {"replay", "--subject", "ccrelay.in.>", "--since", "1h"}, {"reconcile", "summaries", "--since", "1h"}, {"check"}} {
		code, out, errOut := runCLI(args, environ)
		msg := out + errOut
		if code != 1 || !strings.Contains(msg, "nothing to dial") || !strings.Contains(msg, "set CCRELAY_NATS_LISTEN") || !strings.Contains(msg, "CCRELAY_NATS_URL") {
			t.Errorf("%v: exit %d\n%s", args, code, msg)
		}
		// Said before any dial: no connection error (which would come
		// after the connect timeout) stands in the message.
		for _, dialed := range []string{"no servers available", "timeout", "connection refused", "nothing answers"} {
			if strings.Contains(msg, dialed) {
				t.Errorf("%v: dialled before saying there is nothing to dial: %s", args, msg)
			}
		}
	}
}

// Failures name the address and never the password.
func TestOperatorErrorsKeepThePassword(t *testing.T) {
	dataDir := t.TempDir()
	addr := freeAddr(t)
	environ := []string{"CCRELAY_DATA_DIR=" + dataDir, "CCRELAY_NATS_LISTEN=" + addr}
	const wrong = "XYZZYwrongpassword0123456789"
	if err := os.WriteFile(filepath.Join(dataDir, "nats-password"), []byte(wrong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI([]string{"dlq", "list"}, environ)
	if code != 1 || !strings.Contains(errOut, "nats://"+addr) || !strings.Contains(errOut, "is 'ccrelay serve' running") || strings.Contains(errOut, wrong) {
		t.Errorf("nothing listening: exit %d %s", code, errOut)
	}

	// A server of another data directory on the address refuses it.
	other := t.TempDir()
	startEmbedded(t, []string{"CCRELAY_DATA_DIR=" + other, "CCRELAY_NATS_LISTEN=" + addr})
	code, _, errOut = runCLI([]string{"dlq", "list"}, environ)
	if code != 1 || !strings.Contains(errOut, "refused the password") || strings.Contains(errOut, wrong) || strings.Contains(errOut, password(t, other)) {
		t.Errorf("wrong password: exit %d %s", code, errOut)
	}
}

// selfSigned writes a certificate for name (a DNS name only, as a
// certificate for a host's real name has) and its key into dir.
func selfSigned(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// With TLS on the embedded client port, the operator commands connect over
// TLS and trust the configured certificate, even when it names the host
// rather than the loopback address they dial.
func TestOperatorTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir, "relay.internal")
	environ := []string{"CCRELAY_DATA_DIR=" + filepath.Join(dir, "data"), "CCRELAY_NATS_LISTEN=" + freeAddr(t),
		"CCRELAY_NATS_TLS_CERT=" + cert, "CCRELAY_NATS_TLS_KEY=" + key}
	startEmbedded(t, environ)
	code, out, errOut := runCLI([]string{"dlq", "list"}, environ)
	if code != 0 || !strings.Contains(out, "0 dead letters") {
		t.Fatalf("dlq list over TLS: exit %d\n%s%s", code, out, errOut)
	}
}

// imposter listens where the embedded server should, answers like a NATS
// server (offering TLS with tlsCfg, or not at all when it is nil), and
// records what the client sends after the handshake.
func imposter(t *testing.T, tlsCfg *tls.Config) (addr string, received func() string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var (
		mu   sync.Mutex
		got  bytes.Buffer
		done = make(chan struct{}, 1)
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { done <- struct{}{} }()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = io.WriteString(c, `INFO {"server_id":"imposter","version":"2.15.0","proto":1,"max_payload":1048576,"tls_required":`+strconv.FormatBool(tlsCfg != nil)+"}\r\n")
				var r io.Reader = c
				if tlsCfg != nil {
					tc := tls.Server(c, tlsCfg)
					if tc.Handshake() != nil {
						return
					}
					r = tc
				}
				b, _ := io.ReadAll(io.LimitReader(r, 1<<16))
				mu.Lock()
				got.Write(b)
				mu.Unlock()
			}()
		}
	}()
	return ln.Addr().String(), func() string {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("the imposter was not dialled")
		}
		mu.Lock()
		defer mu.Unlock()
		return got.String()
	}
}

// Something else on the configured address never gets the password: not
// without TLS when TLS is configured, and not with a certificate other
// than the configured one.
func TestOperatorTLSRefusesAnImposter(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir, "relay.internal")
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	const pw = "XYZZYoperatorpassword0123456789"
	if err := os.WriteFile(filepath.Join(dataDir, "nats-password"), []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherCert, otherKey := selfSigned(t, t.TempDir(), "relay.internal")
	kp, err := tls.LoadX509KeyPair(otherCert, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		tls  *tls.Config
		want string
	}{
		{"plain", nil, "does not offer TLS"},
		{"another certificate", &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}, "does not present the certificate of CCRELAY_NATS_TLS_CERT"},
	} {
		addr, received := imposter(t, c.tls)
		environ := []string{"CCRELAY_DATA_DIR=" + dataDir, "CCRELAY_NATS_LISTEN=" + addr, "CCRELAY_NATS_TLS_CERT=" + cert, "CCRELAY_NATS_TLS_KEY=" + key}
		code, _, errOut := runCLI([]string{"dlq", "list"}, environ)
		if code != 1 || !strings.Contains(errOut, c.want) || strings.Contains(errOut, pw) {
			t.Errorf("%s: exit %d %s", c.name, code, errOut)
		}
		if got := received(); strings.Contains(got, pw) || strings.Contains(got, "CONNECT") {
			t.Errorf("%s: the imposter received %q", c.name, got)
		}
	}
}
