// Command refingest is the yardstick for ccrelay's ingest: the least a
// durable webhook receiver must do, and nothing else. A net/http handler
// reads the body, checks the Sinch HMAC signature and publishes the body to
// JetStream, answering 200 only after the ack. No decoding, no dedup id, no
// nonce check, no metrics, no logs.
//
// With -contract it also pays what ccrelay's wire contract costs in
// nats-server and on the wire, and nothing of ccrelay's own: the same
// headers (CloudEvents, Nats-Msg-Id, received-at, expected stream), a dedup
// id per message kept for the same 10-minute duplicate window, a subject of
// the same depth. ccrelay against this reference measures ccrelay; against
// the plain one, ccrelay and its contract together.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
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
	contract := flag.Bool("contract", false, "publish with ccrelay's headers and dedup id, into a stream with its duplicate window")
	flag.Parse()
	nc, err := nats.Connect(*natsURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	cfg := jetstream.StreamConfig{Name: "REFINGEST", Subjects: []string{"ref.>"}, Storage: jetstream.FileStorage}
	if *contract {
		cfg = jetstream.StreamConfig{Name: "REFCONTRACT", Subjects: []string{"refc.>"}, Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute}
	}
	if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
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
		m := &nats.Msg{Subject: "ref.sinch", Data: body}
		if *contract {
			sum := sha256.Sum256(body)
			id := "sinch:" + hex.EncodeToString(sum[:16])
			now := time.Now().UTC().Format(time.RFC3339Nano)
			m.Subject = "refc.in.sinch.message_inbound.app.p7"
			m.Header = nats.Header{
				"Nats-Msg-Id": {id}, "ce-specversion": {"1.0"}, "ce-id": {id}, "ce-source": {"/sinch/" + r.PathValue("service")},
				"ce-type": {"com.sinch.conversation.message_inbound"}, "ce-time": {now}, "Content-Type": {"application/json"},
				"Ccrelay-Received-At": {now}, "Nats-Expected-Stream": {cfg.Name},
			}
		}
		if _, err := js.PublishMsg(pctx, m); err != nil {
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
