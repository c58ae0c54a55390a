// Command loadgen sends signed Sinch MESSAGE_INBOUND callbacks (about 1 KiB,
// a unique message id each) at an ingest endpoint over N keep-alive
// connections and prints throughput and latency percentiles.
//
// Without -rate it runs closed-loop (each connection sends as soon as its
// previous answer arrived): that measures capacity. With -rate it runs
// open-loop at a fixed total rate and measures each latency from the moment
// the request was due, so a stalled server cannot hide its stall
// (coordinated omission).
//
// It only ever targets the URL it is given; use loopback addresses.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ccrelay/ccrelay/test/sinchtest"
)

type result struct {
	Label    string  `json:"label"`
	Conns    int     `json:"connections"`
	Rate     float64 `json:"target_rate"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	Non2xx   int     `json:"non_2xx"`
	RPS      float64 `json:"rps"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	P999ms   float64 `json:"p999_ms"`
	MaxMs    float64 `json:"max_ms"`
	RSSMiB   float64 `json:"peak_rss_mib,omitempty"`
}

func main() {
	url := flag.String("url", "http://127.0.0.1:8080/v1/sinch/svc1", "ingest URL")
	secret := flag.String("secret", "", "Sinch webhook secret")
	conns := flag.Int("c", 32, "connections")
	dur := flag.Duration("d", 10*time.Second, "duration of the measured run")
	warm := flag.Duration("warmup", 2*time.Second, "unmeasured warm-up before the run")
	rate := flag.Float64("rate", 0, "total requests per second (0: as fast as answers come)")
	pid := flag.Int("pid", 0, "process whose peak RSS to report (0: none)")
	label := flag.String("label", "", "label for the result line")
	asJSON := flag.Bool("json", false, "print the result as JSON")
	summarize := flag.Bool("summarize", false, "read JSON results from stdin and print them as a table with throughput ratios")
	flag.Parse()
	if *summarize {
		if err := summarizeResults(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		return
	}
	if *secret == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -secret is required")
		os.Exit(2)
	}
	if !strings.HasPrefix(*url, "http://127.") && !strings.HasPrefix(*url, "http://localhost") && !strings.HasPrefix(*url, "http://[::1]") {
		fmt.Fprintln(os.Stderr, "loadgen: refusing a non-loopback target")
		os.Exit(2)
	}
	r := run(*url, *secret, *conns, *warm, *dur, *rate)
	r.Label, r.Conns, r.Rate = *label, *conns, *rate
	if *pid > 0 {
		r.RSSMiB = peakRSS(*pid)
	}
	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	fmt.Printf("%-24s conns=%-3d req=%-7d err=%-4d non2xx=%-4d %8.0f req/s  p50=%6.2fms p99=%6.2fms p999=%6.2fms max=%7.2fms rss=%.1fMiB\n",
		r.Label, r.Conns, r.Requests, r.Errors, r.Non2xx, r.RPS, r.P50ms, r.P99ms, r.P999ms, r.MaxMs, r.RSSMiB)
}

func run(url, secret string, conns int, warm, dur time.Duration, rate float64) result {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	signer := &sinchtest.Signer{Secret: secret}
	var seq atomic.Int64
	runID := strconv.FormatInt(time.Now().UnixNano(), 36)

	ctx, cancel := context.WithTimeout(context.Background(), warm+dur)
	defer cancel()
	measureFrom := time.Now().Add(warm)
	var (
		mu      sync.Mutex
		lats    []time.Duration
		errs    int
		non2xx  int
		wg      sync.WaitGroup
		started = time.Now()
	)
	interval := time.Duration(0)
	if rate > 0 {
		interval = time.Duration(float64(conns) / rate * float64(time.Second))
	}
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			local := make([]time.Duration, 0, 1<<14)
			var lerr, lnon int
			// Stagger the open-loop schedules so connections do not fire
			// in lockstep.
			due := started.Add(time.Duration(w) * interval / time.Duration(conns))
			for ctx.Err() == nil {
				if interval > 0 {
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					}
				} else {
					due = time.Now()
				}
				id := fmt.Sprintf("LG%s%09d", runID, seq.Add(1))
				body := sinchtest.InboundText(id, time.Now())
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
				req.Header = signer.Headers(body, time.Now())
				res, err := client.Do(req)
				lat := time.Since(due)
				measured := due.After(measureFrom)
				if err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					_ = res.Body.Close()
				}
				if measured && ctx.Err() == nil {
					switch {
					case err != nil:
						lerr++
					case res.StatusCode/100 != 2:
						lnon++
					default:
						local = append(local, lat)
					}
				}
				due = due.Add(interval)
			}
			mu.Lock()
			lats = append(lats, local...)
			errs += lerr
			non2xx += lnon
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	pct := func(p float64) float64 {
		if len(lats) == 0 {
			return 0
		}
		i := int(p * float64(len(lats)-1))
		return float64(lats[i]) / float64(time.Millisecond)
	}
	return result{
		Requests: len(lats) + errs + non2xx, Errors: errs, Non2xx: non2xx,
		RPS:   float64(len(lats)) / dur.Seconds(),
		P50ms: pct(0.50), P99ms: pct(0.99), P999ms: pct(0.999), MaxMs: pct(1),
	}
}

// peakRSS reads the high-water mark of a process's resident set (Linux).
func peakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// summarizeResults prints results (JSON lines, the first being the
// reference) as a Markdown table and each closed-loop run's throughput as a
// share of the reference's.
func summarizeResults(in io.Reader, out io.Writer) error {
	dec := json.NewDecoder(in)
	var rows []result
	for {
		var r result
		if err := dec.Decode(&r); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return fmt.Errorf("no results")
	}
	fmt.Fprintln(out, "| run | conns | req/s | p50 ms | p99 ms | p99.9 ms | peak RSS MiB | errors / non-2xx |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(out, "| %s | %d | %.0f | %.2f | %.2f | %.2f | %.1f | %d / %d |\n", r.Label, r.Conns, r.RPS, r.P50ms, r.P99ms, r.P999ms, r.RSSMiB, r.Errors, r.Non2xx)
	}
	ref := rows[0]
	for _, r := range rows[1:] {
		if r.Rate == 0 && ref.RPS > 0 {
			fmt.Fprintf(out, "%s: %.0f%% of %s throughput\n", r.Label, 100*r.RPS/ref.RPS, ref.Label)
		}
	}
	return nil
}
