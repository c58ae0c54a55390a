package processors

import (
	"context"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/nats-io/nats.go/jetstream"
)

// The gate exists because watermill-nats' subscriber closes its output
// channel while consume callbacks may still send on it; Run closes the gate
// first so no callback is left to do so.

// bind hands watermill the consumer ccrelay created, pulling in batches for
// up to slots concurrent handlers, behind the gate.
func bind(c batchingConsumer) wmjs.ResourceInitializer {
	return func(context.Context, jetstream.JetStream, string) (jetstream.Consumer, func(context.Context, watermill.LoggerAdapter), error) {
		return c, nil, nil
	}
}

// gate admits consume callbacks until it is closed, and lets close wait
// for the ones admitted.
type gate struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *gate) leave() { g.wg.Done() }

// close stops admitting and waits up to grace for the admitted to leave.
func (g *gate) close(grace time.Duration) bool {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	left := make(chan struct{})
	go func() { g.wg.Wait(); close(left) }()
	select {
	case <-left:
		return true
	case <-time.After(grace):
		return false
	}
}
