package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestSummarizeSharesOfEachReference: medians per label, and every
// closed-loop run against the plain reference and the one paying the
// contract; open-loop runs get no share.
func TestSummarizeSharesOfEachReference(t *testing.T) {
	in := strings.Join([]string{
		`{"label":"reference","rps":10000}`, `{"label":"reference","rps":9000}`, `{"label":"reference","rps":11000}`,
		`{"label":"reference + contract","rps":8000}`,
		`{"label":"ccrelay ingest","rps":7000,"cpu_us_per_request":{"handler":120}}`,
		`{"label":"ccrelay ingest @4000/s","rps":4000,"target_rate":4000}`,
	}, "\n")
	var out bytes.Buffer
	if err := summarizeResults(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"| reference | 3 | 0 | 10000 (9000–11000) |",
		"| ccrelay ingest | 1 | 0 | 7000 | 0.00 | 0.00 | 0.00 | 0.0 | handler 120 |",
		"ccrelay ingest: 70% of reference, 88% of reference + contract throughput (medians)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"reference + contract: ", "@4000/s: "} {
		if strings.Contains(got, unwanted) {
			t.Errorf("output has a share for %q:\n%s", unwanted, got)
		}
	}
}
