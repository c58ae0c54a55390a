package expect_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/test/expect"
)

// recorder captures what All reports instead of failing the test.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestAllNamesEachMismatch(t *testing.T) {
	r := &recorder{TB: t}
	ok := expect.All(r,
		expect.Check{Name: "status", Got: 200, Want: 200},
		expect.Check{Name: "code", Got: "a", Want: "b"},
		expect.Check{Name: "list", Got: []string{"x"}, Want: []string{"x"}},
		expect.Check{Name: "count", Got: 1, Want: int64(1)},
	)
	if ok {
		t.Error("All reported success with two mismatches")
	}
	if len(r.errors) != 2 {
		t.Fatalf("reported %q, want two mismatches", r.errors)
	}
	if want := `code: got "a", want "b"`; r.errors[0] != want {
		t.Errorf("first report %q, want %q", r.errors[0], want)
	}
	if !strings.HasPrefix(r.errors[1], "count: ") {
		t.Errorf("second report %q, want count (an int is not an int64)", r.errors[1])
	}
	if !expect.All(&recorder{TB: t}, expect.Check{Name: "same", Got: map[string]int{"a": 1}, Want: map[string]int{"a": 1}}) {
		t.Error("equal maps reported as different")
	}
}
