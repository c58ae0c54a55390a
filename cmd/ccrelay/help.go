package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
)

// helpWidth is where help text wraps: wide enough for a setting's name
// and default on one line, narrow enough for a terminal beside another.
const helpWidth = 100

// printFlags writes fs's flags the way the usage lines and the README
// write them, with two dashes (Go's fs.PrintDefaults writes one, which
// the flag package accepts too but nobody is told to type), each with its
// description wrapped under it. A `NAME` in a flag's usage names its value.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprintln(w, "\nFlags:")
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		head := "  --" + f.Name
		if name != "" {
			head += " " + name
		}
		switch f.DefValue {
		case "", "false", "0", "[]":
		default:
			usage += " (default " + f.DefValue + ")"
		}
		fmt.Fprintln(w, head)
		writeWrapped(w, usage, 6)
	})
}

// printSettings lists every setting under its group: its name and default
// on one line, what it does wrapped under it.
func printSettings(w io.Writer) {
	fmt.Fprintln(w, "\nSettings (environment; any of them can also be read from a file named by <NAME>_FILE):")
	group := ""
	for _, v := range config.Variables() {
		if v.Group != group {
			group = v.Group
			fmt.Fprintf(w, "\n%s\n", group)
		}
		if v.Default == "" {
			fmt.Fprintf(w, "  %s\n", v.Name)
		} else {
			fmt.Fprintf(w, "  %-34s default %s\n", v.Name, v.Default)
		}
		writeWrapped(w, v.Help, 6)
	}
}

// writeWrapped writes text indented, wrapped at helpWidth between words.
func writeWrapped(w io.Writer, text string, indent int) {
	pad := strings.Repeat(" ", indent)
	line := pad
	for _, word := range strings.Fields(text) {
		if len(line) > indent && len(line)+1+len(word) > helpWidth {
			fmt.Fprintln(w, line)
			line = pad
		}
		if len(line) > indent {
			line += " "
		}
		line += word
	}
	if len(line) > indent {
		fmt.Fprintln(w, line)
	}
}

// flagOutput is where a command's flag set writes: the help a person asked
// for (-h, --help) goes to stdout, so 'ccrelay serve --help | less' shows
// it; usage printed because of a mistake goes to stderr with the error.
func flagOutput(args []string, stdout, stderr io.Writer) io.Writer {
	for _, a := range args {
		switch a {
		case "--":
			return stderr
		case "-h", "-help", "--help", "--h":
			return stdout
		}
	}
	return stderr
}
