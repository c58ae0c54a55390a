package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestSummary(t *testing.T) {
	cases := []struct {
		name, in string
		code     int
		last     string
		lists    []string
	}{
		{"all passed", `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p","Test":"TestA/sub"}
{"Action":"skip","Package":"p","Test":"TestB"}
{"Action":"pass","Package":"p"}
`, 0, "2 passed, 0 failed, 1 skipped", nil},
		{"a test failed", `{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"fail","Package":"p","Test":"TestB"}
{"Action":"fail","Package":"p"}
`, 1, "1 passed, 1 failed, 0 skipped", []string{"  p TestB"}},
		{"a package did not build", `{"Action":"output","Package":"q","Output":"FAIL\tq [build failed]\n"}
{"Action":"fail","Package":"q"}
`, 1, "0 passed, 0 failed, 0 skipped", []string{"  q (package: build error, panic or timeout)"}},
		{"not JSON is copied", "go: downloading x v1\n", 0, "0 passed, 0 failed, 0 skipped", []string{"go: downloading x v1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			s, err := read(strings.NewReader(c.in), &out)
			if err != nil {
				t.Fatal(err)
			}
			if code := s.report(&out); code != c.code {
				t.Errorf("exit code %d, want %d", code, c.code)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if got := lines[len(lines)-1]; got != c.last {
				t.Errorf("closing line %q, want %q", got, c.last)
			}
			for _, l := range c.lists {
				if !strings.Contains(out.String(), l+"\n") {
					t.Errorf("output lacks %q:\n%s", l, out.String())
				}
			}
		})
	}
}
