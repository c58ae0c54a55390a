package main

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
)

// oneDash is one of ccrelay's flags written as Go's flag package prints
// it (other programs' flags, such as openssl's -base64, may appear).
var oneDash = regexp.MustCompile(`(^|[^-\w])-(processors|demo|processor|json|seq|all|since|until|dry-run|subject|force|help)\b`)

// checkHelpText fails for a flag written with one dash and for a line
// wider than helpWidth.
func checkHelpText(t *testing.T, what, text string) {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if m := oneDash.FindString(line); m != "" {
			t.Errorf("%s: %q is written with one dash: %q", what, strings.TrimSpace(m), line)
		}
		if n := utf8.RuneCountInString(line); n > helpWidth {
			t.Errorf("%s: %d columns: %q", what, n, line)
		}
	}
}

// serve, ingest and process --help list every setting under its group,
// with its default and what it does.
func TestSettingsHelp(t *testing.T) {
	for _, cmd := range []string{"serve", "ingest", "process"} {
		// Asked-for help goes to stdout, so it can be paged and grepped.
		code, help, errOut := runCLI([]string{cmd, "--help"}, nil)
		if code != 0 || errOut != "" {
			t.Fatalf("%s --help: exit %d, stderr %q", cmd, code, errOut)
		}
		checkHelpText(t, cmd+" --help", help)
		// What each setting does, rewrapped, follows its name.
		flat := strings.Join(strings.Fields(help), " ")
		headed := map[string]bool{}
		for _, v := range config.Variables() {
			head := v.Name
			if v.Default != "" {
				head += " default " + v.Default
			}
			if !strings.Contains(flat, " "+head+" "+strings.Join(strings.Fields(v.Help), " ")) {
				t.Errorf("%s --help: lacks %q with its help %q", cmd, head, v.Help)
			}
			if !headed[v.Group] && !strings.Contains(help, "\n"+v.Group+"\n") {
				t.Errorf("%s --help: no heading %q", cmd, v.Group)
			}
			headed[v.Group] = true
		}
	}
	_, help, _ := runCLI([]string{"serve", "--help"}, nil)
	for _, want := range []string{"Usage: ccrelay serve", "\n  --processors NAMES\n", "\n  --demo\n"} {
		if !strings.Contains(help, want) {
			t.Errorf("serve --help lacks %q", want)
		}
	}
}

// Each command, and each command of dlq and reconcile, has its own help
// with its own flags.
func TestCommandHelp(t *testing.T) {
	for _, c := range []struct {
		args    []string
		code    int
		want    []string
		notWant []string
	}{
		{[]string{"dlq", "list", "--help"}, 0,
			[]string{"Usage: ccrelay dlq list [--processor NAME] [--json]", "Lists the dead letters", "\n  --processor NAME\n", "\n  --json\n", "CCRELAY_NATS_LISTEN"},
			[]string{"--seq", "--all", "requeue"}},
		{[]string{"dlq", "requeue", "--help"}, 0,
			[]string{"ccrelay dlq requeue --seq N", "ccrelay dlq requeue --all --processor NAME", "Stores dead letters again", "\n  --seq N\n", "\n  --all\n", "\n  --processor NAME\n"},
			[]string{"--json", "Lists the dead letters"}},
		{[]string{"dlq", "--help"}, 0, []string{"Commands:", "  list ", "  requeue ", "'ccrelay dlq <command> --help'"}, nil},
		{[]string{"dlq"}, 2, []string{"Commands:", "  list ", "  requeue "}, nil},
		{[]string{"dlq", "purge"}, 2, []string{`unknown command "purge"`, "Commands:"}, nil},
		{[]string{"relay", "held", "--help"}, 0,
			[]string{"Usage: ccrelay relay held [--destination KEY] [--json]", "Lists the parked conversations", "\n  --destination KEY\n", "\n  --json\n", "CCRELAY_NATS_LISTEN"},
			[]string{"--wait", "--all"}},
		{[]string{"relay", "release", "--help"}, 0,
			[]string{"ccrelay relay release CONVERSATION...", "ccrelay relay release --all --destination KEY", "in order", "\n  --wait DURATION\n", "\n  --all\n"},
			[]string{"--json"}},
		{[]string{"relay", "drop", "--help"}, 0,
			[]string{"ccrelay relay drop CONVERSATION...", "dead letters", "ccrelay dlq requeue", "\n  --all\n"},
			[]string{"--json", "--wait"}},
		{[]string{"relay"}, 2, []string{"Commands:", "  held ", "  release ", "  drop "}, nil},
		{[]string{"relay", "unpark"}, 2, []string{`unknown command "unpark"`, "Commands:"}, nil},
		{[]string{"reconcile", "summaries", "--help"}, 0,
			[]string{"Usage: ccrelay reconcile summaries --since TIME", "Lists the Contact Lens analysis files", "\n  --since TIME\n", "\n  --until TIME\n", "\n  --dry-run\n"},
			nil},
		{[]string{"reconcile"}, 2,
			[]string{"Commands:\n  summaries   find the calls whose Contact Lens analysis file was written", "'ccrelay reconcile <command> --help'"},
			[]string{"what?"}},
		{[]string{"reconcile", "--help"}, 0, []string{"Commands:\n  summaries "}, nil},
		{[]string{"reconcile", "attachments"}, 2, []string{`unknown command "attachments"`, "  summaries "}, nil},
		{[]string{"replay", "--help"}, 0,
			[]string{"Usage: ccrelay replay --subject FILTER", "\n  --subject FILTER\n", "\n  --since TIME\n", "\n  --until TIME\n", "\n  --dry-run\n", "\n  --force\n", "\n  --processors NAMES\n"},
			nil},
		{[]string{"trace", "--help"}, 0,
			[]string{"Usage: ccrelay trace [--since TIME]", "Sinch message, contact or conversation id", "\n  --since TIME\n", "\n  --json\n", "\n  --body\n", "\n  --limit N\n", "\n  --timeout D\n", "CCRELAY_NATS_LISTEN"},
			nil},
		{[]string{"trace"}, 2, []string{"give the ID to trace", "Usage: ccrelay trace"}, nil},
		{[]string{"check", "--help"}, 0, []string{"Usage: ccrelay check", "CCRELAY_NATS_LISTEN"}, []string{"Flags:"}},
		{[]string{"version", "--help"}, 0, []string{"Usage: ccrelay version"}, []string{"Flags:"}},
	} {
		code, out, errOut := runCLI(c.args, nil)
		text := out + errOut
		if code != c.code {
			t.Errorf("%v: exit %d, want %d\n%s", c.args, code, c.code, text)
		}
		for _, w := range c.want {
			if !strings.Contains(text, w) {
				t.Errorf("%v: lacks %q\n%s", c.args, w, text)
			}
		}
		for _, w := range c.notWant {
			if strings.Contains(text, w) {
				t.Errorf("%v: has %q\n%s", c.args, w, text)
			}
		}
		checkHelpText(t, strings.Join(c.args, " "), text)
		if asked := c.code == 0; asked && (out == "" || errOut != "") {
			t.Errorf("%v: asked-for help on stderr (%d bytes) instead of stdout (%d bytes)", c.args, len(errOut), len(out))
		}
	}
	// A mistake's usage goes to stderr, with the error.
	code, out, errOut := runCLI([]string{"dlq", "list", "--bogus"}, nil)
	if code != 2 || out != "" || !strings.Contains(errOut, "Usage: ccrelay dlq list") {
		t.Errorf("dlq list --bogus: exit %d, stdout %q, stderr %q; want 2 and the usage on stderr", code, out, errOut)
	}
}
