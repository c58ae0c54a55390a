package e2e_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/service"
	"github.com/ccrelay/ccrelay/processors/trace"
	"github.com/ccrelay/ccrelay/test/natstest"
	"github.com/ccrelay/ccrelay/test/sinchtest"
)

// BenchmarkTrace measures 'ccrelay trace' for one id among 100,000 stored
// Sinch inbound messages of 1 KiB (a busy day of one tenant), each with the
// headers ingest writes, in a file-backed stream of the embedded server:
// the time from the call to the report, reading headers only. The
// sub-benchmark without-header stores 20,000 events as releases before
// Ccrelay-Ids did, so trace reads each Sinch event's body.
func BenchmarkTrace(b *testing.B) {
	for _, c := range []struct {
		name   string
		events int
		header bool
	}{{"100k", 100_000, true}, {"without-header-20k", 20_000, false}} {
		b.Run(c.name, func(b *testing.B) {
			ns := natstest.Embedded(b)
			_, js := natstest.Connect(b, ns.ClientURL())
			ctx := context.Background()
			s := messages.DefaultSubjects()
			if err := messages.EnsureStreams(ctx, provision.Waiter{}, js, messages.StreamConfig{Replicas: 1, MaxAge: 24 * time.Hour, DedupWindow: time.Minute, MaxBytes: -1, DLQMaxAge: time.Hour}); err != nil {
				b.Fatal(err)
			}
			target := c.events / 2
			for i := range c.events {
				contact := fmt.Sprintf("01BENCHCONTACT%012d", i%5000)
				if i == target {
					contact = "01TRACEDCONTACT00000000000"
				}
				msgID := fmt.Sprintf("01BENCHMSG%016d", i)
				body := sinchtest.InboundFrom(msgID, contact, "a message of the customer, some sixty bytes long, no more", time.Now())
				body = append(body, make([]byte, max(0, 1024-len(body)))...)
				ev := messages.Event{Subject: s.Sinch("message_inbound", "eu", sinchtest.AppID, messages.Partition(contact)), ID: "sinch:eu:inbound:" + msgID,
					Source: "/sinch/eu", Type: messages.TypeSinchPrefix + "message_inbound", Time: time.Now(), ReceivedAt: time.Now(), Body: body}
				if c.header {
					ev.IDs = messages.FormatIDs(messages.IDContact, contact, messages.IDConversation, "01EQ8235TD19N21XQTH12B145D")
				}
				if _, err := js.PublishMsgAsync(ev.Msg()); err != nil {
					b.Fatal(err)
				}
				if i%10000 == 9999 {
					<-js.PublishAsyncComplete()
				}
			}
			<-js.PublishAsyncComplete()
			shown := traceProcessors(b)
			b.ResetTimer()
			for b.Loop() {
				r, err := trace.Run(ctx, js, s, trace.Options{ID: "01TRACEDCONTACT00000000000", MaxBodyReads: c.events, Processors: shown})
				if err != nil {
					b.Fatal(err)
				}
				if r.Matched != 1 || r.Scanned != uint64(c.events) {
					b.Fatalf("matched %d of %d scanned", r.Matched, r.Scanned)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/trace")
		})
	}
}

// traceProcessors are the processors trace shows, with the guarantees
// they declare under a default configuration, as 'ccrelay trace' has them.
func traceProcessors(t testing.TB) map[string]processors.Guarantee {
	t.Helper()
	cfg, err := config.Load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := service.Guarantees(cfg.Processors)
	if err != nil {
		t.Fatal(err)
	}
	return g
}
