// Package natstest starts real NATS JetStream servers for tests: embedded in
// the test process, or in a Docker container through testcontainers-go from
// an image built here out of the same nats-server module ccrelay embeds (the
// Docker engine of the CI machine cannot pull images).
package natstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Embedded starts a JetStream server on a random loopback port, storing in
// a temporary directory, and stops it when the test ends.
func Embedded(t testing.TB) *server.Server {
	t.Helper()
	return EmbeddedAt(t, t.TempDir())
}

// EmbeddedAt is Embedded with the store in dir, so a test can restart a
// server on the same data.
func EmbeddedAt(t testing.TB, dir string) *server.Server {
	t.Helper()
	ns, err := Start(dir, server.RANDOM_PORT)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Stop(ns) })
	return ns
}

// Start starts a JetStream server on 127.0.0.1:port storing in dir. It does
// not fail the test, so it may run on any goroutine; the caller stops the
// server with Stop.
func Start(dir string, port int) (*server.Server, error) {
	ns, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  dir,
		NoSigs:    true,
		NoLog:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		Stop(ns)
		return nil, errors.New("nats server not ready")
	}
	return ns, nil
}

// Stop shuts ns down and waits until it has.
func Stop(ns *server.Server) {
	ns.Shutdown()
	ns.WaitForShutdown()
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Connect connects to url and returns the connection and its JetStream
// context, closed when the test ends.
func Connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	// Only the given URLs: a cluster advertises its nodes' container
	// addresses, which tests must not dial.
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.IgnoreDiscoveredServers())
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// imageOnce builds the image once per test binary.
type imageBuild struct {
	once    sync.Once
	built   sync.Once
	dir     string
	version string
	err     error
}

var image imageBuild // one per test process; tests share the built binary

// serverVersion is the nats-server module version of go.mod in dir.
func serverVersion(dir string) string {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/nats-io/nats-server/v2")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "dev"
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
}

// buildContext compiles a static nats-server from the module in go.mod and
// writes a FROM scratch Dockerfile beside it.
func buildContext() (string, error) {
	image.once.Do(func() {
		dir, err := os.MkdirTemp("", "ccrelay-nats-image-")
		if err != nil {
			image.err = err
			return
		}
		gomod, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			image.err = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, "nats-server"), "github.com/nats-io/nats-server/v2") // #nosec G204 -- fixed program and arguments
		cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
		image.version = serverVersion(cmd.Dir)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if out, err := cmd.CombinedOutput(); err != nil {
			image.err = fmt.Errorf("build nats-server: %v: %s", err, out)
			return
		}
		df := "FROM scratch\nCOPY nats-server /nats-server\nEXPOSE 4222 6222 8222\nENTRYPOINT [\"/nats-server\"]\n"
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o600); err != nil {
			image.err = err
			return
		}
		image.dir = dir
	})
	return image.dir, image.err
}

// imageReady prepares the environment for testcontainers and builds the
// NATS image (once per test binary).
func imageReady(t testing.TB) (string, error) {
	t.Helper()
	// No registry is reachable, so Ryuk (the reaper image) cannot be pulled;
	// cleanup is done by t.Cleanup instead.
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		t.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	// Inside a sandbox testcontainers takes the default gateway for the
	// Docker host; published ports are on loopback, and tests must only
	// ever talk to this machine.
	if os.Getenv("TESTCONTAINERS_HOST_OVERRIDE") == "" {
		t.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
	}
	dir, err := buildContext()
	if err != nil {
		return "", err
	}
	image.built.Do(func() {
		out, err := exec.Command("docker", "build", "-q", "-t", imageName(), dir).CombinedOutput() // #nosec G204 -- fixed program, our own temp dir and image name
		if err != nil {
			image.err = fmt.Errorf("docker build: %v: %s", err, out)
		}
	})
	return dir, image.err
}

func imageName() string { return "ccrelay-test-nats:" + image.version }

// Container starts a JetStream server in Docker and returns its client URL.
// The container is removed when the test ends. Docker must be available: a
// missing engine fails the test rather than skipping it.
func Container(t testing.TB, args ...string) (url string, c *testcontainers.DockerContainer) {
	t.Helper()
	if _, err := imageReady(t); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := append([]string{"-js", "-sd", "/data"}, args...)
	c, err := testcontainers.Run(ctx, imageName(),
		testcontainers.WithCmd(cmd...),
		testcontainers.WithExposedPorts("4222/tcp"),
		testcontainers.WithWaitStrategy(wait.ForLog("Server is ready").WithStartupTimeout(60*time.Second)),
	)
	if err != nil {
		t.Fatalf("nats container: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Terminate(ctx); err != nil {
			t.Logf("terminate nats container: %v", err)
		}
	})
	ep, err := c.PortEndpoint(ctx, "4222/tcp", "nats")
	if err != nil {
		t.Fatal(err)
	}
	return ep, c
}
