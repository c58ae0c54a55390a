package forward_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/processors/forward"
)

// TestParkAfter: the bound is attempts, an age, both, or never, and per
// destination in CCRELAY_FORWARD_PARK_AFTER_BY; what is refused says why,
// and a validation error names the variable.
func TestParkAfter(t *testing.T) {
	for _, c := range []struct {
		in   string
		want forward.Bound
	}{
		{"attempts=20,age=15m", forward.Bound{Attempts: 20, Age: 15 * time.Minute}},
		{"age=2m;attempts=5", forward.Bound{Attempts: 5, Age: 2 * time.Minute}},
		{"attempts=1", forward.Bound{Attempts: 1}},
		{" age=1h ", forward.Bound{Age: time.Hour}},
		{"never", forward.Bound{}},
	} {
		var b forward.Bound
		if err := b.UnmarshalText([]byte(c.in)); err != nil || b != c.want {
			t.Errorf("%q: %+v %v, want %+v", c.in, b, err, c.want)
		}
	}
	for _, bad := range []string{"", "attempts=0", "attempts=-1", "attempts=x", "age=500ms", "age=forever", "tries=3", "attempts=3,attempts=4", "attempts", "never,attempts=3"} {
		var b forward.Bound
		if err := b.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q accepted as %+v", bad, b)
		}
	}
	var by forward.Bounds
	if err := by.UnmarshalText([]byte("twilio/us=attempts=5;age=2m, sinch/eu=never")); err != nil {
		t.Fatal(err)
	}
	if by["twilio/us"] != (forward.Bound{Attempts: 5, Age: 2 * time.Minute}) || !by["sinch/eu"].Never() || len(by) != 2 {
		t.Errorf("parsed %+v", by)
	}
	for _, bad := range []string{"twilio/us=attempts=5,age=2m", "twilio/us", "telegram/x=never", "twilio/us=never,twilio/us=attempts=2"} {
		if err := by.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}

	c := config(t, "sinch/eu=https://cp.example/s,twilio/us=https://cp.example/t", "")
	c.ParkAfter = forward.Bound{Attempts: 20}
	c.ParkAfterBy = forward.Bounds{"twilio/us": {Age: time.Minute}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.ParkBound("twilio/us") != (forward.Bound{Age: time.Minute}) || c.ParkBound("sinch/eu") != (forward.Bound{Attempts: 20}) {
		t.Errorf("bounds %v and %v", c.ParkBound("twilio/us"), c.ParkBound("sinch/eu"))
	}
	c.ParkAfterBy = forward.Bounds{"wavy/br": {Attempts: 1}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "CCRELAY_FORWARD_PARK_AFTER_BY") {
		t.Errorf("a bound for a destination without a URL: %v", err)
	}
}
