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

// TestSummarizeGoBench: per benchmark, the runs counted, the -N suffix
// dropped, ns/op left out and each metric's median with its spread (the
// mean of the middle two for an even count); other lines are ignored.
func TestSummarizeGoBench(t *testing.T) {
	in := strings.Join([]string{
		"goos: linux",
		"BenchmarkProcessorVsReference-2   	       1	1789773175 ns/op	        39.64 %ref	       237.1 cpu_µs/msg",
		"BenchmarkProcessorVsReference-2   	       1	1675801575 ns/op	        52.71 %ref	       194.2 cpu_µs/msg",
		"BenchmarkProcessorVsReference-2   	       1	1499625560 ns/op	        32.63 %ref	       191.6 cpu_µs/msg",
		"BenchmarkForward/contactpro=50ms/partitions=16/replicas=1-2 	 1	2371507012 ns/op	 85.38 %bound	 273.2 msg/s",
		"BenchmarkForward/contactpro=50ms/partitions=16/replicas=1-2 	 1	2363208877 ns/op	 86.11 %bound	 275.5 msg/s",
		"BenchmarkForward/contactpro=0s/partitions=16/replicas=1-2 	 1	1390317601 ns/op	 2984 msg/s",
		"PASS",
	}, "\n")
	var out bytes.Buffer
	if err := summarizeGoBench(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	want := "| benchmark | runs | median (spread) of each metric |\n|---|---|---|\n" +
		"| ProcessorVsReference | 3 | 39.64 %ref (32.63–52.71), 194.2 cpu_µs/msg (191.6–237.1) |\n" +
		"| Forward/contactpro=50ms/partitions=16/replicas=1 | 2 | 85.745 %bound (85.38–86.11), 274.35 msg/s (273.2–275.5) |\n" +
		"| Forward/contactpro=0s/partitions=16/replicas=1 | 1 | 2984 msg/s |\n"
	if got := out.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if err := summarizeGoBench(strings.NewReader("PASS\n"), &out); err == nil {
		t.Error("no benchmark lines: no error")
	}
}
