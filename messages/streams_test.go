package messages_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/test/expect"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/test/natstest"
)

func defaultStreams() messages.StreamConfig {
	return messages.StreamConfig{Replicas: 1, MaxAge: 168 * time.Hour, DedupWindow: 10 * time.Minute, MaxBytes: -1, DLQMaxAge: 720 * time.Hour}
}

// Several replicas starting at once all succeed and leave one stream each.
func TestEnsureStreamsConcurrent(t *testing.T) {
	ns := natstest.Embedded(t)
	cfg := defaultStreams()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, js := natstest.Connect(t, ns.ClientURL())
			errs <- messages.EnsureStreams(context.Background(), provision.Waiter{}, js, cfg)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	_, js := natstest.Connect(t, ns.ClientURL())
	st, err := js.Stream(context.Background(), "CCRELAY_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info(context.Background())
	c := info.Config
	expect.All(t,
		expect.Check{Name: "subjects", Got: c.Subjects, Want: []string{"ccrelay.in.>"}},
		expect.Check{Name: "dedup window", Got: c.Duplicates, Want: 10 * time.Minute},
		expect.Check{Name: "max age", Got: c.MaxAge, Want: 168 * time.Hour},
		expect.Check{Name: "storage", Got: c.Storage.String(), Want: "File"},
	)
	if _, err := js.Stream(context.Background(), "CCRELAY_DLQ"); err != nil {
		t.Fatal(err)
	}

	// A changed setting is applied on the next start.
	cfg.MaxAge = 48 * time.Hour
	if err := messages.EnsureStreams(context.Background(), provision.Waiter{}, js, cfg); err != nil {
		t.Fatal(err)
	}
	info, _ = st.Info(context.Background())
	if info.Config.MaxAge != 48*time.Hour {
		t.Errorf("max age not updated: %s", info.Config.MaxAge)
	}
}

func TestStreamConfigValidate(t *testing.T) {
	if err := defaultStreams().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*messages.StreamConfig){
		"replicas 0":        func(c *messages.StreamConfig) { c.Replicas = 0 },
		"replicas 7":        func(c *messages.StreamConfig) { c.Replicas = 7 },
		"dedup > max age":   func(c *messages.StreamConfig) { c.DedupWindow = 200 * time.Hour },
		"no max age":        func(c *messages.StreamConfig) { c.MaxAge = 0 },
		"max bytes 0":       func(c *messages.StreamConfig) { c.MaxBytes = 0 },
		"negative dlq age":  func(c *messages.StreamConfig) { c.DLQMaxAge = -1 },
		"zero dedup window": func(c *messages.StreamConfig) { c.DedupWindow = 0 },
	} {
		c := defaultStreams()
		mut(&c)
		if c.Validate() == nil {
			t.Errorf("%s accepted", name)
		}
	}
}
