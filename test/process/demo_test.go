package process_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestServeDemoOwnerOnly: 'ccrelay serve --demo' with no address set
// listens on 127.0.0.1 only (ingest on 8080, metrics on 9090, as without
// --demo), and a data directory, demo.env and NATS password left by an
// earlier run with wider modes end up their owner's only.
func TestServeDemoOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"demo.env": "demo_url='stale'\n", "nats-password": "0123456789abcdef0123456789abcdef\n"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(data, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// chmod: the umask may have narrowed the modes asked for above.
	for p, m := range map[string]os.FileMode{data: 0o755, filepath.Join(data, "demo.env"): 0o644, filepath.Join(data, "nats-password"): 0o644} {
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	p := start(t, dir, []string{"CCRELAY_NATS_LISTEN=127.0.0.1:0"}, "serve", "--demo")
	ready := <-p.ready
	p.ready <- ready
	if ready["http"] != "127.0.0.1:8080" || ready["metrics"] != "127.0.0.1:9090" {
		t.Errorf("demo listens on %v and %v, want 127.0.0.1:8080 and 127.0.0.1:9090", ready["http"], ready["metrics"])
	}
	envFile := filepath.Join(data, "demo.env")
	waitFor(t, "demo.env rewritten", func() bool {
		b, _ := os.ReadFile(envFile)
		return strings.Contains(string(b), "demo_url='http://127.0.0.1:8080'")
	})
	for p, want := range map[string]os.FileMode{data: 0o700, envFile: 0o600, filepath.Join(data, "nats-password"): 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %v", p, fi.Mode().Perm(), err, want)
		}
	}
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.log())
	}
}
