// Command stallgen attacks a ccrelay ingest endpoint with stalled uploads
// and measures what that costs the server: it opens -unauth uploads
// without credentials and -signed uploads whose headers pass every check
// that does not need the body (a Sinch signature of another body), each
// announcing -length bytes, sending -sent of them and then nothing, plus
// -token stalled token requests (POST /oauth/token, a form of 1000 bytes
// announced, 10 sent, no credentials: the client would authenticate in the
// body) and -idle idle connections; holds them for -hold while a signed
// sender at another address (-sender-from) posts one callback every
// -every; hangs up; and samples the server's resident memory (VmRSS of
// -pid) throughout and for -after once the attack ended. The attack comes
// from 127.0.0.1, or from -attackers loopback addresses taking turns.
// With -metrics it prints the server's shed counters at the end.
//
// It only ever dials loopback addresses, and is bounded: at most 5000
// uploads and connections, held at most a minute.
package main

import (
	"bytes"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ccrelay/ccrelay/test/sinchtest"
	"github.com/ccrelay/ccrelay/test/stalltest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "stallgen:", err)
		os.Exit(1)
	}
}

func run() error {
	target := flag.String("url", "http://127.0.0.1:8080/v1/sinch/svc1", "Sinch endpoint of the service (loopback only)")
	secret := flag.String("secret", "", "the service's webhook secret, for the signed sender")
	unauth := flag.Int("unauth", 1000, "stalled uploads without credentials")
	signed := flag.Int("signed", 1000, "stalled uploads with headers that pass every check before the body")
	length := flag.Int64("length", 512<<10, "Content-Length each upload announces")
	sent := flag.Int("sent", 500000, "bytes of the body each upload sends before it stalls")
	hold := flag.Duration("hold", 10*time.Second, "how long the uploads are held")
	after := flag.Duration("after", 30*time.Second, "how long memory is sampled after the attack")
	every := flag.Duration("every", 50*time.Millisecond, "interval of the signed sender")
	pid := flag.Int("pid", 0, "the server's process id, whose VmRSS to sample")
	token := flag.Int("token", 0, "stalled token requests without credentials in their headers")
	idle := flag.Int("idle", 0, "idle connections, which send nothing")
	senderFrom := flag.String("sender-from", "127.0.0.2", "loopback address the signed sender dials from: another client than the attack's (127.0.0.1); '' for any")
	metrics := flag.String("metrics", "", "the server's metrics URL (loopback), to print its shed counters at the end")
	attackers := flag.Int("attackers", 1, "loopback addresses the attack comes from, taking turns (127.0.0.1, then 127.0.1.1, 127.0.1.2, ...): more than one stands for a distributed attack")
	fresh := flag.Bool("sender-new-conns", false, "the signed sender dials a new connection for every callback, as a sender that keeps none open does, rather than keep one open through the attack")
	flag.Parse()

	u, err := url.Parse(*target)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return errors.New("-url must name a loopback address")
	}
	var sender net.Dialer
	if *senderFrom != "" {
		ip := net.ParseIP(*senderFrom)
		if ip == nil || !ip.IsLoopback() {
			return errors.New("-sender-from must be a loopback address")
		}
		sender.LocalAddr = &net.TCPAddr{IP: ip}
	}
	if *metrics != "" {
		m, err := url.Parse(*metrics)
		if ip := net.ParseIP(m.Hostname()); err != nil || ip == nil || !ip.IsLoopback() {
			return errors.New("-metrics must name a loopback address")
		}
	}
	switch {
	case *unauth+*signed+*token+*idle > 5000 || *unauth < 0 || *signed < 0 || *token < 0 || *idle < 0:
		return errors.New("-unauth, -signed, -token and -idle: at most 5000 together")
	case *attackers < 1 || *attackers > 250:
		return errors.New("-attackers: 1 to 250")
	case *hold > time.Minute || *after > time.Minute:
		return errors.New("-hold and -after: at most a minute each")
	case int64(*sent) > *length:
		return errors.New("-sent is more than -length")
	case *pid <= 0 || *secret == "":
		return errors.New("-pid and -secret are required")
	}

	mem := sample(*pid)
	time.Sleep(time.Second)
	before := mem.last()

	// The signed sender runs through the attack.
	lat := &latencies{}
	stop := make(chan struct{})
	var senders sync.WaitGroup
	senders.Add(1)
	go func() {
		defer senders.Done()
		send(*target, *secret, &sender, *fresh, *every, stop, lat)
	}()

	start := time.Now()
	outcomes := &counts{m: map[string]int{}}
	var stalls []*stalltest.Stall
	var idles []net.Conn
	var mu sync.Mutex
	type job struct {
		kind string
		h    http.Header
		from *net.Dialer
	}
	// dialers are the attack's source addresses, one per attacker.
	dialers := []*net.Dialer{{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}}
	for i := 1; i < *attackers; i++ {
		dialers = append(dialers, &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(i))}})
	}
	n := 0
	next := func() *net.Dialer { n++; return dialers[n%len(dialers)] }
	jobs := make(chan job)
	var openers sync.WaitGroup
	for i := 0; i < 64; i++ {
		openers.Add(1)
		go func() {
			defer openers.Done()
			for j := range jobs {
				kind, h := j.kind, j.h
				if kind == "idle" {
					c, err := j.from.Dial("tcp", u.Host)
					if err != nil {
						outcomes.add("idle: refused while connecting")
						continue
					}
					mu.Lock()
					idles = append(idles, c)
					mu.Unlock()
					go func() {
						_ = c.SetReadDeadline(time.Now().Add(*hold))
						// Closed here at the end of the hold, it was open.
						if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) && !errors.Is(err, net.ErrClosed) {
							outcomes.add("idle: closed by the server while held")
							return
						}
						outcomes.add("idle: open while held")
					}()
					continue
				}
				path, length, sent := u.Path, *length, *sent
				if kind == "token" {
					path, length, sent = "/oauth/token", 1000, 10
				}
				st, err := stalltest.OpenWith(j.from, u.Host, http.MethodPost, path, h, length, sent)
				if err != nil {
					outcomes.add(kind + ": refused while sending")
					continue
				}
				mu.Lock()
				stalls = append(stalls, st)
				mu.Unlock()
				go func() {
					resp, err := st.Answer(*hold + 5*time.Second)
					if err != nil {
						outcomes.add(kind + ": no answer while held")
						return
					}
					outcomes.add(kind + ": " + strconv.Itoa(resp.StatusCode))
					_ = resp.Body.Close()
				}()
			}
		}()
	}
	// Unauthenticated and signed uploads interleaved, so neither kind
	// arrives on an idle server.
	lookalike := &sinchtest.Signer{Secret: "not-the-secret"}
	for i := 0; i < max(*unauth, *signed, *token, *idle); i++ {
		if i < *unauth {
			jobs <- job{"unauth", http.Header{"Content-Type": {"application/json"}}, next()}
		}
		if i < *signed {
			jobs <- job{"signed", lookalike.Headers([]byte("another body"), time.Now()), next()}
		}
		if i < *token {
			jobs <- job{"token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, next()}
		}
		if i < *idle {
			jobs <- job{"idle", nil, next()}
		}
	}
	close(jobs)
	openers.Wait()
	opened := time.Since(start)
	time.Sleep(*hold - min(opened, *hold))
	during := mem.peak()
	close(stop)
	senders.Wait()

	mu.Lock()
	for _, st := range stalls {
		_ = st.Close()
	}
	for _, c := range idles {
		_ = c.Close()
	}
	mu.Unlock()
	ended := mem.last()
	time.Sleep(*after)
	final := mem.last()
	mem.stop()

	fmt.Printf("uploads: %d without credentials, %d signed-looking, %d of %d bytes sent each; %d token requests, %d idle connections; from %d addresses; opened in %s, held %s\n",
		*unauth, *signed, *sent, *length, *token, *idle, *attackers, opened.Round(time.Millisecond), *hold)
	fmt.Printf("answers while held: %s\n", outcomes)
	fmt.Printf("server RSS: before %.0f MiB, peak during %.0f MiB, at hang-up %.0f MiB, %s after %.0f MiB\n",
		mib(before), mib(during), mib(ended), *after, mib(final))
	fmt.Printf("signed sender during the attack (from %s): %s\n", cmp.Or(*senderFrom, "any address"), lat)
	if *metrics != "" {
		shed, err := shedCounters(*metrics)
		if err != nil {
			return err
		}
		fmt.Printf("server's shed counters: %s\n", shed)
	}
	return nil
}

// shedCounters reads the ccrelay_ingest_shed_requests_total series of the
// metrics page at u.
func shedCounters(u string) (string, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(u)
	if err != nil {
		return "", fmt.Errorf("metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("metrics: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "ccrelay_ingest_shed_requests_total"); ok {
			out = append(out, v)
		}
	}
	return strings.Join(out, ", "), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// send posts a signed callback every interval until stop, dialling with d
// (a new connection each time when fresh), recording each latency and
// status.
func send(target, secret string, d *net.Dialer, fresh bool, every time.Duration, stop <-chan struct{}, lat *latencies) {
	signer := &sinchtest.Signer{Secret: secret}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: fresh}}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		body := sinchtest.InboundText(fmt.Sprintf("01STALLGEN%d%08d", time.Now().Unix(), n), time.Now())
		req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			lat.add(0, "error")
			continue
		}
		req.Header = signer.Headers(body, time.Now())
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			lat.add(time.Since(t0), "error")
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		lat.add(time.Since(t0), strconv.Itoa(resp.StatusCode))
	}
}

type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) add(k string) {
	c.mu.Lock()
	c.m[k]++
	c.mu.Unlock()
}

func (c *counts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for k, v := range c.m {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, v))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

type latencies struct {
	mu  sync.Mutex
	d   []time.Duration
	out counts
}

func (l *latencies) add(d time.Duration, status string) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
	l.out.mu.Lock()
	if l.out.m == nil {
		l.out.m = map[string]int{}
	}
	l.out.m[status]++
	l.out.mu.Unlock()
}

func (l *latencies) String() string {
	l.mu.Lock()
	d := slices.Clone(l.d)
	l.mu.Unlock()
	if len(d) == 0 {
		return "no requests"
	}
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	return fmt.Sprintf("%d requests (%s), p50 %s, p99 %s, max %s", len(d), &l.out,
		q(.5).Round(10*time.Microsecond), q(.99).Round(10*time.Microsecond), d[len(d)-1].Round(10*time.Microsecond))
}

// sampler reads a process's VmRSS every 100 ms.
type sampler struct {
	max, cur atomic.Int64
	done     chan struct{}
}

func sample(pid int) *sampler {
	s := &sampler{done: make(chan struct{})}
	read := func() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				s.cur.Store(kb << 10)
				if kb<<10 > s.max.Load() {
					s.max.Store(kb << 10)
				}
			}
		}
	}
	read()
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
				read()
			}
		}
	}()
	return s
}

func (s *sampler) last() int64 { return s.cur.Load() }

// peak is the highest value since the last call.
func (s *sampler) peak() int64 { return s.max.Swap(s.cur.Load()) }
func (s *sampler) stop()       { close(s.done) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }
