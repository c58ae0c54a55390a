// Command testsummary reads 'go test -json' on standard input, prints the
// tests' output as plain 'go test -v' would, and closes with one line
// "N passed, N failed, N skipped", so that a CI log says how large a run
// was and what broke without scrolling. It exits 1 when a test or a
// package failed (a build error fails its package), else 0.
//
//	go test -json ./... | go run ./test/testsummary
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
)

// event is one line of 'go test -json' (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

type summary struct {
	passed, failed, skipped int
	failedTests             []string
	failedPackages          []string
}

func main() {
	s, err := read(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	os.Exit(s.report(os.Stdout))
}

// read copies the tests' output to w and counts the outcomes. Lines that
// are not JSON (a toolchain message) are copied as they are.
func read(r io.Reader, w io.Writer) (summary, error) {
	var s summary
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			fmt.Fprintln(w, sc.Text())
			continue
		}
		if e.Output != "" {
			fmt.Fprint(w, e.Output)
		}
		switch {
		case e.Test == "" && e.Action == "fail":
			s.failedPackages = append(s.failedPackages, e.Package)
		case e.Test == "":
		case e.Action == "pass":
			s.passed++
		case e.Action == "fail":
			s.failed++
			s.failedTests = append(s.failedTests, e.Package+" "+e.Test)
		case e.Action == "skip":
			s.skipped++
		}
	}
	return s, sc.Err()
}

// report prints the failures and the closing line, and returns the exit
// code.
func (s summary) report(w io.Writer) int {
	if len(s.failedTests) > 0 || len(s.failedPackages) > 0 {
		fmt.Fprintln(w, "\nFailed:")
		for _, t := range s.failedTests {
			fmt.Fprintln(w, "  "+t)
		}
		for _, p := range s.failedPackages {
			if !slices.ContainsFunc(s.failedTests, func(t string) bool { return len(t) > len(p) && t[:len(p)+1] == p+" " }) {
				fmt.Fprintln(w, "  "+p+" (package: build error, panic or timeout)")
			}
		}
	}
	fmt.Fprintf(w, "\n%d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
	if s.failed > 0 || len(s.failedPackages) > 0 {
		return 1
	}
	return 0
}
