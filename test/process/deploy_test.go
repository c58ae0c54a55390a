package process_test

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
)

// composeDir copies docker-compose.yml into a new directory beside a .env
// written by deploy/compose-env.sh, and checks that ccrelay accepts that
// .env as it stands.
func composeDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range [][]string{{"docker-compose.yml"}, {"deploy", "nats", "nats.conf"}} {
		b, err := os.ReadFile(repoFile(f...))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(append([]string{dir}, f...)...)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := filepath.Join(dir, ".env")
	if out, err := exec.Command("bash", repoFile("deploy", "compose-env.sh"), env).CombinedOutput(); err != nil {
		t.Fatalf("compose-env.sh: %v\n%s", err, out)
	}
	if fi, err := os.Stat(env); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf(".env: %v %v, want mode 0600", fi, err)
	}
	if out, err := exec.Command("bash", repoFile("deploy", "compose-env.sh"), env).CombinedOutput(); err == nil {
		t.Errorf("compose-env.sh overwrote an existing .env: %s", out)
	}
	b, _ := os.ReadFile(env)
	if strings.Contains(string(b), "@random") {
		t.Errorf(".env still holds a placeholder:\n%s", b)
	}
	var environ []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "CCRELAY_") {
			environ = append(environ, l)
		}
	}
	if _, err := config.Load(append(environ, "CCRELAY_NATS_URL=nats://nats-1:4222"), nil); err != nil {
		t.Errorf("ccrelay refuses the generated .env: %v", err)
	}
	return dir
}

// TestComposeConfig validates docker-compose.yml with the compose tool.
func TestComposeConfig(t *testing.T) {
	compose := needTool(t, "docker-compose")
	dir := composeDir(t)
	out, err := exec.Command(compose, "-f", filepath.Join(dir, "docker-compose.yml"), "config").CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	for _, want := range []string{"nats-1", "nats-2", "nats-3", "ingest-1", "ingest-2", "process", "prometheus", "grafana", "CCRELAY_STREAM_REPLICAS: '3'"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("resolved compose file lacks %q", want)
		}
	}
	// With the .env compose-env.sh writes, every published port is on
	// loopback, as compose itself resolves them ("127.0.0.1:8081:8080/tcp";
	// a port on every interface comes out in compose's long form, a map).
	var resolved struct {
		Services map[string]struct {
			Ports []any `yaml:"ports"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(out, &resolved); err != nil {
		t.Fatal(err)
	}
	n := 0
	for name, svc := range resolved.Services {
		for _, p := range svc.Ports {
			n++
			if s, _ := p.(string); !strings.HasPrefix(s, "127.0.0.1:") {
				t.Errorf("%s publishes %v beyond loopback", name, p)
			}
		}
	}
	if n != 4 {
		t.Errorf("%d published ports, want 4 (two ingest replicas, Prometheus, Grafana)", n)
	}
}

// composeFile is what the tests read of a compose file.
type composeFile struct {
	Services map[string]struct {
		Ports []string `yaml:"ports"`
	} `yaml:"services"`
}

// composeVar is a ${NAME}, ${NAME:-default} or ${NAME:?error} in a
// compose file: the name, the operator and the default or error.
var composeVar = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::([-?])([^}]*))?\}`)

// interpolate replaces the variables of a compose file as compose does
// with env: a set value, else the default; a required one left unset
// fails the test.
func interpolate(t *testing.T, text string, env map[string]string) string {
	t.Helper()
	return composeVar.ReplaceAllStringFunc(text, func(m string) string {
		sub := composeVar.FindStringSubmatch(m)
		if v := env[sub[1]]; v != "" {
			return v
		}
		if sub[2] == "?" {
			t.Fatalf("compose refuses to start without %s: %s", sub[1], sub[3])
		}
		return sub[3]
	})
}

// TestComposePublishesOnLoopback reads docker-compose.yml as compose
// interpolates it: by default every published port is on 127.0.0.1;
// INGEST_BIND and INGEST_1_PORT/INGEST_2_PORT move ingest's. The variables
// compose reads for itself are documented in deploy/compose.env.example and
// have no CCRELAY_ prefix: .env reaches the ccrelay containers through
// env_file, and ccrelay refuses a CCRELAY_ setting it does not know.
func TestComposePublishesOnLoopback(t *testing.T) {
	raw, err := os.ReadFile(repoFile("docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(repoFile("deploy", "compose.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	ports := func(env map[string]string) map[string][]string {
		env = maps.Clone(env)
		if env == nil {
			env = map[string]string{}
		}
		// Required settings (which compose-env.sh writes) are set.
		for _, m := range composeVar.FindAllStringSubmatch(string(raw), -1) {
			if m[2] == "?" && env[m[1]] == "" {
				env[m[1]] = "x"
			}
		}
		text := interpolate(t, string(raw), env)
		var f composeFile
		if err := yaml.Unmarshal([]byte(text), &f); err != nil {
			t.Fatal(err)
		}
		out := map[string][]string{}
		for name, svc := range f.Services {
			if len(svc.Ports) > 0 {
				out[name] = svc.Ports
			}
		}
		return out
	}
	def := ports(nil)
	for name, ps := range def {
		for _, p := range ps {
			if parts := strings.Split(p, ":"); len(parts) != 3 || parts[0] != "127.0.0.1" {
				t.Errorf("%s publishes %q: want 127.0.0.1:<host port>:<container port>", name, p)
			}
		}
	}
	if !slices.Equal(def["ingest-1"], []string{"127.0.0.1:8081:8080"}) || !slices.Equal(def["ingest-2"], []string{"127.0.0.1:8082:8080"}) {
		t.Errorf("ingest publishes %v and %v by default", def["ingest-1"], def["ingest-2"])
	}
	moved := ports(map[string]string{"INGEST_BIND": "0.0.0.0", "INGEST_1_PORT": "18081", "INGEST_2_PORT": "18082"})
	if !slices.Equal(moved["ingest-1"], []string{"0.0.0.0:18081:8080"}) || !slices.Equal(moved["ingest-2"], []string{"0.0.0.0:18082:8080"}) {
		t.Errorf("INGEST_BIND and INGEST_*_PORT publish ingest on %v and %v", moved["ingest-1"], moved["ingest-2"])
	}
	if !slices.Equal(moved["prometheus"], def["prometheus"]) {
		t.Errorf("INGEST_BIND moved Prometheus: %v", moved["prometheus"])
	}

	for _, m := range composeVar.FindAllStringSubmatch(string(raw), -1) {
		name := m[1]
		if strings.HasPrefix(name, config.Prefix) {
			t.Errorf("docker-compose.yml reads %s: set in .env, ccrelay would refuse it", name)
		}
		if !regexp.MustCompile(`(?m)^#?` + name + `=`).Match(example) {
			t.Errorf("docker-compose.yml reads %s, which deploy/compose.env.example does not show", name)
		}
	}
}

// TestComposeNATSCluster reads deploy/nats/nats.conf as each NATS node of
// docker-compose.yml does, with the environment compose gives it from the
// .env deploy/compose-env.sh writes: a route must log in (cluster
// authorization with the generated route password), every route URL
// carries that login, and monitoring listens on the node's loopback only,
// so another container of the compose network can neither join the
// cluster nor read its connections.
func TestComposeNATSCluster(t *testing.T) {
	dir := composeDir(t)
	env := map[string]string{}
	dotenv, err := os.ReadFile(filepath.Join(dir, ".env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(dotenv), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(k, "#") {
			env[k] = v
		}
	}
	password := env["NATS_ROUTE_PASSWORD"]
	if len(password) < 32 {
		t.Fatalf(".env sets NATS_ROUTE_PASSWORD to %q, want a generated secret", password)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(interpolate(t, string(raw), env)), &f); err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"nats-1", "nats-2", "nats-3"} {
		t.Run(node, func(t *testing.T) {
			svc, ok := f.Services[node]
			if !ok {
				t.Fatalf("no service %s", node)
			}
			if len(svc.Ports) > 0 {
				t.Errorf("%s publishes %v", node, svc.Ports)
			}
			// The container's environment: env_file .env, then the
			// service's own.
			for k, v := range env {
				t.Setenv(k, v)
			}
			for k, v := range svc.Environment {
				t.Setenv(k, v)
			}
			opts, err := server.ProcessConfigFile(filepath.Join(dir, "deploy", "nats", "nats.conf"))
			if err != nil {
				t.Fatalf("nats.conf as %s reads it: %v", node, err)
			}
			if opts.Cluster.Username == "" || opts.Cluster.Password != password {
				t.Errorf("cluster authorization: user %q, password set %v; want a user with NATS_ROUTE_PASSWORD", opts.Cluster.Username, opts.Cluster.Password != "")
			}
			var hosts []string
			for _, r := range opts.Routes {
				pw, _ := r.User.Password()
				if r.User.Username() != opts.Cluster.Username || pw != password {
					t.Errorf("route to %s logs in as %q (password right: %v), want the cluster's user and password", r.Host, r.User.Username(), pw == password)
				}
				hosts = append(hosts, r.Host)
			}
			if want := []string{"nats-1:6222", "nats-2:6222", "nats-3:6222"}; !slices.Equal(hosts, want) {
				t.Errorf("routes to %v, want %v", hosts, want)
			}
			if opts.HTTPPort != 0 && opts.HTTPHost != "127.0.0.1" && opts.HTTPHost != "::1" && opts.HTTPHost != "localhost" {
				t.Errorf("monitoring listens on %s:%d, want the container's loopback", opts.HTTPHost, opts.HTTPPort)
			}
		})
	}
}

// TestImagesBuild builds both images with deploy/build-images.sh on this
// machine (whose engine cannot pull) and runs the ccrelay image.
func TestImagesBuild(t *testing.T) {
	docker := needTool(t, "docker")
	out, err := exec.Command("bash", repoFile("deploy", "build-images.sh"), "citest").CombinedOutput()
	if err != nil {
		t.Fatalf("build-images.sh: %v\n%s", err, out)
	}
	user, err := exec.Command(docker, "image", "inspect", "--format", "{{.Config.User}}", "ccrelay:citest").Output()
	if err != nil || strings.TrimSpace(string(user)) != "65532:65532" {
		t.Errorf("image user %q %v, want non-root 65532:65532", user, err)
	}
	ver, err := exec.Command(docker, "run", "--rm", "ccrelay:citest", "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(ver), "ccrelay ") {
		t.Errorf("docker run ccrelay version: %v %s", err, ver)
	}
	if out, err := exec.Command(docker, "run", "--rm", "ccrelay-nats:citest", "--version").CombinedOutput(); err != nil || !strings.Contains(string(out), "nats-server") {
		t.Errorf("nats image: %v %s", err, out)
	}
	t.Run("compose up", func(t *testing.T) { composeUp(t, "citest") })
}

// composeUp starts the compose file's NATS cluster, an ingest replica and
// a processor replica from the images tagged tag, with a .env from
// deploy/compose-env.sh, and stores one event through ingest. Prometheus
// and Grafana are left out: their images come from a registry this
// machine cannot reach.
func composeUp(t *testing.T, tag string) {
	compose := needTool(t, "docker-compose")
	dir := composeDir(t)
	port := freePort(t)
	project := fmt.Sprintf("ccrelaytest%d", os.Getpid())
	run := func(args ...string) (string, error) {
		cmd := exec.Command(compose, append([]string{"-p", project, "-f", filepath.Join(dir, "docker-compose.yml")}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "IMAGE_TAG="+tag, "INGEST_1_PORT="+port[strings.LastIndexByte(port, ':')+1:])
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() { _, _ = run("down", "-v", "--remove-orphans") })
	if out, err := run("up", "-d", "nats-1", "nats-2", "nats-3", "ingest-1", "process"); err != nil {
		t.Fatalf("docker-compose up: %v\n%s", err, out)
	}
	base := "http://" + port
	waitFor(t, "ingest ready in compose", func() bool {
		res, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
	env, _ := os.ReadFile(filepath.Join(dir, ".env"))
	var key string
	for _, l := range strings.Split(string(env), "\n") {
		if v, ok := strings.CutPrefix(l, "CCRELAY_CONNECT_API_KEYS="); ok {
			key = v
		}
	}
	req, _ := http.NewRequest("POST", base+"/v1/connect/events", strings.NewReader(connectEventBody))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 202 {
		logs, _ := run("logs", "--tail", "50")
		t.Fatalf("event through compose: %d %s\n%s", res.StatusCode, b, logs)
	}
	// The processors run as NATS user ccrelay with its permissions: all
	// three started, and the summaries processor took the event (the
	// consumer, a ledger claim and its release) and failed on the Connect
	// bucket the .env names only as a placeholder.
	waitFor(t, "processors started and the event taken", func() bool {
		logs, _ := run("logs", "process")
		return strings.Count(logs, `"processor started"`) == 3 && strings.Contains(logs, `"processing failed; will retry"`)
	})
	if logs, _ := run("logs"); strings.Contains(logs, "Permissions Violation") || strings.Contains(logs, "Authorization Violation") {
		t.Errorf("a NATS permission was missing:\n%s", logs)
	}
}

const connectEventBody = `{"version":"0","id":"6f1c2b3a-0000-4000-8000-0000000000c0","detail-type":"Contact Lens Post Call Rules Matched","source":"aws.connect","account":"123456789012","time":"2026-11-21T09:58:00Z","region":"eu-central-1","resources":[],"detail":{"instanceArn":"arn:aws:connect:eu-central-1:123456789012:instance/b1e4f6a2-0000-4000-8000-000000000001","contactArn":"arn:aws:connect:eu-central-1:123456789012:instance/b1e4f6a2-0000-4000-8000-000000000001/contact/c0ffee00-0000-4000-8000-0000000000c0"}}`

// TestKubernetesManifests checks the manifests' structure: every object
// named, probes on /healthz and /readyz for ingest, Deployments reading the
// Secret the example defines, HPAs and PDBs pointing at the Deployments.
func TestKubernetesManifests(t *testing.T) {
	var docs []map[string]any
	for _, f := range []string{"ingest.yaml", "process.yaml", "secret.example.yaml"} {
		b, err := os.ReadFile(repoFile("deploy", "k8s", f))
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var d map[string]any
			if err := dec.Decode(&d); err != nil {
				break
			}
			docs = append(docs, d)
		}
	}
	get := func(m any, path ...string) any {
		for _, p := range path {
			mm, ok := m.(map[string]any)
			if !ok {
				return nil
			}
			m = mm[p]
		}
		return m
	}
	deployments, secrets := map[string]map[string]any{}, map[string]bool{}
	kinds := map[string]int{}
	for _, d := range docs {
		kind, _ := d["kind"].(string)
		name, _ := get(d, "metadata", "name").(string)
		if d["apiVersion"] == nil || kind == "" || name == "" {
			t.Errorf("object without apiVersion, kind or name: %v", d)
		}
		kinds[kind]++
		switch kind {
		case "Deployment":
			deployments[name] = d
		case "Secret":
			secrets[name] = true
			if name == "ccrelay-secrets" {
				if u, _ := get(d, "stringData", "CCRELAY_NATS_URL").(string); !strings.Contains(u, "nats://ccrelay:") {
					t.Errorf("ccrelay-secrets connects to NATS without its user: %q", u)
				}
			}
		}
	}
	for kind, n := range map[string]int{"Deployment": 2, "Service": 2, "HorizontalPodAutoscaler": 2, "PodDisruptionBudget": 2, "Secret": 2} {
		if kinds[kind] != n {
			t.Errorf("%d %s, want %d", kinds[kind], kind, n)
		}
	}
	for name, d := range deployments {
		c := get(d, "spec", "template", "spec", "containers").([]any)[0]
		for _, ref := range get(c, "envFrom").([]any) {
			if s, _ := get(ref, "secretRef", "name").(string); !secrets[s] {
				t.Errorf("%s reads secret %q, which the example does not define", name, s)
			}
		}
		if get(d, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
			t.Errorf("%s may run as root", name)
		}
		if name == "ccrelay-ingest" {
			if get(c, "readinessProbe", "httpGet", "path") != "/readyz" || get(c, "livenessProbe", "httpGet", "path") != "/healthz" {
				t.Errorf("ingest probes: %v %v", get(c, "readinessProbe"), get(c, "livenessProbe"))
			}
		}
	}
	for _, d := range docs {
		switch d["kind"] {
		case "HorizontalPodAutoscaler":
			if target, _ := get(d, "spec", "scaleTargetRef", "name").(string); deployments[target] == nil {
				t.Errorf("HPA %v targets %q", get(d, "metadata", "name"), target)
			}
		case "PodDisruptionBudget":
			sel := get(d, "spec", "selector", "matchLabels").(map[string]any)
			matched := false
			for _, dep := range deployments {
				labels := get(dep, "spec", "template", "metadata", "labels").(map[string]any)
				ok := true
				for k, v := range sel {
					ok = ok && labels[k] == v
				}
				matched = matched || ok
			}
			if !matched {
				t.Errorf("PDB %v selects no Deployment", get(d, "metadata", "name"))
			}
		}
	}
}
