package forward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/forward/parking"
)

// The relay's consumers: one per destination and partition group, so a
// destination whose head message waits holds no other destination. The
// runtime names a processor's partition consumers by their position
// (CCRELAY_FORWARD_P<n>), so a destination keeps its positions for good:
// the destinations are numbered in the order they were first configured
// (a list kept in the relay's bucket, key layoutKey), and consumer n
// serves destination n / CCRELAY_FORWARD_PARTITIONS, group n mod it. A
// destination taken out of CCRELAY_FORWARD_URLS keeps its consumers (its
// events are acknowledged as having nowhere to go), so no other moves into
// its positions.

// layoutKey is the key of the destinations' order in the relay's bucket.
const layoutKey = "consumers"

// layout is the relay's consumers.
type layout struct {
	// destinations in the order of their consumers.
	destinations []string
	partitions   int
}

// consumerSpec is one consumer of a layout.
type consumerSpec struct {
	name        string
	destination string
	group       int
	filters     []string
}

// consumers lists l's consumers by position.
func (l layout) consumers(p *Processor) []consumerSpec {
	s := p.env.Subjects
	// Callbacks stored before Sinch subjects named the service name it
	// only in their ce-source: the first Sinch destination configured
	// takes them all (they predate the release that added the service
	// token, so none are left once the stream has aged them out).
	legacy := ""
	for _, d := range l.destinations {
		if typ, _, _ := strings.Cut(d, "/"); typ == SinchType && p.cfg.URLs[d] != nil {
			legacy = d
			break
		}
	}
	var out []consumerSpec
	for _, d := range l.destinations {
		for g := 0; g < l.partitions; g++ {
			out = append(out, consumerSpec{
				name:        processors.PartitionConsumerName(s, Name, len(out)),
				destination: d, group: g,
				filters: filtersOf(s, d, messages.PartitionTokens(g, l.partitions), d == legacy),
			})
		}
	}
	return out
}

// filtersOf are the subjects of destination key in the partition tokens.
func filtersOf(s messages.Subjects, key string, tokens []string, legacy bool) []string {
	typ, service, _ := strings.Cut(key, "/")
	var out []string
	for _, t := range tokens {
		if typ == SinchType {
			out = append(out, s.SinchPartitionFilter(service, t))
			continue
		}
		out = append(out, s.Messaging(typ, service, t))
	}
	if legacy {
		for _, t := range tokens {
			out = append(out, s.SinchLegacyPartitionFilter(t))
		}
	}
	return out
}

// defaultLayout is the layout before the bucket was read: the configured
// destinations, sorted.
func (p *Processor) defaultLayout() layout {
	return layout{destinations: p.cfg.URLs.Keys(), partitions: p.cfg.Partitions}
}

// loadLayout reads the destinations' order from the bucket (from the
// stream leader: a stale list would give another destination's positions
// away) and appends the configured destinations it lacks (sorted), by
// compare-and-set, so replicas starting at once agree.
func (p *Processor) loadLayout(ctx context.Context, store *parking.Store) (layout, error) {
	for {
		var known []string
		b, rev, err := store.Value(ctx, layoutKey)
		if err != nil {
			return layout{}, fmt.Errorf("relay consumers' order: %w", err)
		}
		if b != nil {
			if err := json.Unmarshal(b, &known); err != nil {
				return layout{}, fmt.Errorf("relay consumers' order: %w", err)
			}
		}
		all := slices.Clone(known)
		for _, key := range p.cfg.URLs.Keys() {
			if !slices.Contains(all, key) {
				all = append(all, key)
			}
		}
		l := layout{destinations: all, partitions: p.cfg.Partitions}
		if len(all) == len(known) {
			return l, nil
		}
		b, _ = json.Marshal(all)
		_, err = store.KV().Update(ctx, layoutKey, b, rev)
		if err == nil {
			return l, nil
		}
		var api *jetstream.APIError
		if !errors.Is(err, jetstream.ErrKeyExists) && !(errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
			return layout{}, fmt.Errorf("relay consumers' order: %w", err)
		}
		// Another replica added destinations first: read its list.
	}
}

// placeConsumers creates the consumers of l that do not exist, or serve
// other subjects than l says (an upgrade from consumers shared by every
// destination, a new partition count), each starting where the consumers
// that served its subjects had got to, so nothing they handled is
// delivered again and nothing they did not is skipped; then it removes the
// relay's consumers l has no place for. A consumer that serves new
// subjects only (a destination just added) starts where the relay's
// slowest consumer is, as a consumer widened to take them would have; on a
// stream no relay consumed, consumers start at its first event.
//
// plan keeps the starts it chose across attempts (the Waiter calls it
// again after a timeout): a consumer it replaced is gone, and with it
// where it had got to.
func (p *Processor) placeConsumers(ctx context.Context, l layout, plan map[string]uint64) error {
	js, s := p.env.JS, p.env.Subjects
	st, err := js.Stream(ctx, s.EventsStream())
	if err != nil {
		return fmt.Errorf("relay consumers: %w", err)
	}
	prefix := processors.ConsumerName(s, Name) + "_P"
	existing := map[string]*jetstream.ConsumerInfo{}
	lister := st.ListConsumers(ctx)
	for info := range lister.Info() {
		if strings.HasPrefix(info.Name, prefix) {
			existing[info.Name] = info
		}
	}
	if err := lister.Err(); err != nil {
		return fmt.Errorf("relay consumers: %w", err)
	}
	// next is where a consumer got to: the first event it has not
	// answered.
	next := func(info *jetstream.ConsumerInfo) uint64 {
		if info.NumAckPending == 0 {
			return info.Delivered.Stream + 1
		}
		return info.AckFloor.Stream + 1
	}
	var slowest uint64
	for _, info := range existing {
		if n := next(info); slowest == 0 || n < slowest {
			slowest = n
		}
	}
	want := l.consumers(p)
	keep := map[string]bool{}
	for _, c := range want {
		keep[c.name] = true
		info, ok := existing[c.name]
		if ok && sameSet(info.Config.FilterSubjects, c.filters) {
			if err := p.finishConsumer(ctx, info); err != nil {
				return err
			}
			continue
		}
		start, planned := plan[c.name] // 0: the stream's first event
		if !planned {
			for _, old := range existing {
				if overlaps(old.Config.FilterSubjects, c.filters) {
					if n := next(old); start == 0 || n < start {
						start = n
					}
				}
			}
			if start == 0 {
				start = slowest
			}
			plan[c.name] = start
		}
		if ok {
			if err := js.DeleteConsumer(ctx, s.EventsStream(), c.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("relay consumer %s: %w", c.name, err)
			}
		}
		if err := p.createConsumer(ctx, c, start); err != nil {
			return err
		}
		p.logger.Info("relay consumer placed", "consumer", c.name, "destination", c.destination, "group", c.group, "start_seq", start, "replaces", ok)
	}
	for name := range existing {
		if keep[name] {
			continue
		}
		if err := js.DeleteConsumer(ctx, s.EventsStream(), name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("relay consumer %s: %w", name, err)
		}
		p.logger.Info("relay consumer removed: no destination and group at its position", "consumer", name)
	}
	return nil
}

// metaStart is the metadata of a consumer created paused: the stream
// sequence it is to start at, once reset there and resumed.
const metaStart = "ccrelay_start_seq"

// createConsumer creates c, to deliver from stream sequence start (0: the
// first). The runtime completes its configuration (ack wait, backoff)
// when it binds: an update keeps a consumer's position.
//
// The runtime declares every consumer to deliver all (so that it never
// fails to bind one), so a consumer that starts later is created paused,
// with its start in its metadata, reset there, and resumed: a replica that
// stopped in between leaves it paused, and the next start finishes it,
// rather than letting it deliver the stream from its first event.
func (p *Processor) createConsumer(ctx context.Context, c consumerSpec, start uint64) error {
	cc := jetstream.ConsumerConfig{
		Durable:        c.name,
		Description:    "ccrelay processor " + Name,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		MaxDeliver:     -1,
		MaxAckPending:  1,
		FilterSubjects: c.filters,
	}
	if start > 1 {
		until := time.Now().Add(24 * time.Hour)
		cc.PauseUntil = &until
		cc.Metadata = map[string]string{metaStart: strconv.FormatUint(start, 10)}
	}
	info, err := p.env.JS.CreateConsumer(ctx, p.env.Subjects.EventsStream(), cc)
	if err != nil {
		return fmt.Errorf("relay consumer %s: %w", c.name, err)
	}
	return p.finishConsumer(ctx, info.CachedInfo())
}

// finishConsumer resets a consumer created paused to its start, and
// resumes it.
func (p *Processor) finishConsumer(ctx context.Context, info *jetstream.ConsumerInfo) error {
	v, ok := info.Config.Metadata[metaStart]
	if !ok || !info.Paused {
		return nil // placed (the runtime's update drops the metadata)
	}
	js, stream := p.env.JS, p.env.Subjects.EventsStream()
	start, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return fmt.Errorf("relay consumer %s: metadata %s=%q: %w", info.Name, metaStart, v, err)
	}
	if _, err := js.ResetConsumerToSequence(ctx, stream, info.Name, start); err != nil {
		return fmt.Errorf("relay consumer %s: start it at seq %d (needs a NATS server with consumer reset, as 2.15): %w", info.Name, start, err)
	}
	if _, err := js.ResumeConsumer(ctx, stream, info.Name); err != nil {
		return fmt.Errorf("relay consumer %s: resume: %w", info.Name, err)
	}
	return nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}
