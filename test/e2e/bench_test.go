package e2e_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/test/natstest"
	"github.com/ccrelay/ccrelay/test/sinchtest"
)

// BenchmarkSinchIngest measures the whole ingest path of one signed 1 KiB
// callback, handler to JetStream ack, without the network in between:
// signature, clock check, decode, publish, answer.
func BenchmarkSinchIngest(b *testing.B) {
	for _, skew := range []string{"5m", "0"} {
		b.Run("skew="+skew, func(b *testing.B) {
			ns := natstest.Embedded(b)
			d := deployB(b, ns.ClientURL(), "CCRELAY_SINCH_MAX_CLOCK_SKEW="+skew, "CCRELAY_LOG_LEVEL=warn")
			signer := &sinchtest.Signer{Secret: sinchSecret}
			var seq atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					body := sinchtest.InboundText(fmt.Sprintf("BENCH%d", seq.Add(1)), time.Now())
					req := httptest.NewRequest(http.MethodPost, "/v1/sinch/svc1", bytes.NewReader(body))
					req.Header = signer.Headers(body, time.Now())
					req.SetPathValue("service", "svc1")
					rec := httptest.NewRecorder()
					d.ServeHTTP(rec, req)
					if rec.Code != http.StatusAccepted {
						b.Fatalf("status %d %s", rec.Code, rec.Body)
					}
				}
			})
		})
	}
}
