package helmchart

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// valuesCases are the renderings under test: default values and every
// example values file.
func valuesCases(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir(t), "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no example values files under deploy/helm/ccrelay/examples")
	}
	cases := map[string][]string{"default": nil}
	for _, f := range files {
		cases[strings.TrimSuffix(filepath.Base(f), ".yaml")] = []string{f}
	}
	return cases
}

func TestChart(t *testing.T) {
	helmBin(t)
	for name, files := range valuesCases(t) {
		t.Run(name, func(t *testing.T) {
			objs, f := check(t, helmTemplate(t, chartDir(t), release, files...))
			for _, p := range f.decode {
				t.Errorf("decode: %s", p)
			}
			for pod, v := range f.podSecurity {
				t.Errorf("pod security (restricted, latest) refuses %s: %s", pod, strings.Join(v, "; "))
			}
			for _, p := range append(f.workload, f.hpa...) {
				t.Error(p)
			}
			checkComponents(t, objs)
		})
	}
}

// checkComponents holds what the chart promises of ccrelay's own pods and
// Secrets.
func checkComponents(t *testing.T, objs []object) {
	t.Helper()
	secrets := map[string]*corev1.Secret{}
	pods := 0
	for _, o := range objs {
		if s, ok := o.typed.(*corev1.Secret); ok {
			secrets[s.Name] = s
		}
	}
	for _, o := range objs {
		d, ok := o.typed.(*appsv1.Deployment)
		if !ok || !isCcrelay(&d.Spec.Template.ObjectMeta) {
			continue
		}
		pods++
		component := d.Spec.Template.Labels["app.kubernetes.io/component"]
		c := d.Spec.Template.Spec.Containers[0]
		env := map[string]corev1.EnvVar{}
		for _, e := range c.Env {
			env[e.Name] = e
		}
		// GOMEMLIMIT is 90% of the container's memory limit where the file
		// store's block cache (serve) or the processors' work grows
		// memory: the heap keeps under it with room for what the Go
		// runtime does not count, before the cgroup's limit.
		if component == "process" || component == "serve" {
			e := env["GOMEMLIMIT"]
			limit := c.Resources.Limits.Memory().Value()
			got, err := strconv.ParseInt(e.Value, 10, 64)
			if err != nil || limit == 0 || got != limit*9/10 {
				t.Errorf("%s: GOMEMLIMIT %q, want 90%% of the memory limit %d", o, e.Value, limit)
			}
		}
		// Ingest never holds the C4C password, nor any sink credential.
		if component == "ingest" {
			keys := map[string]bool{}
			for _, e := range c.Env {
				keys[e.Name] = true
			}
			for _, ef := range c.EnvFrom {
				if ef.SecretRef == nil {
					continue
				}
				if strings.HasSuffix(ef.SecretRef.Name, "-process") {
					t.Errorf("%s: reads the process Secret %s", o, ef.SecretRef.Name)
				}
				if s := secrets[ef.SecretRef.Name]; s != nil {
					for k := range s.StringData {
						keys[k] = true
					}
				}
			}
			for _, k := range []string{"CCRELAY_C4C_PASSWORD", "CCRELAY_CMI_PASSWORD", "CCRELAY_FORWARD_BASIC_USERS", "CCRELAY_AWS_CREDENTIALS"} {
				if keys[k] {
					t.Errorf("%s: ingest gets %s", o, k)
				}
			}
		}
	}
	if pods == 0 {
		t.Error("no ccrelay Deployment rendered")
	}
	for name, s := range secrets {
		if strings.HasSuffix(name, "-ingest") {
			if _, ok := s.StringData["CCRELAY_C4C_PASSWORD"]; ok {
				t.Errorf("Secret %s (ingest) holds CCRELAY_C4C_PASSWORD", name)
			}
		}
		if strings.HasSuffix(name, "-process") {
			// Not CCRELAY_SINCH_WEBHOOK_SECRETS (nor the messaging
			// secrets): the relay signs what it forwards to Contact Pro
			// with them, so a process relaying Sinch services needs them.
			for _, k := range []string{"CCRELAY_CONTACTPRO_API_KEYS", "CCRELAY_OAUTH_CLIENTS", "CCRELAY_CONNECT_API_KEYS"} {
				if _, ok := s.StringData[k]; ok {
					t.Errorf("Secret %s (process) holds %s", name, k)
				}
			}
		}
	}
	// NATS's monitoring port only for Prometheus.
	for _, o := range objs {
		np, ok := o.typed.(*networkingv1.NetworkPolicy)
		if !ok || np.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"] != "nats" {
			continue
		}
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if p.Port != nil && p.Port.IntValue() == 8222 {
					if len(rule.From) == 0 || rule.From[0].PodSelector == nil || rule.From[0].PodSelector.MatchLabels["app.kubernetes.io/name"] != "prometheus" {
						t.Errorf("%s: monitor port 8222 open beyond Prometheus: %+v", o, rule.From)
					}
				}
			}
		}
	}
}

// TestChartLock: Chart.lock pins the vendored NATS chart's version.
func TestChartLock(t *testing.T) {
	lock, err := os.ReadFile(filepath.Join(chartDir(t), "Chart.lock"))
	if err != nil {
		t.Fatal(err)
	}
	vendored, err := os.ReadFile(filepath.Join(chartDir(t), "charts", "nats", "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	version := ""
	for _, line := range strings.Split(string(vendored), "\n") {
		if v, ok := strings.CutPrefix(line, "version: "); ok {
			version = strings.TrimSpace(v)
		}
	}
	if version == "" || !slices.Contains(strings.Fields(string(lock)), version) {
		t.Errorf("Chart.lock does not pin the vendored nats chart's version %q:\n%s", version, lock)
	}
}

// TestOldManifests reports (without failing) what the same checks find in
// the kustomize manifests of deploy/k8s and the NATS chart rendered with
// deploy/k8s/nats-values.yaml, the deployment this chart replaces. Run with
// -v to read it.
func TestOldManifests(t *testing.T) {
	helmBin(t)
	root := repoRoot(t)
	var all []byte
	for _, f := range []string{"ingest.yaml", "process.yaml", "secret.example.yaml"} {
		b, err := os.ReadFile(filepath.Join(root, "deploy", "k8s", f))
		if err != nil {
			t.Skipf("deploy/k8s is gone: %v", err)
		}
		all = append(all, []byte("\n---\n# Source: deploy/k8s/"+f+"\n")...)
		all = append(all, b...)
	}
	all = append(all, []byte("\n---\n")...)
	all = append(all, helmTemplate(t, filepath.Join(chartDir(t), "charts", "nats"), "nats", filepath.Join(root, "deploy", "k8s", "nats-values.yaml"))...)
	objs, f := check(t, all)
	f.report(t)
	for _, o := range objs {
		if cm, ok := o.typed.(*corev1.ConfigMap); ok {
			if conf, ok := cm.Data["nats.conf"]; ok && strings.Contains(conf, `"tls"`) && !strings.Contains(conf, "ca_file") {
				t.Logf("nats: %s: route TLS without ca_file: peers' certificates fail with \"unknown authority\"", o)
			}
		}
	}
}

// TestCheckerCatches: the checks above fail on what they are meant to
// catch, so a passing TestChart means something.
func TestCheckerCatches(t *testing.T) {
	bad := []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: bad, labels: {app.kubernetes.io/name: ccrelay}}
spec:
  replicaz: 2
  selector: {matchLabels: {app: bad}}
  template:
    metadata: {labels: {app: bad}}
    spec:
      containers: [{name: c, image: x}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: root}
spec:
  replicas: 2
  selector: {matchLabels: {app: root}}
  template:
    metadata: {labels: {app: root}}
    spec:
      containers: [{name: c, image: x, securityContext: {privileged: true}}]
---
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata: {name: pm}
spec: {selector: {}}
`)
	_, f := check(t, bad)
	if len(f.decode) != 2 || !strings.Contains(f.decode[0], "replicaz") || !strings.Contains(f.decode[1], "podMetricsEndpoints") {
		t.Errorf("decode problems = %q, want the unknown field replicaz and the PodMonitor's missing podMetricsEndpoints", f.decode)
	}
	if v := f.podSecurity["Deployment root ()"]; len(v) == 0 || !strings.Contains(strings.Join(v, " "), "privileged") {
		t.Errorf("pod security = %q, want the privileged container refused", f.podSecurity)
	}
	if len(f.workload) == 0 {
		t.Error("no workload problem found in a container without requests and limits")
	}
}

// TestNotes renders NOTES.txt (helm template leaves it out) for every
// values case, from a copy of the chart where it is a template.
func TestNotes(t *testing.T) {
	helmBin(t)
	dir := filepath.Join(t.TempDir(), "ccrelay")
	if err := os.CopyFS(dir, os.DirFS(chartDir(t))); err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(dir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// .Files cannot read templates/, and tpl renders the notes as helm would.
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), notes, 0o600); err != nil {
		t.Fatal(err)
	}
	wrapper := "notes: {{ tpl (.Files.Get \"notes.txt\") . | toJson }}\n"
	if err := os.WriteFile(filepath.Join(dir, "templates", "zz-notes.yaml"), []byte(wrapper), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, files := range valuesCases(t) {
		t.Run(name, func(t *testing.T) {
			out := string(helmTemplate(t, dir, release, files...))
			i := strings.Index(out, "# Source: ccrelay/templates/zz-notes.yaml")
			if i < 0 {
				t.Fatal("NOTES.txt did not render")
			}
			rendered := out[i:]
			if j := strings.Index(rendered[1:], "\n---"); j >= 0 {
				rendered = rendered[:j+1]
			}
			if !strings.Contains(rendered, "ccrelay check") || !strings.Contains(rendered, "port-forward") {
				t.Errorf("NOTES.txt lacks the next steps:\n%s", rendered)
			}
		})
	}
}
