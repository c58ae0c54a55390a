package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsListener: /healthz says whether the NATS connection is closed
// for good; /metrics and /healthz answer GET (and HEAD) only; idle
// connections do not stay open for ever.
func TestMetricsListener(t *testing.T) {
	var closed atomic.Bool
	srv := metricsServer(prometheus.NewRegistry(), closed.Load)
	if srv.IdleTimeout <= 0 || srv.ReadTimeout <= 0 {
		t.Errorf("idle timeout %v, read timeout %v: idle clients would keep their connections", srv.IdleTimeout, srv.ReadTimeout)
	}
	hs := httptest.NewServer(srv.Handler)
	defer hs.Close()
	status := func(method, path string) int {
		req, _ := http.NewRequest(method, hs.URL+path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/healthz", 200}, {"HEAD", "/healthz", 200}, {"GET", "/metrics", 200},
		{"POST", "/healthz", 405}, {"DELETE", "/healthz", 405}, {"POST", "/metrics", 405}, {"GET", "/", 404},
	} {
		if got := status(c.method, c.path); got != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, got, c.want)
		}
	}
	closed.Store(true)
	if got := status("GET", "/healthz"); got != 503 {
		t.Errorf("healthz with the connection closed for good: %d, want 503", got)
	}
}

// TestStopWhenClosed: the processors' part fails once the connection is
// closed for good, and ends quietly when the process stops.
func TestStopWhenClosed(t *testing.T) {
	var closed atomic.Bool
	done := make(chan error, 1)
	go func() { done <- stopWhenClosed(context.Background(), closed.Load) }()
	select {
	case err := <-done:
		t.Fatalf("stopped with the connection open: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	closed.Store(true)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("no error once the connection closed for good")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still running 5 s after the connection closed for good")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := stopWhenClosed(ctx, func() bool { return false }); err != nil {
		t.Fatalf("stopped with %v when asked to", err)
	}
}
