// Command refingest is the yardstick for ccrelay's ingest: the least a
// durable webhook receiver must do, and nothing else. A net/http handler
// reads the body, checks the Sinch HMAC signature and publishes the body to
// JetStream, answering 200 only after the ack. No decoding, no dedup id, no
// nonce check, no metrics, no logs.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8099", "listen address")
	natsURL := flag.String("nats", nats.DefaultURL, "NATS URL")
	secret := flag.String("secret", "", "Sinch webhook secret")
	flag.Parse()
	nc, err := nats.Connect(*natsURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "REFINGEST", Subjects: []string{"ref.>"}, Storage: jetstream.FileStorage}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	key := []byte(*secret)
	http.HandleFunc("POST /v1/sinch/{service}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 512<<10))
		if err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		mac := hmac.New(sha256.New, key)
		mac.Write(body)
		mac.Write([]byte("." + r.Header.Get("X-Sinch-Webhook-Signature-Nonce") + "." + r.Header.Get("X-Sinch-Webhook-Signature-Timestamp")))
		sig, _ := base64.StdEncoding.DecodeString(r.Header.Get("X-Sinch-Webhook-Signature"))
		if !hmac.Equal(mac.Sum(nil), sig) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		pctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if _, err := js.Publish(pctx, "ref.sinch", body); err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	fmt.Fprintln(os.Stderr, "refingest listening on", *addr)
	srv := &http.Server{Addr: *addr, ReadHeaderTimeout: 15 * time.Second, ReadTimeout: 15 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
