// Package layout_test holds the rules of the package layout: what may
// import what.
package layout_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayersNeverReachBack: sinks are plain clients and processors stand on
// messages and sinks; neither depends on ingest, the HTTP ingress.
func TestLayersNeverReachBack(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}: {{join .Deps " "}}`, "github.com/ccrelay/ccrelay/sinks/...", "github.com/ccrelay/ccrelay/processors/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for _, line := range strings.Split(string(out), "\n") {
		pkg, deps, ok := strings.Cut(line, ": ")
		if !ok || !(strings.HasPrefix(pkg, "github.com/ccrelay/ccrelay/sinks") || strings.HasPrefix(pkg, "github.com/ccrelay/ccrelay/processors")) {
			continue
		}
		checked++
		for _, d := range strings.Fields(deps) {
			if strings.HasPrefix(d, "github.com/ccrelay/ccrelay/ingest") {
				t.Errorf("%s depends on %s", pkg, d)
			}
		}
	}
	if checked < 8 {
		t.Fatalf("only %d packages checked:\n%s", checked, out)
	}
}
