package helmchart

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// writeCerts writes a CA and one certificate for the route port (server
// and client use: routes dial each other with it), as cert-manager would
// put them in Secret nats-route-tls.
func writeCerts(t *testing.T, dir string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ccrelay test NATS CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "ccrelay-nats"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		// In a cluster: *.ccrelay-nats-headless (and its FQDN); here the
		// routes dial loopback.
		DNSNames:    []string{"*.ccrelay-nats-headless", "*.ccrelay-nats-headless.ccrelay.svc.cluster.local", "localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"ca.crt":  {Type: "CERTIFICATE", Bytes: caDER},
		"tls.crt": {Type: "CERTIFICATE", Bytes: der},
		"tls.key": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago:
// all are held open until all are chosen, so none repeats.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// rendered is one rendering of the chart, with its objects by kind/name.
type rendered struct {
	objs    []object
	secrets map[string]*corev1.Secret
}

func renderObjects(t *testing.T, files ...string) rendered {
	t.Helper()
	objs, f := check(t, helmTemplate(t, chartDir(t), release, files...))
	if len(f.decode) > 0 {
		t.Fatalf("decode: %q", f.decode)
	}
	r := rendered{objs: objs, secrets: map[string]*corev1.Secret{}}
	for _, o := range objs {
		if s, ok := o.typed.(*corev1.Secret); ok {
			r.secrets[s.Name] = s
		}
	}
	return r
}

func (r rendered) configMap(t *testing.T, name string) *corev1.ConfigMap {
	t.Helper()
	for _, o := range r.objs {
		if cm, ok := o.typed.(*corev1.ConfigMap); ok && cm.Name == name {
			return cm
		}
	}
	t.Fatalf("no ConfigMap %s rendered", name)
	return nil
}

func (r rendered) deployment(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	for _, o := range r.objs {
		if d, ok := o.typed.(*appsv1.Deployment); ok && d.Name == name {
			return d
		}
	}
	t.Fatalf("no Deployment %s rendered", name)
	return nil
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// containerEnv resolves a container's environment as the kubelet would:
// envFrom Secrets first, then env in order, with secretKeyRef read from the
// rendered Secrets and $(VAR) expanded from the variables before it.
// Of the downward API, limits.memory is resolved (GOMEMLIMIT); other
// fields are left out.
func (r rendered) containerEnv(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	secretValue := func(name, key string) string {
		s := r.secrets[name]
		if s == nil {
			t.Fatalf("container %s reads Secret %s, which the chart did not render", c.Name, name)
		}
		v, ok := s.StringData[key]
		if !ok {
			t.Fatalf("container %s reads key %s of Secret %s, which it lacks", c.Name, key, name)
		}
		return v
	}
	for _, ef := range c.EnvFrom {
		if ef.SecretRef == nil {
			continue
		}
		s := r.secrets[ef.SecretRef.Name]
		if s == nil {
			t.Fatalf("container %s reads Secret %s, which the chart did not render", c.Name, ef.SecretRef.Name)
		}
		for k, v := range s.StringData {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = secretValue(e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
		case e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory":
			// Bytes, as the kubelet writes it (divisor 1).
			q := c.Resources.Limits[corev1.ResourceMemory]
			env[e.Name] = fmt.Sprint(q.Value())
		case e.ValueFrom != nil:
			continue
		default:
			env[e.Name] = envRef.ReplaceAllStringFunc(e.Value, func(m string) string {
				if v, ok := env[m[2:len(m)-1]]; ok {
					return v
				}
				return m
			})
		}
	}
	return env
}

// natsNode is one server started from the rendered configuration.
type natsNode struct {
	srv                 *server.Server
	client, route, http int
	log                 *errorLog
}

// errorLog keeps a server's error and warning lines.
type errorLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *errorLog) add(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, v...))
}

func (l *errorLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *errorLog) Noticef(string, ...any)         {}
func (l *errorLog) Debugf(string, ...any)          {}
func (l *errorLog) Tracef(string, ...any)          {}
func (l *errorLog) Warnf(format string, v ...any)  { l.add(format, v...) }
func (l *errorLog) Errorf(format string, v ...any) { l.add(format, v...) }
func (l *errorLog) Fatalf(format string, v ...any) { l.add(format, v...) }

// startCluster starts three servers from the rendered nats.conf, changing
// only what binds it to Kubernetes: the server name ($SERVER_NAME from the
// pod name), ports and route hosts (loopback), and file paths (the test's
// directories, with the test's certificates). The passwords come from the
// rendered Secret through the environment, as the StatefulSet passes them.
func startCluster(t *testing.T, conf string, certDir string, dropCA bool) []*natsNode {
	t.Helper()
	nodes := make([]*natsNode, 3)
	ports := freePorts(t, 3*len(nodes))
	for i := range nodes {
		nodes[i] = &natsNode{client: ports[3*i], route: ports[3*i+1], http: ports[3*i+2]}
	}
	for i, n := range nodes {
		c := conf
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("nats-%d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		repl := []string{
			`$SERVER_NAME`, fmt.Sprintf("%q", fmt.Sprintf("ccrelay-nats-%d", i)),
			`"port": 4222`, fmt.Sprintf(`"port": %d`, n.client),
			`"port": 6222`, fmt.Sprintf(`"port": %d`, n.route),
			`"http_port": 8222`, fmt.Sprintf(`"http_port": %d`, n.http),
			`"/etc/nats-ca-cert/ca.crt"`, fmt.Sprintf("%q", filepath.Join(certDir, "ca.crt")),
			`"/etc/nats-certs/cluster/tls.crt"`, fmt.Sprintf("%q", filepath.Join(certDir, "tls.crt")),
			`"/etc/nats-certs/cluster/tls.key"`, fmt.Sprintf("%q", filepath.Join(certDir, "tls.key")),
			`"store_dir": "/data"`, fmt.Sprintf(`"store_dir": %q`, filepath.Join(dir, "js")),
			`"pid_file": "/var/run/nats/nats.pid"`, fmt.Sprintf(`"pid_file": %q`, filepath.Join(dir, "nats.pid")),
		}
		for j, peer := range nodes {
			repl = append(repl, fmt.Sprintf(`"tls://ccrelay-nats-%d.ccrelay-nats-headless:6222"`, j), fmt.Sprintf(`"tls://127.0.0.1:%d"`, peer.route))
		}
		for k := 0; k < len(repl); k += 2 {
			if !strings.Contains(c, repl[k]) {
				t.Fatalf("rendered nats.conf lacks %s:\n%s", repl[k], conf)
			}
		}
		// Client TLS, when on (examples/client-tls.yaml): the same test
		// certificate, which names 127.0.0.1.
		repl = append(repl,
			`"/etc/nats-certs/nats/tls.crt"`, fmt.Sprintf("%q", filepath.Join(certDir, "tls.crt")),
			`"/etc/nats-certs/nats/tls.key"`, fmt.Sprintf("%q", filepath.Join(certDir, "tls.key")))
		c = strings.NewReplacer(repl...).Replace(c)
		if dropCA {
			c = regexp.MustCompile(`(?m)^\s*"ca_file": .*\n`).ReplaceAllString(c, "")
		}
		path := filepath.Join(dir, "nats.conf")
		if err := os.WriteFile(path, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("nats-server refuses the rendered configuration: %v\n%s", err, c)
		}
		opts.NoSigs = true
		opts.NoLog = true
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		n.log = &errorLog{}
		s.SetLogger(n.log, false, false)
		s.Start()
		n.srv = s
		t.Cleanup(s.Shutdown)
	}
	for _, n := range nodes {
		if !n.srv.ReadyForConnections(10 * time.Second) {
			t.Fatalf("%s: not ready for connections", n.srv.Name())
		}
	}
	return nodes
}

// clusterState is what each server says of the cluster: its route peers
// and its JetStream meta leader.
func clusterState(n *natsNode) (peers []string, routes int, leader string) {
	rz, err := n.srv.Routez(nil)
	if err == nil {
		seen := map[string]bool{}
		for _, r := range rz.Routes {
			if !seen[r.RemoteName] {
				seen[r.RemoteName] = true
				peers = append(peers, r.RemoteName)
			}
		}
		routes = rz.NumRoutes
	}
	sort.Strings(peers)
	if jsz, err := n.srv.Jsz(nil); err == nil && jsz.Meta != nil {
		leader = jsz.Meta.Leader
	}
	return peers, routes, leader
}

// waitCluster waits until every server has route peers to the other two
// and all agree on a JetStream meta leader; it returns that leader.
func waitCluster(t *testing.T, nodes []*natsNode, within time.Duration) (string, bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		leaders := map[string]bool{}
		ok := true
		for _, n := range nodes {
			peers, _, leader := clusterState(n)
			if len(peers) != len(nodes)-1 || leader == "" {
				ok = false
			}
			leaders[leader] = true
		}
		if ok && len(leaders) == 1 {
			for l := range leaders {
				return l, true
			}
		}
		if time.Now().After(deadline) {
			return "", false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clusterValues are the test's own secrets over examples/chart-secrets.yaml:
// valid seal keys and API keys instead of its REPLACE markers.
func clusterValues(t *testing.T) string {
	t.Helper()
	seal := make([]byte, 32)
	if _, err := rand.Read(seal); err != nil {
		t.Fatal(err)
	}
	v := fmt.Sprintf(`ingest:
  secretEnv:
    CCRELAY_SINCH_WEBHOOK_SECRETS: "eu:0123456789abcdef0123456789abcdef"
    CCRELAY_CONTACTPRO_API_KEYS: "test-contactpro-key-0123456789abcdef"
    CCRELAY_OAUTH_CLIENTS: "contactpro@contactpro:0123456789abcdef0123456789abcdef"
    CCRELAY_CONNECT_API_KEYS: "test-connect-key-0123456789abcdef"
    CCRELAY_SEAL_KEYS: "k1:%[1]s"
process:
  secretEnv:
    CCRELAY_SEAL_KEYS: "k1:%[1]s"
`, base64.StdEncoding.EncodeToString(seal))
	path := filepath.Join(t.TempDir(), "test-values.yaml")
	if err := os.WriteFile(path, []byte(v), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRenderedNATSFormsCluster starts three NATS servers from the chart's
// rendered configuration and sees them form a cluster over route TLS
// verified against the CA, with a JetStream meta leader; then ccrelay
// ingest, with the rendered environment of the ingest Deployment, stores an
// event through it at 3 replicas. The same servers without the CA
// (deploy/k8s/nats-values.yaml) form no routes.
func TestRenderedNATSFormsCluster(t *testing.T) {
	helmBin(t)
	r := renderObjects(t, filepath.Join(chartDir(t), "examples", "chart-secrets.yaml"), clusterValues(t))
	conf := r.configMap(t, "ccrelay-nats-config").Data["nats.conf"]
	nats := r.secrets["ccrelay-nats"]
	if nats == nil {
		t.Fatal("examples/chart-secrets.yaml rendered no Secret ccrelay-nats")
	}
	// The StatefulSet's env: the passwords from Secret ccrelay-nats.
	t.Setenv("CCRELAY_PASSWORD", nats.StringData["ccrelay-password"])
	t.Setenv("OPERATOR_PASSWORD", nats.StringData["operator-password"])
	t.Setenv("SYS_PASSWORD", nats.StringData["sys-password"])
	certDir := t.TempDir()
	writeCerts(t, certDir)

	t.Run("without ca_file routes fail", func(t *testing.T) {
		nodes := startCluster(t, conf, certDir, true)
		// Wait for each server to have tried its routes and logged why
		// they failed, then see that none formed.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			all := true
			for _, n := range nodes {
				all = all && strings.Contains(n.log.String(), "certificate signed by unknown authority")
			}
			if all {
				break
			}
			if time.Now().After(deadline) {
				for _, n := range nodes {
					t.Logf("%s log:\n%s", n.srv.Name(), n.log)
				}
				t.Fatal("not every server logged \"unknown authority\" for its routes within 30s")
			}
		}
		for _, n := range nodes {
			peers, routes, _ := clusterState(n)
			t.Logf("without ca_file: %s: %d routes, peers %v; its log says \"certificate signed by unknown authority\"", n.srv.Name(), routes, peers)
			if len(peers) > 0 {
				t.Errorf("%s: routes to %v formed without the CA", n.srv.Name(), peers)
			}
			n.srv.Shutdown()
		}
	})

	start := time.Now()
	nodes := startCluster(t, conf, certDir, false)
	leader, ok := waitCluster(t, nodes, 30*time.Second)
	for _, n := range nodes {
		peers, routes, l := clusterState(n)
		t.Logf("%s: %d route connections to peers %v, meta leader %q", n.srv.Name(), routes, peers, l)
	}
	if !ok {
		t.Fatal("the three servers formed no cluster with a JetStream meta leader within 30s")
	}
	t.Logf("cluster formed in %s, JetStream meta leader %s", time.Since(start).Round(time.Millisecond), leader)

	bin := buildCcrelay(t)

	t.Run("ingest stores an event", func(t *testing.T) {
		c := r.deployment(t, "ccrelay-ingest").Spec.Template.Spec.Containers[0]
		env := r.containerEnv(t, c)
		if _, ok := env["CCRELAY_C4C_PASSWORD"]; ok {
			t.Error("ingest's environment holds CCRELAY_C4C_PASSWORD")
		}
		httpPort, _, logs := runCcrelay(t, bin, c.Args, env, nodes[0].client)
		base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
		waitOK(t, base+"/readyz", 60*time.Second, logs)
		req, err := http.NewRequest(http.MethodPost, base+"/v1/contactpro/chat-attachments/Ended",
			strings.NewReader(`{"contact_id":"0a1b2c3d-0000-4000-8000-000000000001"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-api-key", env["CCRELAY_CONTACTPRO_API_KEYS"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST chat-attachments: %s\n%s", resp.Status, logs.String())
		}
		// The event reaches every server's copy of the stream (R3); the ack
		// came once a quorum held it, the last copy may follow a moment later.
		var stored []string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			stored = stored[:0]
			all := true
			for _, n := range nodes {
				jsz, err := n.srv.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
				if err != nil {
					t.Fatal(err)
				}
				all = all && jsz.Messages >= 1
				stored = append(stored, fmt.Sprintf("%s: %d messages in %d streams", n.srv.Name(), jsz.Messages, jsz.Streams))
			}
			if all {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the event is not on every server within 10s: %s", strings.Join(stored, "; "))
			}
		}
		t.Logf("ingest answered %s; %s", resp.Status, strings.Join(stored, "; "))
	})

	t.Run("process answers its probes", func(t *testing.T) {
		c := r.deployment(t, "ccrelay-process").Spec.Template.Spec.Containers[0]
		env := r.containerEnv(t, c)
		if env["GOMEMLIMIT"] == "" {
			t.Fatal("process has no GOMEMLIMIT")
		}
		_, metricsPort, logs := runCcrelay(t, bin, c.Args, env, nodes[1].client)
		for _, p := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.String() != "metrics" {
				t.Fatalf("process probe %+v: want an HTTP GET on port metrics", p)
			}
			waitOK(t, fmt.Sprintf("http://127.0.0.1:%d%s", metricsPort, p.HTTPGet.Path), 60*time.Second, logs)
		}
		t.Logf("process: GOMEMLIMIT=%s, %s answers 200 on the metrics listener", env["GOMEMLIMIT"], c.LivenessProbe.HTTPGet.Path)
	})
}

// runCcrelay starts bin with a rendered environment adapted to loopback:
// the NATS Service's host and port become the test server's, the
// listeners loopback ports (natsPort 0: no NATS URL to adapt, serve).
// It returns the HTTP and metrics ports and the
// process's output.
func runCcrelay(t *testing.T, bin string, args []string, env map[string]string, natsPort int) (int, int, *syncBuffer) {
	t.Helper()
	if natsPort != 0 {
		url := env["CCRELAY_NATS_URL"]
		if !strings.Contains(url, "@ccrelay-nats:4222") {
			t.Fatalf("CCRELAY_NATS_URL = %q, want the NATS Service ccrelay-nats:4222", url)
		}
		env["CCRELAY_NATS_URL"] = strings.Replace(url, "@ccrelay-nats:4222", fmt.Sprintf("@127.0.0.1:%d", natsPort), 1)
	}
	ports := freePorts(t, 2)
	httpPort, metricsPort := ports[0], ports[1]
	env["CCRELAY_HTTP_ADDR"] = fmt.Sprintf("127.0.0.1:%d", httpPort)
	env["CCRELAY_METRICS_ADDR"] = fmt.Sprintf("127.0.0.1:%d", metricsPort)
	environ := []string{}
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...) // #nosec G204 -- the binary just built, the rendered args
	cmd.Env = environ
	logs := &syncBuffer{exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(logs.exited) }()
	t.Cleanup(func() { cancel(); <-logs.exited })
	return httpPort, metricsPort, logs
}

// waitOK polls url until it answers 200.
func waitOK(t *testing.T, url string, within time.Duration, logs *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url) // #nosec G107 -- a loopback URL of the test
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no 200 within %s:\n%s", url, within, logs)
		}
		select {
		case <-logs.exited:
			t.Fatalf("%s: the process exited:\n%s", url, logs)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// syncBuffer is a process's output, written by exec's copiers and read by
// the test.
type syncBuffer struct {
	mu     sync.Mutex
	b      strings.Builder
	exited chan struct{} // closed once the process exited
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The ccrelay binary, built once for the tests that run it.
var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// TestMain removes the binary's directory after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// buildCcrelay builds ./cmd/ccrelay once and returns the binary's path.
func buildCcrelay(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no ccrelay build")
	}
	root := repoRoot(t)
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "ccrelay-helmchart-"); buildErr != nil {
			return
		}
		build := exec.Command("go", "build", "-o", filepath.Join(buildDir, "ccrelay"), "./cmd/ccrelay") // #nosec G204 -- fixed arguments
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/ccrelay: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "ccrelay")
}

// TestServe runs ccrelay serve with the rendered environment of
// examples/serve.yaml (the data directory, the volume's mount, adapted to
// the test's) and sees it answer its probes.
func TestServe(t *testing.T) {
	helmBin(t)
	r := renderObjects(t, filepath.Join(chartDir(t), "examples", "serve.yaml"), clusterValues(t))
	bin := buildCcrelay(t)
	d := r.deployment(t, "ccrelay-serve")
	c := d.Spec.Template.Spec.Containers[0]
	env := r.containerEnv(t, c)
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/data" {
		t.Fatalf("serve mounts %+v, want its volume on /data (the image's CCRELAY_DATA_DIR)", c.VolumeMounts)
	}
	env["CCRELAY_DATA_DIR"] = t.TempDir()
	httpPort, _, logs := runCcrelay(t, bin, c.Args, env, 0)
	for _, p := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.String() != "http" {
			t.Fatalf("serve probe %+v: want an HTTP GET on port http", p)
		}
		waitOK(t, fmt.Sprintf("http://127.0.0.1:%d%s", httpPort, p.HTTPGet.Path), 60*time.Second, logs)
	}
	t.Logf("serve: GOMEMLIMIT=%s, /healthz and /readyz answer 200", env["GOMEMLIMIT"])
}

// TestClientTLS: with examples/client-tls.yaml, ingest reaches NATS over
// tls:// and verifies the servers against the CA the chart mounts
// (SSL_CERT_DIR), and stores an event.
func TestClientTLS(t *testing.T) {
	helmBin(t)
	r := renderObjects(t, filepath.Join(chartDir(t), "examples", "chart-secrets.yaml"),
		filepath.Join(chartDir(t), "examples", "client-tls.yaml"), clusterValues(t))
	conf := r.configMap(t, "ccrelay-nats-config").Data["nats.conf"]
	if !strings.Contains(conf, `"/etc/nats-certs/nats/tls.crt"`) {
		t.Fatalf("client TLS is not in the rendered nats.conf:\n%s", conf)
	}
	nats := r.secrets["ccrelay-nats"]
	t.Setenv("CCRELAY_PASSWORD", nats.StringData["ccrelay-password"])
	t.Setenv("OPERATOR_PASSWORD", nats.StringData["operator-password"])
	t.Setenv("SYS_PASSWORD", nats.StringData["sys-password"])
	certDir := t.TempDir()
	writeCerts(t, certDir)
	nodes := startCluster(t, conf, certDir, false)
	if _, ok := waitCluster(t, nodes, 30*time.Second); !ok {
		t.Fatal("no cluster within 30s")
	}
	bin := buildCcrelay(t)
	c := r.deployment(t, "ccrelay-ingest").Spec.Template.Spec.Containers[0]
	env := r.containerEnv(t, c)
	if !strings.HasPrefix(env["CCRELAY_NATS_URL"], "tls://") {
		t.Fatalf("CCRELAY_NATS_URL = %q, want tls://", env["CCRELAY_NATS_URL"])
	}
	// The mounted Secret nats-tls (item ca.crt) is the test's CA.
	mounted := false
	for _, m := range c.VolumeMounts {
		mounted = mounted || m.MountPath == env["SSL_CERT_DIR"]
	}
	if !mounted {
		t.Fatalf("SSL_CERT_DIR=%q is not a mounted volume: %+v", env["SSL_CERT_DIR"], c.VolumeMounts)
	}
	caDir := t.TempDir()
	ca, err := os.ReadFile(filepath.Join(certDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(caDir, "ca.crt"), ca, 0o600); err != nil {
		t.Fatal(err)
	}
	env["SSL_CERT_DIR"] = caDir
	httpPort, _, logs := runCcrelay(t, bin, c.Args, env, nodes[2].client)
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	waitOK(t, base+"/readyz", 60*time.Second, logs)
	req, err := http.NewRequest(http.MethodPost, base+"/v1/contactpro/chat-attachments/Ended",
		strings.NewReader(`{"contact_id":"0a1b2c3d-0000-4000-8000-000000000002"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", env["CCRELAY_CONTACTPRO_API_KEYS"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST chat-attachments over client TLS: %s\n%s", resp.Status, logs)
	}
	tlsClients := 0
	for _, n := range nodes {
		cz, err := n.srv.Connz(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, ci := range cz.Conns {
			if ci.TLSVersion != "" {
				tlsClients++
			}
		}
	}
	if tlsClients == 0 {
		t.Fatal("no client connection uses TLS")
	}
	t.Logf("ingest over client TLS answered %s; %d TLS client connections", resp.Status, tlsClients)
}
