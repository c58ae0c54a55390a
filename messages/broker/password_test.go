package broker

import (
	"os"
	"path/filepath"
	"testing"
)

// TestEmbeddedPasswordOwnerOnly: the password file is its owner's only,
// whether it is written now over a wider file too short to keep, or was
// kept from an earlier run with a wider mode.
func TestEmbeddedPasswordOwnerOnly(t *testing.T) {
	for name, content := range map[string]string{"kept": "0123456789abcdef0123456789abcdef\n", "rewritten": "short\n"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			cfg := Config{DataDir: dir}
			if err := os.WriteFile(cfg.PasswordFile(), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(cfg.PasswordFile(), 0o644); err != nil { // past any umask
				t.Fatal(err)
			}
			pw, err := cfg.EmbeddedPassword()
			if err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(cfg.PasswordFile()); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("password file: %v %v, want mode 0600", fi.Mode().Perm(), err)
			}
			if again, err := cfg.ReadEmbeddedPassword(); err != nil || again != pw {
				t.Errorf("read back %q %v, want %q", again, err, pw)
			}
			if name == "kept" && pw != "0123456789abcdef0123456789abcdef" || name == "rewritten" && len(pw) != 48 {
				t.Errorf("password %q", pw)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("the data directory holds %v, want the password file alone", entries)
			}
		})
	}
}
