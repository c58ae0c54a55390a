package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
	"github.com/ccrelay/ccrelay/ingest/server"
	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/broker"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/deliveries"
	"github.com/ccrelay/ccrelay/processors/service"
	"github.com/ccrelay/ccrelay/test/fakes/cpfake"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// brokerDeployment is ccrelay on a cluster as the binary runs it: ingest
// and the processors each on connections of their own, opened by package
// broker with the binary's options (client pings, reconnects to another
// node, the URLs given only).
type brokerDeployment struct {
	t        *testing.T
	cfg      *config.Config
	subjects messages.Subjects
	// url is ingest's, "" when only processors run.
	url  string
	regs []*prometheus.Registry
	logs *syncBuffer
	// procBrokers are the processor replicas' brokers, in order.
	procBrokers []*broker.Broker
}

// deployOnBrokers starts ingest (when withIngest) and replicas runtimes of
// the named processors on natsURL.
func deployOnBrokers(t *testing.T, natsURL string, withIngest bool, procs []string, replicas int, extra ...string) *brokerDeployment {
	t.Helper()
	prefix := fmt.Sprintf("t%d", prefixSeq.Add(1))
	environ := append([]string{
		"CCRELAY_NATS_URL=" + natsURL,
		"CCRELAY_SUBJECT_PREFIX=" + prefix,
		"CCRELAY_SINCH_WEBHOOK_SECRETS=svc1:" + sinchSecret,
		"CCRELAY_STREAM_REPLICAS=3",
		"CCRELAY_LOG_LEVEL=debug",
		"CCRELAY_AUTH_FAILURE_BURST=1000000",
	}, extra...)
	cfg, err := config.Load(environ, nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	s, _ := messages.NewSubjects(prefix)
	d := &brokerDeployment{t: t, cfg: cfg, subjects: s, logs: &syncBuffer{}}
	logger := slog.New(slog.NewJSONHandler(d.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	open := func() *broker.Broker {
		b, err := broker.Open(ctx, cfg.Broker, logger)
		if err != nil {
			t.Fatalf("broker: %v", err)
		}
		t.Cleanup(func() {
			cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer ccancel()
			_ = b.Close(cctx)
		})
		return b
	}
	w := provision.Waiter{Budget: time.Minute, Logger: logger}
	if withIngest {
		b := open()
		srv, err := server.Assemble(ctx, w, cfg.Ingest, b, b.Conn.MaxPayload(), prometheus.NewRegistry(), logger)
		if err != nil {
			t.Fatalf("assemble: %v", err)
		}
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(hs.Close)
		d.url = hs.URL
	}
	for range replicas {
		b := open()
		d.procBrokers = append(d.procBrokers, b)
		reg := prometheus.NewRegistry()
		rt, err := service.New(ctx, cfg.Processors, procs, service.Deps{JS: b.JS, Waiter: w, Connect: b.NewConn, Registry: reg, Logger: logger, Outage: b.Outage()})
		if err != nil {
			t.Fatalf("processors: %v", err)
		}
		d.regs = append(d.regs, reg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rt.Run(ctx); err != nil {
				t.Errorf("processors stopped: %v", err)
			}
		}()
	}
	return d
}

// dumpLogs logs the deployment's last WARN and ERROR lines, for a
// failure's cause.
func (d *brokerDeployment) dumpLogs(t *testing.T) {
	t.Helper()
	t.Logf("the deployment's last warnings and errors:\n%s", warnings(d.logs.String()))
}

// claimEvents sums ccrelay_processor_claim_events_total of event across
// the runtimes.
func (d *brokerDeployment) claimEvents(event string) float64 {
	var sum float64
	for _, reg := range d.regs {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() != "ccrelay_processor_claim_events_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "event" && l.GetValue() == event {
						sum += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	return sum
}

// TestPausedNodeStatusesCurrent: thirty senders post Sinch delivery reports
// (QUEUED, DELIVERED, READ for each message) to ingest on a three-node
// cluster, retrying what is not acknowledged, while two replicas of the
// deliveries processor write the statuses. The node the first replica is
// connected to, made the leader of the ledger and of the status bucket,
// is paused (docker pause) for 20 s in the middle: the other nodes elect
// new leaders, and the requests it held are never answered. Every
// status is current (READ) within 30 s of the node's return: no handler
// waits on the hung node for the handler timeout (10 minutes) while its
// heartbeat keeps its claim and its message, as they did.
//
// The same with the node killed (SIGKILL) and started again 20 s later: the
// requests in flight on its connections are lost for good, and a handler
// waiting for their answers waited its whole timeout.
func TestPausedNodeStatusesCurrent(t *testing.T) {
	for _, fault := range []struct {
		name          string
		stop, restart func(n *natstest.ClusterNode, t testing.TB)
	}{
		{"paused", (*natstest.ClusterNode).Pause, (*natstest.ClusterNode).Unpause},
		{"killed", (*natstest.ClusterNode).Kill, (*natstest.ClusterNode).Start},
	} {
		t.Run(fault.name, func(t *testing.T) { statusesThroughNodeFault(t, fault.name, fault.stop, fault.restart) })
	}
}

func statusesThroughNodeFault(t *testing.T, fault string, stop, restart func(*natstest.ClusterNode, testing.TB)) {
	cluster := natstest.NewCluster(t, 3)
	d := deployOnBrokers(t, cluster.URLs(t), true, []string{"deliveries"}, 2,
		"CCRELAY_PUBLISH_TIMEOUT=2s", "CCRELAY_PROCESS_ACK_WAIT=6s", "CCRELAY_PROCESS_CALL_TIMEOUT=2s",
		"CCRELAY_PROCESS_BACKOFF=500ms,1s,2s")
	nc, js := natstest.Connect(t, cluster.URLs(t))
	var kv jetstream.KeyValue
	eventually(t, "the status bucket", func() bool {
		var err error
		kv, err = js.KeyValue(context.Background(), d.subjects.DeliveryStatusBucket())
		return err == nil
	})
	victim := cluster.Named(t, d.procBrokers[0].Conn.ConnectedServerName())
	cluster.MakeLeader(t, nc, js, "KV_"+d.subjects.DeliveryStatusBucket(), victim)
	cluster.MakeLeader(t, nc, js, "KV_"+d.subjects.LedgerBucket(), victim)

	const messagesN, senders = 300, 30
	statuses := []string{"QUEUED", "DELIVERED", "READ"}
	var acked, retried atomic.Int64
	posts := make(chan []byte)
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range posts {
				for attempt := 0; ; attempt++ {
					req, _ := http.NewRequest(http.MethodPost, d.url+"/v1/sinch/svc1", strings.NewReader(string(body)))
					req.Header = signed(sinchSecret, body, time.Now())
					res, err := client.Do(req)
					if err == nil {
						res.Body.Close()
						if res.StatusCode/100 == 2 {
							acked.Add(1)
							break
						}
					}
					retried.Add(1)
					if attempt > 600 {
						t.Errorf("a report was never acknowledged")
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	go func() {
		for _, st := range statuses {
			for i := range messagesN {
				posts <- deliveryReport(fmt.Sprintf("01PAUSE%05d", i), st)
			}
		}
		close(posts)
	}()
	// Bound before the fault: right after it, JetStream may answer
	// "temporarily unavailable" for a while (current retries its reads).
	consumer, err := js.Consumer(context.Background(), d.subjects.EventsStream(), processors.ConsumerName(d.subjects, "deliveries"))
	if err != nil {
		t.Fatal(err)
	}
	// In the last round, so that what the fault holds up is the newest
	// status of its message.
	for acked.Load() < 2*messagesN+messagesN/3 {
		time.Sleep(20 * time.Millisecond)
	}
	stop(victim, t)
	time.Sleep(20 * time.Second)
	restart(victim, t)
	resumed := time.Now()
	wg.Wait()
	allAcked := time.Now()

	// current counts statuses older than their newest report, and the
	// reports the consumer has not had answered.
	current := func() (stale int, unanswered uint64) {
		for i := range messagesN {
			e, err := kv.Get(context.Background(), deliveries.Key(fmt.Sprintf("01PAUSE%05d", i)))
			var st deliveries.Status
			if err != nil || json.Unmarshal(e.Value(), &st) != nil || st.Status != "READ" {
				stale++
			}
		}
		info, err := consumer.Info(context.Background())
		if err != nil {
			return stale, 1
		}
		return stale, uint64(info.NumAckPending) + info.NumPending // #nosec G115 -- a count
	}
	bound := 30 * time.Second
	from := resumed
	if allAcked.After(from) {
		from = allAcked
	}
	deadline := from.Add(bound)
	stale, unanswered := current()
	for (stale > 0 || unanswered > 0) && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		stale, unanswered = current()
	}
	if stale > 0 || unanswered > 0 {
		t.Fatalf("%d of %d statuses not current, %d reports unanswered, %s after the node returned (and %s after the last report was acknowledged)", stale, messagesN, unanswered, time.Since(resumed).Round(time.Millisecond), time.Since(allAcked).Round(time.Millisecond))
	}
	took := time.Since(resumed)
	t.Logf("node %s %s for 20 s; %d reports acknowledged (%d posts retried); every status current and every report answered %s after the node returned, %s after the last acknowledgement; claims lost %v, taken over %v",
		victim.Name, fault, acked.Load(), retried.Load(), took.Round(time.Millisecond), time.Since(allAcked).Round(time.Millisecond), d.claimEvents("lost"), d.claimEvents("taken_over"))
}

// TestRelayThroughLeaderKills: three relay replicas deliver a backlog of
// Twilio messages to Contact Pro on a three-node cluster while the leader
// of the ledger bucket, and then the leader of the events stream, are
// killed (SIGKILL) and restarted. Every replica stays alive, so no
// message is delivered twice (a replica that sent records Contact Pro's
// answer through the election, and no other takes its work over
// meanwhile), none is lost, every conversation keeps its order, and no
// ledger entry is left working or sending.
func TestRelayThroughLeaderKills(t *testing.T) {
	cluster := natstest.NewCluster(t, 3)
	svc := cpfake.Service{Type: "twilio", Name: "us", Secret: twilioToken}
	cp := cpfake.New(t, cpExtUser, cpExtPassword, svc)
	// 8 partitions at 40 ms a message: about 200 messages a second, so
	// the kills land while deliveries and their records are under way.
	cp.SetDelay(40 * time.Millisecond)
	d := deployOnBrokers(t, cluster.URLs(t), false, []string{"forward"}, 3,
		"CCRELAY_PUBLIC_URL="+publicURL,
		"CCRELAY_MESSAGING_SECRETS=twilio/us:"+twilioToken,
		"CCRELAY_FORWARD_URLS=twilio/us="+cp.URLOf(svc),
		"CCRELAY_FORWARD_BASIC_USERS=twilio/us="+cpExtUser+":"+cpExtPassword,
		"CCRELAY_FORWARD_BACKOFF=100ms,200ms,500ms", "CCRELAY_FORWARD_PARTITIONS=8",
		"CCRELAY_PROCESS_ACK_WAIT=6s", "CCRELAY_PROCESS_CALL_TIMEOUT=2s")
	_, js := natstest.Connect(t, cluster.URLs(t))
	ctx := context.Background()
	const conversations, perConversation = 40, 30
	want := map[string][]string{}
	for m := range perConversation {
		for c := range conversations {
			body := []byte(url.Values{"MessageSid": {fmt.Sprintf("SM%028d%04d", c, m)}, "From": {fmt.Sprintf("+4915100%04d", c)}, "To": {"+15550009999"}, "Body": {fmt.Sprint(m)}}.Encode())
			w, err := messages.DecodeWebhook("twilio", "us", body)
			if err != nil {
				t.Fatal(err)
			}
			ev := messages.Event{Subject: d.subjects.Messaging("twilio", "us", messages.Partition(w.Conversation)), ID: w.ID, Source: "/messaging/twilio/us",
				Type: messages.TypeMessagingPrefix + "twilio.inbound", ContentType: messages.ContentTypeForm, Time: time.Now(), ReceivedAt: time.Now(), Body: body}
			if _, err := js.PublishMsg(ctx, ev.Msg()); err != nil {
				t.Fatal(err)
			}
			want[w.Conversation] = append(want[w.Conversation], w.ID)
		}
	}
	total := conversations * perConversation
	kill := func(stream string) *natstest.ClusterNode {
		n := cluster.Leader(t, js, stream)
		n.Kill(t)
		t.Logf("killed %s, leader of %s, after %d deliveries", n.Name, stream, len(cp.Received()))
		return n
	}
	eventually(t, "a fifth delivered", func() bool { return len(cp.Received()) >= total/5 })
	ledgerLeader := kill("KV_" + d.subjects.LedgerBucket())
	time.Sleep(3 * time.Second)
	ledgerLeader.Start(t)
	cluster.WaitReady(t)
	if n := len(cp.Received()); n >= total {
		t.Fatalf("all %d delivered before the second kill: the backlog is too short to show anything", n)
	}
	eventsLeader := kill(d.subjects.EventsStream())
	time.Sleep(3 * time.Second)
	eventsLeader.Start(t)

	deadline := time.Now().Add(3 * time.Minute)
	for distinct := 0; ; {
		seen := map[string]bool{}
		for _, r := range cp.Received() {
			seen[r.EventID] = true
		}
		if distinct = len(seen); distinct == total {
			break
		}
		if time.Now().After(deadline) {
			d.dumpLogs(t)
			t.Fatalf("%d of %d messages delivered", distinct, total)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // a repeat, if any, would follow within the backoff

	count := map[string]int{}
	got := map[string][]string{}
	unmarked, marked := 0, 0
	for _, r := range cp.Received() {
		count[r.EventID]++
		if count[r.EventID] > 1 {
			if r.Header.Get("X-Ccrelay-Maybe-Delivered") == "true" {
				marked++
			} else {
				unmarked++
			}
			t.Errorf("event %s delivered %d times (marked as a possible repeat: %q)", r.EventID, count[r.EventID], r.Header.Get("X-Ccrelay-Maybe-Delivered"))
			continue
		}
		got[r.Conversation] = append(got[r.Conversation], r.EventID)
	}
	for conv, ids := range want {
		if strings.Join(got[conv], " ") != strings.Join(ids, " ") {
			t.Errorf("conversation %s out of order:\n got %v\nwant %v", conv, got[conv], ids)
		}
	}
	kv, err := js.KeyValue(ctx, d.subjects.LedgerBucket())
	if err != nil {
		t.Fatal(err)
	}
	var open []string
	eventually(t, "every ledger entry done", func() bool {
		open = open[:0]
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return false
		}
		for k := range keys.Keys() {
			e, err := kv.Get(ctx, k)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			if err != nil || !strings.Contains(string(e.Value()), `"state":"done"`) {
				open = append(open, k)
			}
		}
		return len(open) == 0
	})
	t.Logf("%d messages through two leader kills: %d repeats (%d marked as possible repeats); stale claims taken over %v, of which after a confirm %v; claims lost %v; completions unrecorded %v",
		total, unmarked+marked, marked, d.claimEvents("taken_over")+d.claimEvents("maybe_done"), d.claimEvents("maybe_done"), d.claimEvents("lost"), d.claimEvents("unrecorded"))
}

// TestIngestAnswersWithinPublishTimeout: with every node of the cluster
// paused, a sender has its 503 within the publish timeout (2 s here),
// for a Sinch callback (the publish) and for Contact Pro calls with
// Digest credentials, qop=auth (the nonce count, checked before the body,
// then the publish) and qop=auth-int (both after the body). The digest's
// nonce count waited on its own 5 s before the publish's wait began, and
// nats.go's reconnect attempts held every publish past its deadline.
func TestIngestAnswersWithinPublishTimeout(t *testing.T) {
	cluster := natstest.NewCluster(t, 3)
	d := deployOnBrokers(t, cluster.URLs(t), true, nil, 0, "CCRELAY_PUBLISH_TIMEOUT=2s",
		"CCRELAY_CONTACTPRO_DIGEST_USERS=cpdigest:digest-password-1")
	client := &http.Client{Timeout: time.Minute}
	const cpPath = "/v1/contactpro/lifecycle/Ended"
	challenge := func() string {
		res, err := client.Post(d.url+cpPath, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		for _, c := range res.Header.Values("WWW-Authenticate") {
			if strings.HasPrefix(c, "Digest ") && strings.Contains(c, "SHA-256") {
				return c
			}
		}
		t.Fatalf("no SHA-256 digest challenge: %d", res.StatusCode)
		return ""
	}
	type request struct {
		name, path string
		header     func(body []byte) http.Header
	}
	requests := []request{
		{"sinch", "/v1/sinch/svc1", func(body []byte) http.Header { return signed(sinchSecret, body, time.Now()) }},
		{"contact pro, digest qop=auth", cpPath, func([]byte) http.Header {
			return withHeader(jsonHeader(), "Authorization", digestAnswer(t, challenge(), http.MethodPost, cpPath, "cpdigest", "digest-password-1"))
		}},
		{"contact pro, digest qop=auth-int", cpPath, func(body []byte) http.Header {
			return withHeader(jsonHeader(), "Authorization", digestAuthInt(t, challenge(), http.MethodPost, cpPath, "cpdigest", "digest-password-1", body, 1))
		}},
	}
	n := 0
	post := func(r request) (int, time.Duration) {
		n++
		body := deliveryReport(fmt.Sprintf("01HUNG%d", n), "DELIVERED")
		if r.path == cpPath {
			body = fmt.Appendf(nil, `{"contact_id":"hung-%d"}`, n)
		}
		h := r.header(body)
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPost, d.url+r.path, strings.NewReader(string(body)))
		req.Header = h
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode, time.Since(start)
	}
	for _, r := range requests {
		if code, _ := post(r); code != http.StatusAccepted {
			t.Fatalf("%s before the pause: %d", r.name, code)
		}
	}
	for _, n := range cluster.Nodes {
		n.Pause(t)
	}
	defer func() {
		for _, n := range cluster.Nodes {
			n.Unpause(t)
		}
	}()
	// The publish timeout bounds what a request waits on NATS for; the
	// rest (reading 1 KB, answering) takes milliseconds, and a second is
	// far more than it needs.
	limit := d.cfg.Ingest.HTTP.PublishTimeout + time.Second
	for round := range 3 {
		for _, r := range requests {
			code, took := post(r)
			if code != http.StatusServiceUnavailable || took > limit {
				t.Errorf("%s, round %d, with the cluster paused: %d after %s, want 503 within %s", r.name, round, code, took.Round(time.Millisecond), limit)
			}
		}
	}
}
