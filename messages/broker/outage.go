package broker

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Outage follows whether NATS answers, for a whole process. Every part that
// waits for NATS (each connection, each processor's pull loop) reports its
// failed attempts and its successes to the process's one Outage, which logs
// one WARN when the first part finds NATS gone and one INFO when the last
// one finds it back: a process with five connections and four pull loops
// retrying every second otherwise buries everything else in WARN lines
// for as long as the outage lasts. Each attempt stays in the log at DEBUG,
// where the part that made it logs it.
type Outage struct {
	logger *slog.Logger

	mu      sync.Mutex
	failing map[*Part]struct{}
	since   time.Time
	// attempts counts the failed attempts of every part since the outage
	// began.
	attempts int
}

// NewOutage returns an Outage that logs to logger.
func NewOutage(logger *slog.Logger) *Outage {
	return &Outage{logger: logger, failing: map[*Part]struct{}{}}
}

// Part is one thing that waits for NATS. name says in the WARN line which
// part noticed the outage first.
func (o *Outage) Part(name string) *Part { return &Part{o: o, name: name} }

// Part reports the attempts of one connection or loop to its Outage.
type Part struct {
	o    *Outage
	name string
	// failed makes Succeeded free on the hot path: a pull loop reports
	// every pull, and all but a few find NATS well.
	failed atomic.Bool
}

// Failed reports one failed attempt of p. The first failed attempt of any
// part, while no other part is failing, is the process's one WARN.
func (p *Part) Failed(err error) {
	o := p.o
	o.mu.Lock()
	defer o.mu.Unlock()
	p.failed.Store(true)
	o.attempts++
	if len(o.failing) == 0 {
		o.since = time.Now()
		o.attempts = 1
		o.logger.Warn("nats unavailable; waiting for it (each attempt is logged at debug)", "noticed_by", p.name, "error", errString(err))
	}
	o.failing[p] = struct{}{}
}

// Succeeded reports that p reached NATS. When p was the last part failing,
// the outage is over: the process's one INFO, with how long it lasted and
// how many attempts failed meanwhile.
func (p *Part) Succeeded() {
	if !p.failed.Load() {
		return
	}
	o := p.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if !p.failed.Swap(false) {
		return
	}
	delete(o.failing, p)
	if len(o.failing) == 0 {
		o.logger.Info("nats available again", "outage", time.Since(o.since).Round(time.Millisecond), "failed_attempts", o.attempts)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
