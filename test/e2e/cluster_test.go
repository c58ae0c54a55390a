package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/test/natstest"
)

// TestClusterNodeLoss runs ingest and the summaries processor on a
// three-node JetStream cluster with R3 streams. Under steady ingest one node
// is stopped and later started again; senders retry what was not
// acknowledged, as Sinch, Contact Pro and EventBridge do. Every event ends
// up stored once and written to SAP exactly once.
func TestClusterNodeLoss(t *testing.T) {
	cluster := natstest.NewCluster(t, 3)
	urls := cluster.URLs(t)
	d, sap, s3 := summariesDeployment(t, urls, "CCRELAY_STREAM_REPLICAS=3", "CCRELAY_PUBLISH_TIMEOUT=2s")

	const n = 120
	ids := make([]string, n)
	for i := 0; i < n; i++ {
		ids[i] = sap.AddPhoneCall(fmt.Sprintf("cl%03d", i))
		s3.Put(t, bucket, fmt.Sprintf("Analysis/Voice/2026/11/21/cl%03d_analysis_x.json", i), analysisFile(fmt.Sprintf("cluster %d", i)))
	}
	h := jsonHeader()
	h.Set("x-api-key", connectAPIKey)
	var (
		mu      sync.Mutex
		retries int
	)
	// send posts until the event is acknowledged (2xx), as the senders do.
	send := func(i int) {
		body := contactLens(fmt.Sprintf("cl-ev-%d", i), fmt.Sprintf("cl%03d", i), "Contact Lens Post Call Rules Matched")
		for attempt := 0; ; attempt++ {
			req, _ := http.NewRequest("POST", d.urls[0]+"/v1/connect/events", bytesReader(body))
			req.Header = h.Clone()
			res, err := d.client.Do(req)
			if err == nil {
				res.Body.Close()
				if res.StatusCode/100 == 2 {
					return
				}
			}
			mu.Lock()
			retries++
			mu.Unlock()
			if attempt > 200 {
				t.Errorf("event %d never acknowledged", i)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// The node to stop is the events stream's leader: its loss forces an
	// election while events keep coming.
	var victim *natstest.ClusterNode
	for i := 0; i < n; i++ {
		switch i {
		case n / 3:
			info, err := mustStream(t, d).Info(context.Background())
			if err != nil || info.Cluster == nil {
				t.Fatalf("stream info: %v", err)
			}
			for _, node := range cluster.Nodes {
				if node.Name == info.Cluster.Leader {
					victim = node
				}
			}
			if victim == nil {
				t.Fatalf("leader %q is not a node", info.Cluster.Leader)
			}
			victim.Stop(t)
		case 2 * n / 3:
			victim.Start(t)
		}
		send(i)
		time.Sleep(20 * time.Millisecond)
	}
	eventually(t, "every summary written", func() bool {
		for _, id := range ids {
			if sap.PhoneCall(id).Transcript == "" {
				return false
			}
		}
		return true
	})
	for i, id := range ids {
		if pc := sap.PhoneCall(id); pc.Transcript != fmt.Sprintf("cluster %d", i) || pc.Patches != 1 {
			t.Errorf("call %d: %q after %d patches", i, pc.Transcript, pc.Patches)
		}
	}
	info, err := mustStream(t, d).Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n || info.Config.Replicas != 3 {
		t.Errorf("stream holds %d events at R%d, want %d at R3", info.State.Msgs, info.Config.Replicas, n)
	}
	t.Logf("%d events through the loss and return of the stream leader %s; %d sends retried", n, victim.Name, retries)
}

func mustStream(t *testing.T, d *deployment) jetstream.Stream {
	st, err := d.js.Stream(context.Background(), d.subjects.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	return st
}
