// Package expect compares several values at once in tests and names each
// one that differs, so a failure says which condition broke rather than
// printing a whole struct.
package expect

import (
	"reflect"
	"testing"
)

// Check is one named comparison.
type Check struct {
	Name      string
	Got, Want any
}

// All reports every check whose Got is not deeply equal to its Want, each
// by name, and returns whether all matched. Call t.FailNow after it when
// the rest of the test depends on the values.
func All(t testing.TB, checks ...Check) bool {
	t.Helper()
	ok := true
	for _, c := range checks {
		if !reflect.DeepEqual(c.Got, c.Want) {
			t.Errorf("%s: got %#v, want %#v", c.Name, c.Got, c.Want)
			ok = false
		}
	}
	return ok
}
