// Package helmchart tests the Helm chart of deploy/helm/ccrelay without a
// cluster: it renders the chart with helm template (default values and every
// file of examples/), decodes every object strictly into the Kubernetes API
// types, runs the restricted Pod Security Standard on every pod template,
// and starts three NATS servers from the rendered NATS configuration to see
// them form a JetStream cluster, with ccrelay ingest storing an event
// through it.
package helmchart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	sigsyaml "sigs.k8s.io/yaml"
)

// release and namespace of every rendering: the release name holds the
// chart's name, so objects are named ccrelay-ingest, ccrelay-nats, ...
const (
	release   = "ccrelay"
	namespace = "ccrelay"
)

// repoRoot is the repository's top directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "deploy", "helm", "ccrelay") }

// helmBin finds helm on PATH. Outside CI a missing helm skips the test; in
// CI (.ci/run installs it) it fails.
func helmBin(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("helm")
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("helm is not on PATH and CI is set: .ci/run installs it (go install helm.sh/helm/v3/cmd/helm@v3.22.0)")
	}
	t.Skip("helm is not on PATH: install it with `go install helm.sh/helm/v3/cmd/helm@v3.22.0` (with $(go env GOPATH)/bin on PATH); in CI (CI set) this fails instead")
	return ""
}

// helmTemplate renders chart dir with the values files and returns the YAML.
func helmTemplate(t testing.TB, dir string, rel string, valuesFiles ...string) []byte {
	t.Helper()
	args := []string{"template", rel, dir, "--namespace", namespace}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	cmd := exec.Command(helmBin(t), args...) // #nosec G204 -- the test's own helm and chart paths
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// object is one rendered manifest: its source template, the strictly
// decoded typed object (nil for kinds the client-go scheme does not know)
// and the unstructured form.
type object struct {
	source string
	typed  k8sruntime.Object
	u      *unstructured.Unstructured
}

func (o object) String() string {
	return fmt.Sprintf("%s %s (%s)", o.u.GetKind(), o.u.GetName(), o.source)
}

// crdRequired lists, per custom resource kind, the fields an object must
// set: the API server would refuse it (or the operator ignore it) without.
var crdRequired = map[string][][]string{
	"monitoring.coreos.com/v1, Kind=PodMonitor": {
		{"metadata", "name"},
		{"spec", "selector"},
		{"spec", "podMetricsEndpoints"},
	},
}

var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// decodeAll splits a multi-document YAML stream and decodes every document
// strictly (unknown or duplicate fields are errors). It returns the objects
// and one problem per document that does not decode.
func decodeAll(t testing.TB, data []byte) ([]object, []string) {
	t.Helper()
	var objs []object
	var problems []string
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	source := "" // a file's later documents carry no # Source line of their own
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("split YAML: %v", err)
		}
		for _, line := range strings.Split(string(doc), "\n") {
			if s, ok := strings.CutPrefix(line, "# Source: "); ok {
				source = s
			}
		}
		js, err := sigsyaml.YAMLToJSON(doc)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: not YAML: %v", source, err))
			continue
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue // an empty document
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", source, err))
			continue
		}
		o := object{source: source, u: u}
		typed, gvk, err := strictDecoder.Decode(js, nil, nil)
		switch {
		case k8sruntime.IsNotRegisteredError(err):
			required, known := crdRequired[gvk.String()]
			if !known {
				problems = append(problems, fmt.Sprintf("%s: %s is neither a built-in type nor a custom resource this test knows", source, gvk))
			}
			for _, path := range required {
				if _, found, _ := unstructured.NestedFieldNoCopy(u.Object, path...); !found {
					problems = append(problems, fmt.Sprintf("%s: %s lacks required field %s", source, gvk.Kind, strings.Join(path, ".")))
				}
			}
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: strict decoding: %v", source, err))
			continue
		default:
			o.typed = typed
		}
		objs = append(objs, o)
	}
	return objs, problems
}

// podTemplate returns the pod template of a workload, if it has one.
func podTemplate(o k8sruntime.Object) (*metav1.ObjectMeta, *corev1.PodSpec, bool) {
	switch w := o.(type) {
	case *appsv1.Deployment:
		return &w.Spec.Template.ObjectMeta, &w.Spec.Template.Spec, true
	case *appsv1.StatefulSet:
		return &w.Spec.Template.ObjectMeta, &w.Spec.Template.Spec, true
	case *appsv1.DaemonSet:
		return &w.Spec.Template.ObjectMeta, &w.Spec.Template.Spec, true
	case *corev1.Pod:
		return &w.ObjectMeta, &w.Spec, true
	}
	return nil, nil, false
}

func isCcrelay(meta *metav1.ObjectMeta) bool {
	return meta.Labels["app.kubernetes.io/name"] == "ccrelay"
}

var restricted = psapi.LevelVersion{Level: psapi.LevelRestricted, Version: psapi.LatestVersion()}

// podSecurity runs the restricted Pod Security Standard (latest) on a pod
// template and returns one line per forbidden check.
func podSecurity(t testing.TB, meta *metav1.ObjectMeta, spec *corev1.PodSpec) []string {
	t.Helper()
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range eval.EvaluatePod(restricted, meta, spec) {
		if !r.Allowed {
			out = append(out, r.ForbiddenReason+": "+r.ForbiddenDetail)
		}
	}
	sort.Strings(out)
	return out
}

// workloadProblems checks what the chart promises of every pod it runs
// beyond Pod Security: requests and limits on every container, spread over
// nodes, probes. It returns one line per problem.
func workloadProblems(o object, meta *metav1.ObjectMeta, spec *corev1.PodSpec) []string {
	var out []string
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		r := c.Resources
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := r.Requests[name]; !ok {
				out = append(out, fmt.Sprintf("%s: container %s: no %s request", o, c.Name, name))
			}
			if _, ok := r.Limits[name]; !ok {
				out = append(out, fmt.Sprintf("%s: container %s: no %s limit", o, c.Name, name))
			}
		}
	}
	if len(spec.TopologySpreadConstraints) == 0 && (spec.Affinity == nil || spec.Affinity.PodAntiAffinity == nil) {
		if d, ok := o.typed.(*appsv1.Deployment); !ok || d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			out = append(out, fmt.Sprintf("%s: no topologySpreadConstraints or pod anti-affinity", o))
		}
	}
	if isCcrelay(meta) {
		for _, c := range spec.Containers {
			if c.LivenessProbe == nil || c.ReadinessProbe == nil {
				out = append(out, fmt.Sprintf("%s: container %s: no liveness or readiness probe", o, c.Name))
			}
		}
	}
	return out
}

// hpaTargets names the Deployments an HPA of objs scales.
func hpaTargets(objs []object) map[string]*autoscalingv2.HorizontalPodAutoscaler {
	m := map[string]*autoscalingv2.HorizontalPodAutoscaler{}
	for _, o := range objs {
		if h, ok := o.typed.(*autoscalingv2.HorizontalPodAutoscaler); ok {
			m[h.Spec.ScaleTargetRef.Kind+"/"+h.Spec.ScaleTargetRef.Name] = h
		}
	}
	return m
}

// findings is everything the checks report on one rendering.
type findings struct {
	decode      []string
	podSecurity map[string][]string // pod template -> violations
	workload    []string
	hpa         []string
}

func check(t testing.TB, data []byte) ([]object, findings) {
	t.Helper()
	objs, problems := decodeAll(t, data)
	f := findings{decode: problems, podSecurity: map[string][]string{}}
	targets := hpaTargets(objs)
	for _, o := range objs {
		if h, ok := o.typed.(*autoscalingv2.HorizontalPodAutoscaler); ok {
			if h.Spec.Behavior == nil || h.Spec.Behavior.ScaleDown == nil {
				f.hpa = append(f.hpa, fmt.Sprintf("%s: no scale-down behavior", o))
			}
		}
		meta, spec, ok := podTemplate(o.typed)
		if !ok {
			continue
		}
		if d, ok := o.typed.(*appsv1.Deployment); ok && d.Spec.Replicas != nil && targets["Deployment/"+d.Name] != nil {
			f.hpa = append(f.hpa, fmt.Sprintf("%s: sets replicas (%d) while an HPA owns its scale", o, *d.Spec.Replicas))
		}
		if v := podSecurity(t, meta, spec); len(v) > 0 {
			f.podSecurity[o.String()] = v
		}
		f.workload = append(f.workload, workloadProblems(o, meta, spec)...)
	}
	return objs, f
}

func (f findings) report(t testing.TB) {
	t.Helper()
	for _, p := range f.decode {
		t.Logf("decode: %s", p)
	}
	for pod, v := range f.podSecurity {
		for _, line := range v {
			t.Logf("pod security (restricted): %s: %s", pod, line)
		}
	}
	for _, p := range f.workload {
		t.Logf("workload: %s", p)
	}
	for _, p := range f.hpa {
		t.Logf("hpa: %s", p)
	}
}
