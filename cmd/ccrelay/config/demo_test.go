package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
)

// TestDemoListensOnLoopback: --demo's listeners answer this machine only,
// on the ports they have without it, unless the user chose an address
// (directly or with _FILE): the demo fills gaps only.
func TestDemoListensOnLoopback(t *testing.T) {
	d, err := config.NewDemo(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(d.Environ(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Ingest.HTTP.Addr != "127.0.0.1:8080" || cfg.Process.MetricsAddr != "127.0.0.1:9090" {
		t.Errorf("demo listens on %q and %q, want 127.0.0.1:8080 and 127.0.0.1:9090", cfg.Ingest.HTTP.Addr, cfg.Process.MetricsAddr)
	}
	env := d.Environ([]string{"CCRELAY_HTTP_ADDR=:18080", "CCRELAY_METRICS_ADDR_FILE=/run/secrets/addr"})
	for _, kv := range env {
		if strings.HasPrefix(kv, "CCRELAY_HTTP_ADDR=") && kv != "CCRELAY_HTTP_ADDR=:18080" || strings.HasPrefix(kv, "CCRELAY_METRICS_ADDR=") {
			t.Errorf("the demo overrode the user's address: %s", kv)
		}
	}
	if !slices.Contains(env, "CCRELAY_HTTP_ADDR=:18080") {
		t.Errorf("the user's address is gone: %v", env)
	}
}

// TestDemoFilesOwnerOnly: the data directory and demo.env are their
// owner's only, also when they existed before with wider modes.
func TestDemoFilesOwnerOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(dir, "demo.env")
	if err := os.WriteFile(old, []byte("stale\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// chmod: a umask may have narrowed the modes asked for above.
	for p, m := range map[string]os.FileMode{dir: 0o755, old: 0o644} {
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := config.PrivateDir(dir); err != nil {
		t.Fatal(err)
	}
	d, err := config.NewDemo(nil)
	if err != nil {
		t.Fatal(err)
	}
	path, err := d.WriteEnvFile(dir, "http://127.0.0.1:8080", "nats://127.0.0.1:4222", "ccrelay", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if path != old {
		t.Errorf("wrote %s, want %s", path, old)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, old: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %v", p, fi.Mode().Perm(), err, want)
		}
	}
	b, _ := os.ReadFile(old)
	if !strings.Contains(string(b), "demo_sinch_secret='"+d.SinchSecret+"'") {
		t.Errorf("demo.env holds:\n%s", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the data directory holds %d entries, want demo.env alone: %v", len(entries), entries)
	}
	// A directory that does not exist yet is made private.
	fresh := filepath.Join(t.TempDir(), "a", "data")
	if err := config.PrivateDir(fresh); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("new data directory: %v %v, want 0700", fi, err)
	}
}
