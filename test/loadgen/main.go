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
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
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
	// CPU is each watched process's CPU time per answered request in the
	// measured window, in microseconds.
	CPU map[string]float64 `json:"cpu_us_per_request,omitempty"`
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
	gobench := flag.Bool("gobench", false, "read 'go test -bench' output from stdin and print each benchmark's metrics as medians with their spread")
	cpu := flag.String("cpu", "", "processes whose CPU per request to report: name=pid,name2=pid2")
	freePort := flag.Bool("freeport", false, "print a free loopback TCP port and exit")
	flag.Parse()
	if *freePort {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
		_ = l.Close()
		return
	}
	if *summarize || *gobench {
		sum := summarizeResults
		if *gobench {
			sum = summarizeGoBench
		}
		if err := sum(os.Stdin, os.Stdout); err != nil {
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
	watched, err := parseWatched(*cpu)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: -cpu:", err)
		os.Exit(2)
	}
	// CPU is sampled when the measured window starts, as latencies are.
	started := make(chan map[string]time.Duration, 1)
	go func() {
		time.Sleep(*warm)
		started <- cpuTimes(watched)
	}()
	r := run(*url, *secret, *conns, *warm, *dur, *rate)
	r.Label, r.Conns, r.Rate = *label, *conns, *rate
	before := <-started
	if answered := r.Requests - r.Errors - r.Non2xx; answered > 0 && len(watched) > 0 {
		r.CPU = map[string]float64{}
		for name, t := range cpuTimes(watched) {
			r.CPU[name] = float64((t - before[name]).Microseconds()) / float64(answered)
		}
	}
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

func parseWatched(v string) (map[string]int, error) {
	out := map[string]int{}
	if v == "" {
		return out, nil
	}
	for _, kv := range strings.Split(v, ",") {
		name, pid, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(pid)
		if !ok || err != nil || name == "" {
			return nil, fmt.Errorf("%q is not name=pid", kv)
		}
		out[name] = n
	}
	return out, nil
}

// cpuTimes reads each process's user+system CPU time from /proc (Linux;
// clock ticks of 10 ms).
func cpuTimes(watched map[string]int) map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, pid := range watched {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses and may
		// hold spaces: utime and stime are the 12th and 13th.
		rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
		f := strings.Fields(rest)
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[name] = time.Duration(ut+st) * 10 * time.Millisecond
	}
	return out
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

// summarizeResults reads results (JSON lines; several runs of one label are
// repeats) and prints, per label in order of appearance, the median of
// each figure with the spread of the runs, then each closed-loop label's
// median throughput as a share of the first label's (the reference).
func summarizeResults(in io.Reader, out io.Writer) error {
	dec := json.NewDecoder(in)
	byLabel := map[string][]result{}
	var order []string
	for {
		var r result
		if err := dec.Decode(&r); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		if _, ok := byLabel[r.Label]; !ok {
			order = append(order, r.Label)
		}
		byLabel[r.Label] = append(byLabel[r.Label], r)
	}
	if len(order) == 0 {
		return fmt.Errorf("no results")
	}
	med := func(rs []result, f func(result) float64) (m, lo, hi float64) {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		sort.Float64s(v)
		return v[len(v)/2], v[0], v[len(v)-1]
	}
	spread := func(m, lo, hi float64, format string) string {
		if lo == hi {
			return fmt.Sprintf(format, m)
		}
		return fmt.Sprintf(format+" ("+format+"–"+format+")", m, lo, hi)
	}
	fmt.Fprintln(out, "| run | runs | conns | req/s | p50 ms | p99 ms | p99.9 ms | peak RSS MiB | CPU µs/req | errors / non-2xx |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|---|")
	rps := map[string]float64{}
	for _, label := range order {
		rs := byLabel[label]
		m, lo, hi := med(rs, func(r result) float64 { return r.RPS })
		rps[label] = m
		p50, _, _ := med(rs, func(r result) float64 { return r.P50ms })
		p99, p99lo, p99hi := med(rs, func(r result) float64 { return r.P99ms })
		p999, _, _ := med(rs, func(r result) float64 { return r.P999ms })
		_, _, rss := med(rs, func(r result) float64 { return r.RSSMiB })
		var cpuNames []string
		for name := range rs[0].CPU {
			cpuNames = append(cpuNames, name)
		}
		sort.Strings(cpuNames)
		var cpu []string
		for _, name := range cpuNames {
			c, _, _ := med(rs, func(r result) float64 { return r.CPU[name] })
			cpu = append(cpu, fmt.Sprintf("%s %.0f", name, c))
		}
		errs, non := 0, 0
		for _, r := range rs {
			errs += r.Errors
			non += r.Non2xx
		}
		fmt.Fprintf(out, "| %s | %d | %d | %s | %.2f | %s | %.2f | %.1f | %s | %d / %d |\n", label, len(rs), rs[0].Conns,
			spread(m, lo, hi, "%.0f"), p50, spread(p99, p99lo, p99hi, "%.2f"), p999, rss, strings.Join(cpu, ", "), errs, non)
	}
	// The first label is the reference; further closed-loop labels named
	// "reference ..." (the reference paying ccrelay's contract) are
	// references too, and each other closed-loop label is shown against
	// all of them.
	refs := []string{order[0]}
	for _, label := range order[1:] {
		if strings.HasPrefix(label, "reference") && byLabel[label][0].Rate == 0 {
			refs = append(refs, label)
		}
	}
	for _, label := range order[1:] {
		if byLabel[label][0].Rate != 0 || slices.Contains(refs, label) {
			continue
		}
		var shares []string
		for _, ref := range refs {
			if rps[ref] > 0 {
				shares = append(shares, fmt.Sprintf("%.0f%% of %s", 100*rps[label]/rps[ref], ref))
			}
		}
		if len(shares) > 0 {
			fmt.Fprintf(out, "%s: %s throughput (medians)\n", label, strings.Join(shares, ", "))
		}
	}
	return nil
}

// summarizeGoBench reads 'go test -bench' output (several runs of one
// benchmark are repeats, as -count gives them) and prints, per benchmark in
// order of appearance, the median of each metric it reported with the
// spread of the runs. ns/op is left out: with -benchtime 1x it is the
// run's length, which the benchmarks report better as a rate.
func summarizeGoBench(in io.Reader, out io.Writer) error {
	type bench struct {
		name  string
		runs  int
		units []string
		vals  map[string][]float64
	}
	var order []*bench
	byName := map[string]*bench{}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := f[0]
		// The -N suffix is GOMAXPROCS, the same for every line.
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		b := byName[name]
		if b == nil {
			b = &bench{name: name, vals: map[string][]float64{}}
			byName[name] = b
			order = append(order, b)
		}
		b.runs++
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			unit := f[i+1]
			if err != nil || unit == "ns/op" {
				continue
			}
			if _, ok := b.vals[unit]; !ok {
				b.units = append(b.units, unit)
			}
			b.vals[unit] = append(b.vals[unit], v)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(order) == 0 {
		return fmt.Errorf("no benchmark results")
	}
	fmt.Fprintln(out, "| benchmark | runs | median (spread) of each metric |")
	fmt.Fprintln(out, "|---|---|---|")
	for _, b := range order {
		var ms []string
		for _, unit := range b.units {
			v := slices.Clone(b.vals[unit])
			sort.Float64s(v)
			m := v[len(v)/2]
			if len(v)%2 == 0 {
				m = (v[len(v)/2-1] + v[len(v)/2]) / 2
			}
			text := fmt.Sprintf("%s %s", strconv.FormatFloat(m, 'f', -1, 64), unit)
			if v[0] != v[len(v)-1] {
				text = fmt.Sprintf("%s %s (%g–%g)", strconv.FormatFloat(round3(m), 'f', -1, 64), unit, v[0], v[len(v)-1])
			}
			ms = append(ms, text)
		}
		fmt.Fprintf(out, "| %s | %d | %s |\n", strings.TrimPrefix(b.name, "Benchmark"), b.runs, strings.Join(ms, ", "))
	}
	return nil
}

// round3 keeps three significant digits after the point of a median.
func round3(v float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', 3, 64), 64)
	return r
}
