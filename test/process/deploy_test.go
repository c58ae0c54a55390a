package process_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestComposeConfig validates docker-compose.yml with the compose tool.
func TestComposeConfig(t *testing.T) {
	compose := needTool(t, "docker-compose")
	dir := t.TempDir()
	for src, dst := range map[string]string{
		repoFile("docker-compose.yml"):            "docker-compose.yml",
		repoFile("deploy", "compose.env.example"): ".env",
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		_ = os.WriteFile(filepath.Join(dir, dst), b, 0o644)
	}
	out, err := exec.Command(compose, "-f", filepath.Join(dir, "docker-compose.yml"), "config").CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	for _, want := range []string{"nats-1", "nats-2", "nats-3", "ingest-1", "ingest-2", "process", "prometheus", "grafana", "CCRELAY_STREAM_REPLICAS: '3'"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("resolved compose file lacks %q", want)
		}
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
}

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
		}
	}
	for kind, n := range map[string]int{"Deployment": 2, "Service": 2, "HorizontalPodAutoscaler": 2, "PodDisruptionBudget": 2, "Secret": 1} {
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
