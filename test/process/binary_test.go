// Package process_test runs the ccrelay binary as a separate OS process, as
// operators do: commands, exit codes, configuration errors, and shutdown
// under load.
package process_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var binary string // built once in TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ccrelay-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "ccrelay")
	// -race where the tests run with it, so the binary is checked too.
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, "github.com/ccrelay/ccrelay/cmd/ccrelay")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build ccrelay: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running ccrelay.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	logs   bytes.Buffer
	out    bytes.Buffer // stdout, guarded by mu
	ready  chan map[string]any
	exited chan error
}

// start runs ccrelay with args and exactly env (plus PATH and HOME), in
// dir, and waits for its "ccrelay ready" log line.
func start(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, ready: make(chan map[string]any, 1), exited: make(chan error, 1)}
	cmd.Stdout = lockedWriter{&p.mu, &p.out}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			p.mu.Lock()
			p.logs.Write(line)
			p.logs.WriteByte('\n')
			p.mu.Unlock()
			var m map[string]any
			if json.Unmarshal(line, &m) == nil && m["msg"] == "ccrelay ready" {
				p.ready <- m
			}
		}
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	select {
	case m := <-p.ready:
		p.ready <- m
	case err := <-p.exited:
		t.Fatalf("ccrelay exited before ready: %v\n%s", err, p.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("ccrelay not ready\n%s", p.log())
	}
	return p
}

// stdout is what the process printed to standard output so far.
func (p *proc) stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *proc) addr(key string) string {
	m := <-p.ready
	p.ready <- m
	a, _ := m[key].(string)
	return "http://" + strings.Replace(a, "[::]", "127.0.0.1", 1)
}

// stop sends sig and waits for the exit.
func (p *proc) stop(t *testing.T, sig os.Signal) error {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("ccrelay did not stop\n%s", p.log())
	}
	return nil
}

func runCmd(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func TestCommands(t *testing.T) {
	for _, c := range []struct {
		args   []string
		env    []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"version"}, nil, 0, "ccrelay ", ""},
		{[]string{"--help"}, nil, 0, "ccrelay serve", ""},
		{[]string{"serve", "--help"}, nil, 0, "CCRELAY_SINCH_WEBHOOK_SECRETS", ""},
		{[]string{"ingest", "--help"}, nil, 0, "CCRELAY_NATS_URL", ""},
		{[]string{"version", "--help"}, nil, 0, "Usage: ccrelay version", ""},
		{nil, nil, 2, "", "Usage:"},
		{[]string{"frobnicate"}, nil, 2, "", `unknown command "frobnicate"`},
		{[]string{"serve", "extra"}, nil, 2, "", "unexpected argument"},
		{[]string{"serve", "--nope"}, nil, 2, "", "flag provided but not defined"},
		{[]string{"reconcile"}, nil, 2, "", "Commands:\n  summaries "},
		{[]string{"reconcile", "--help"}, nil, 0, "Usage: ccrelay reconcile summaries", ""},
		{[]string{"reconcile", "summaries", "--help"}, nil, 0, "\n  --dry-run\n", ""},
		{[]string{"reconcile", "summaries"}, nil, 2, "", "--since is required"},
		{[]string{"reconcile", "summaries", "--since", "yesterday"}, nil, 2, "", "--since: "},
		{[]string{"ingest"}, nil, 2, "", "CCRELAY_NATS_URL: required by 'ccrelay ingest'"},
		{[]string{"serve"}, []string{"CCRELAY_STREAM_MAX_AGE=forever"}, 2, "", "ccrelay: configuration: CCRELAY_STREAM_MAX_AGE: "},
		{[]string{"serve"}, []string{"CCRELAY_PPROF_ADDR=0.0.0.0:6060"}, 2, "", "ccrelay: configuration: CCRELAY_PPROF_ADDR: "},
		{[]string{"serve"}, []string{"CCRELAY_NATS_LISTEN=0.0.0.0:4222"}, 2, "", "ccrelay: configuration: CCRELAY_NATS_LISTEN: "},
		{[]string{"serve"}, []string{"CCRELAY_HTTP_PORT=80"}, 2, "", "CCRELAY_HTTP_PORT: unknown setting"},
	} {
		code, out, errOut := runCmd(t, c.env, c.args...)
		if code != c.code || !strings.Contains(out, c.stdout) || !strings.Contains(errOut, c.stderr) {
			t.Errorf("%v: exit %d\nstdout: %s\nstderr: %s", c.args, code, out, errOut)
		}
		if c.code == 2 && len(c.env) > 0 && strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: configuration error is not one line: %q", c.args, errOut)
		}
	}
}
