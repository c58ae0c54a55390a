// Package clocktest runs date-dependent tests at the instants that break
// them (midnight, month end, year end) whatever the hour CI runs them.
package clocktest

import "time"

// At is a clock that reads instant now and runs on at the machine's pace:
// leases still expire and timeouts still pass, but every date the code
// under test derives is the one the test chose.
func At(instant time.Time) func() time.Time {
	offset := time.Until(instant)
	return func() time.Time { return time.Now().Add(offset) }
}

// Instant is a named moment a test runs at.
type Instant struct {
	Name string
	At   time.Time
}

// Edges are the calendar's edges in UTC, where the day folders of a window
// change under a running test: half a second before midnight (the test
// crosses it), midnight itself, the first hour of a day (the window reaches
// into yesterday), a month's and a year's last minute, a leap day, and an
// ordinary midday for contrast.
func Edges() []Instant {
	return []Instant{
		{"before_midnight", time.Date(2026, 6, 15, 23, 59, 59, 500_000_000, time.UTC)},
		{"midnight", time.Date(2026, 6, 16, 0, 0, 0, 0, time.UTC)},
		{"half_past_midnight", time.Date(2026, 6, 16, 0, 30, 0, 0, time.UTC)},
		{"month_end", time.Date(2026, 11, 30, 23, 59, 30, 0, time.UTC)},
		{"year_end", time.Date(2026, 12, 31, 23, 59, 0, 0, time.UTC)},
		{"leap_day", time.Date(2028, 2, 29, 23, 59, 45, 0, time.UTC)},
		{"midday", time.Date(2026, 6, 16, 12, 0, 0, 0, time.UTC)},
	}
}
