package processors

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
)

// watchMaxDeliveries dead-letters messages JetStream stopped delivering
// without ever getting an answer (the replica died on each delivery), which
// the handler wrapper cannot see.
func (r *Runtime) watchMaxDeliveries(ctx context.Context, nc *nats.Conn, p Processor, consumer string) (func(), error) {
	subj := fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", r.deps.Subjects.EventsStream(), consumer)
	sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
		var adv struct {
			StreamSeq  uint64 `json:"stream_seq"`
			Deliveries uint64 `json:"deliveries"`
		}
		if json.Unmarshal(m.Data, &adv) != nil || adv.StreamSeq == 0 {
			return
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		st, err := r.deps.JS.Stream(actx, r.deps.Subjects.EventsStream())
		var raw *jetstream.RawStreamMsg
		if err == nil {
			raw, err = st.GetMsg(actx, adv.StreamSeq)
		}
		if err != nil {
			r.deps.Logger.Error("max deliveries advisory: message gone", "processor", p.Name, "seq", adv.StreamSeq, "error", err)
			return
		}
		ev := &Event{Subject: raw.Subject, ID: raw.Header.Get(messages.HeaderID), Header: raw.Header, Body: raw.Data, Seq: adv.StreamSeq, Deliveries: adv.Deliveries}
		stored, err := r.deps.DLQ.Send(actx, p.Name, ev, fmt.Errorf("delivered %d times without an answer", adv.Deliveries))
		if err != nil {
			r.deps.Logger.Error("max deliveries advisory: dead-letter failed", "processor", p.Name, "seq", adv.StreamSeq, "error", err)
			return
		}
		// Every replica receives the advisory; the dead letter's dedup id
		// stores it once, and only the replica that stored it counts it.
		if stored {
			r.deps.Metrics.Messages.WithLabelValues(p.Name, OutcomeDeadLettered).Inc()
			r.deps.Logger.Error("dead-lettered", "processor", p.Name, "seq", adv.StreamSeq, "deliveries", adv.Deliveries, "error", "delivered without an answer")
		}
	})
	if err != nil {
		return nil, fmt.Errorf("watch max deliveries: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}
