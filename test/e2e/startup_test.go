package e2e_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/ingest/server"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors/service"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// TestReplicasStartTogether starts several in-process replicas of 'serve'
// (ingest and every processor) on one fresh JetStream server at the same
// moment, 20 times. Each replica creates or binds the same streams, buckets
// and consumers while the others create consumers on them. nats-server
// races when a stream's configuration is rewritten while a consumer is
// created on it, so under -race this fails if any replica updates a stream
// or bucket whose configuration did not change.
func TestReplicasStartTogether(t *testing.T) {
	const rounds, replicas = 20, 3
	for round := range rounds {
		ns := natstest.Embedded(t)
		// Every processor runs, the relay's partition consumers included.
		cfg, err := config.Load([]string{"CCRELAY_NATS_URL=" + ns.ClientURL(), "CCRELAY_SINCH_WEBHOOK_SECRETS=svc1:s",
			"CCRELAY_FORWARD_URLS=sinch/svc1=http://127.0.0.1:9/sms"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		errs := make(chan error, 2*replicas)
		started := make([]*syncBuffer, replicas)
		for i := range replicas {
			started[i] = &syncBuffer{}
			logger := slog.New(slog.NewJSONHandler(started[i], nil))
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- startReplica(ctx, ns.ClientURL(), cfg, logger)
			}()
		}
		eventually(t, fmt.Sprintf("round %d: every replica's processors started", round), func() bool {
			for _, b := range started {
				if strings.Count(b.String(), `"processor started"`) < len(service.Names()) {
					select {
					case err := <-errs:
						t.Fatalf("round %d: %v", round, err)
					default:
					}
					return false
				}
			}
			return true
		})
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		for i, b := range started {
			if n := strings.Count(b.String(), `"waiting for nats"`); n > 0 {
				t.Logf("round %d replica %d waited %d times", round, i, n)
			}
		}
	}
}

// startReplica assembles ingest and the processors as 'serve' does, on its
// own connection, and runs the processors until ctx ends.
func startReplica(ctx context.Context, url string, cfg *config.Config, logger *slog.Logger) error {
	nc, err := nats.Connect(url, nats.IgnoreDiscoveredServers())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	w := provision.Waiter{Budget: cfg.Broker.ConnectTimeout, Logger: logger}
	if _, err := server.Assemble(ctx, w, cfg.Ingest, ingest.Fixed{JS: js, Conn: nc}, nc.MaxPayload(), prometheus.NewRegistry(), logger); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	rt, err := service.New(ctx, cfg.Processors, service.Names(), service.Deps{
		JS: js, Waiter: w, Registry: prometheus.NewRegistry(), Logger: logger,
		Connect: func() (*nats.Conn, error) { return nats.Connect(url, nats.IgnoreDiscoveredServers()) },
	})
	if err != nil {
		return fmt.Errorf("processors: %w", err)
	}
	return rt.Run(ctx)
}

// TestStartWhileClusterReforms stops the node of a three-node JetStream
// cluster that leads the ledger bucket (R3, like every stream and bucket
// here) and one more, so no stream has a quorum, starts two replicas at
// that moment, and starts the nodes again, as happens when an upgrade
// restarts nodes faster than they catch up: the replicas wait, saying what
// for, until JetStream answers again, and both come up. Before, a replica
// gave up at the first timeout and exited.
func TestStartWhileClusterReforms(t *testing.T) {
	cluster := natstest.NewCluster(t, 3)
	cfg, err := config.Load([]string{"CCRELAY_NATS_URL=" + cluster.URLs(t), "CCRELAY_STREAM_REPLICAS=3",
		"CCRELAY_NATS_CONNECT_TIMEOUT=60s", "CCRELAY_SINCH_WEBHOOK_SECRETS=svc1:s",
		"CCRELAY_FORWARD_URLS=sinch/svc1=http://127.0.0.1:9/sms", "CCRELAY_FORWARD_PARTITIONS=2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A first replica creates every stream, bucket and consumer at R3.
	runReplicas(t, cluster.URLs(t), cfg, nil, &syncBuffer{})

	_, js := natstest.Connect(t, cluster.URLs(t))
	st, err := js.Stream(context.Background(), "KV_CCRELAY_LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	var victim *natstest.ClusterNode
	for _, n := range cluster.Nodes {
		if st.CachedInfo().Cluster != nil && n.Name == st.CachedInfo().Cluster.Leader {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("no node leads the ledger: %+v", st.CachedInfo().Cluster)
	}
	other := cluster.Nodes[0]
	if other == victim {
		other = cluster.Nodes[1]
	}
	urls := cluster.URLs(t)
	victim.Stop(t)
	other.Stop(t)
	var a, b syncBuffer
	runReplicas(t, urls, cfg, func() {
		time.Sleep(3 * time.Second)
		victim.Start(t)
		other.Start(t)
	}, &a, &b)
	waits := []int{strings.Count(a.String(), `"waiting for nats"`), strings.Count(b.String(), `"waiting for nats"`)}
	if waits[0] == 0 || waits[1] == 0 {
		t.Errorf("replicas started without waiting (%v) while the cluster had no quorum:\n%s\n%s", waits, a.String(), b.String())
	}
	t.Logf("%s and %s stopped and started while two replicas started; they waited %v times", victim.Name, other.Name, waits)
}

// runReplicas starts one replica per log at once, runs during (if any)
// meanwhile, waits until every replica has all its processors running, and
// stops them.
func runReplicas(t *testing.T, urls string, cfg *config.Config, during func(), logs ...*syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, len(logs))
	for _, l := range logs {
		go func() {
			errs <- startReplica(ctx, urls, cfg, slog.New(slog.NewJSONHandler(l, nil)))
		}()
	}
	if during != nil {
		during()
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, l := range logs {
		for strings.Count(l.String(), `"processor started"`) < len(service.Names()) {
			select {
			case err := <-errs:
				t.Fatalf("a replica stopped while starting: %v\n%s", err, l.String())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica not started:\n%s", l.String())
			}
		}
	}
	cancel()
	for range logs {
		if err := <-errs; err != nil {
			t.Fatalf("replica: %v", err)
		}
	}
}
