// Package layout_test holds the rules of the package layout: what may
// depend on what. README.md, "Code layout", draws the same rules.
package layout_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/ccrelay/ccrelay/"

// allowed lists, per layer, the layers its packages may depend on
// (directly or not). Layers are matched by the longest prefix.
var allowed = map[string][]string{
	// The contract and its leaves depend on nothing of ours above them.
	"messages": {"messages"},
	// Sinks are plain clients: they know secrets, not the contract.
	"sinks": {"sinks", "messages/secret"},
	// Ingest stands on the contract; it never calls a sink.
	"ingest": {"ingest", "messages"},
	// Processors stand on the contract and the sinks, never on ingest.
	"processors": {"processors", "messages", "sinks"},
	// cmd wires everything.
	"cmd": {"cmd", "ingest", "messages", "processors", "sinks"},
}

func layer(pkg string) string {
	rel := strings.TrimPrefix(pkg, module)
	top, _, _ := strings.Cut(rel, "/")
	return top
}

func within(dep string, prefixes []string) bool {
	rel := strings.TrimPrefix(dep, module)
	for _, p := range prefixes {
		if rel == p || strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	return false
}

// TestLayersNeverReachBack runs go list -deps over every package of the
// module outside test/ and checks each dependency against its layer's rule.
func TestLayersNeverReachBack(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}: {{join .Deps " "}}`,
		module+"cmd/...", module+"ingest/...", module+"messages/...", module+"processors/...", module+"sinks/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		pkg, deps, ok := strings.Cut(line, ": ")
		if !ok || !strings.HasPrefix(pkg, module) {
			continue
		}
		rule, ok := allowed[layer(pkg)]
		if !ok {
			t.Errorf("%s is in no layer; add its top-level directory to the rules (and to the README)", pkg)
			continue
		}
		checked[layer(pkg)]++
		for _, d := range strings.Fields(deps) {
			if strings.HasPrefix(d, module) && !within(d, rule) {
				t.Errorf("%s depends on %s: %s may depend only on %v", pkg, d, layer(pkg), rule)
			}
		}
	}
	for l := range allowed {
		if checked[l] == 0 {
			t.Errorf("no package of layer %s was checked:\n%s", l, out)
		}
	}
}

// TestRules checks the rule matching itself.
func TestRules(t *testing.T) {
	for _, c := range []struct {
		pkg, dep string
		ok       bool
	}{
		{module + "sinks/c4c", module + "messages/secret", true},
		{module + "sinks/c4c", module + "messages", false},
		{module + "sinks/c4c", module + "messages/secretive", false},
		{module + "processors/attachments", module + "ingest/auth", false},
		{module + "processors/attachments", module + "sinks/egress", true},
		{module + "ingest/sinch", module + "sinks/retry", false},
		{module + "messages/seal", module + "messages/secret", true},
		{module + "messages", module + "processors", false},
	} {
		if got := within(c.dep, allowed[layer(c.pkg)]); got != c.ok {
			t.Errorf("%s -> %s allowed %v, want %v", c.pkg, c.dep, got, c.ok)
		}
	}
}
