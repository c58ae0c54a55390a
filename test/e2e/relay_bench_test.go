package e2e_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors/service"
)

// BenchmarkForward: the relay delivering a backlog of Twilio webhooks of
// 1,000 conversations to a Contact Pro that answers at once or after
// 50 ms, through the real forward processor. At most one delivery per
// partition group is in flight, cluster-wide, so Little's law bounds the
// rate at partitions / latency; the 0 ms figure compares with
// BenchmarkProcessorVsReference's runtime rate (the attachments and
// summaries processors' runtime with SAP answering at once).
func BenchmarkForward(b *testing.B) {
	for _, c := range []struct {
		delay                time.Duration
		partitions, replicas int
	}{
		{0, 16, 1}, {0, 64, 1}, {50 * time.Millisecond, 16, 1}, {50 * time.Millisecond, 64, 1}, {50 * time.Millisecond, 64, 3},
	} {
		b.Run(fmt.Sprintf("contactpro=%s/partitions=%d/replicas=%d", c.delay, c.partitions, c.replicas), func(b *testing.B) {
			n := 4000
			if c.delay > 0 {
				n = c.partitions * 40
			}
			var got atomic.Int64
			var first atomic.Int64 // unix nanos of the first delivery: start-up is not throughput
			finished := make(chan struct{})
			cp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				first.CompareAndSwap(0, time.Now().UnixNano())
				_, _ = io.Copy(io.Discard, r.Body)
				time.Sleep(c.delay)
				w.WriteHeader(http.StatusOK)
				if got.Add(1) == int64(n) {
					close(finished)
				}
			}))
			b.Cleanup(cp.Close)
			w := newBenchWorld(b)
			cfg, err := config.Load([]string{
				"CCRELAY_PUBLIC_URL=https://relay.example.com", "CCRELAY_MESSAGING_SECRETS=twilio/us:tw",
				"CCRELAY_FORWARD_URLS=twilio/us=" + cp.URL, fmt.Sprintf("CCRELAY_FORWARD_PARTITIONS=%d", c.partitions),
			}, nil)
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < n; i++ {
				body := []byte(url.Values{"MessageSid": {fmt.Sprintf("SM%032x", i)}, "From": {fmt.Sprintf("+49151%07d", i%1000)}, "Body": {"hello"}}.Encode())
				wh, err := messages.DecodeWebhook("twilio", "us", body)
				if err != nil {
					b.Fatal(err)
				}
				ev := messages.Event{Subject: w.subjects.Messaging("twilio", "us", messages.Partition(wh.Conversation)), ID: wh.ID, Source: "/messaging/twilio/us",
					Type: messages.TypeMessagingPrefix + "twilio." + wh.Kind, ContentType: messages.ContentTypeForm, Time: time.Now(), ReceivedAt: time.Now(), Body: body}
				if _, err := w.js.PublishMsgAsync(ev.Msg()); err != nil {
					b.Fatal(err)
				}
			}
			<-w.js.PublishAsyncComplete()
			b.ResetTimer()
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for r := 0; r < c.replicas; r++ {
				rt, err := service.New(ctx, cfg.Processors, []string{"forward"}, service.Deps{
					JS: w.js, Connect: func() (*nats.Conn, error) { return nats.Connect(w.url) },
					Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				})
				if err != nil {
					b.Fatal(err)
				}
				wg.Add(1)
				go func() { defer wg.Done(); _ = rt.Run(ctx) }()
			}
			select {
			case <-finished:
			case <-time.After(5 * time.Minute):
				b.Fatalf("%d of %d delivered", got.Load(), n)
			}
			took := time.Since(time.Unix(0, first.Load()))
			cancel()
			wg.Wait()
			rate := float64(n) / took.Seconds()
			b.ReportMetric(rate, "msg/s")
			if c.delay > 0 {
				b.ReportMetric(100*rate/(float64(c.partitions)/c.delay.Seconds()), "%bound")
			}
		})
	}
}
