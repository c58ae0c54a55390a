#!/usr/bin/env bash
# Measures ccrelay's Sinch ingest against a minimal reference ingest
# (test/refingest: net/http + HMAC + JetStream publish waiting for the ack)
# in one run, on this machine, over loopback only:
#
#   reference        refingest  -> nats-server over loopback
#   ccrelay ingest   ccrelay ingest -> the same nats-server over loopback
#   ccrelay serve    ccrelay serve with its embedded server, in-process
#
# each closed-loop with CONNS connections for DUR, then each ccrelay mode
# open-loop at RATE req/s for the latency target. Prints one line per run
# and the ratios. Usage: bash test/bench.sh  (DUR=10s CONNS=32 RATE=5000)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10s}
CONNS=${CONNS:-32}
RATE=${RATE:-5000}
SECRET=bench-secret
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

go build -o "$tmp/ccrelay" ./cmd/ccrelay
go build -o "$tmp/loadgen" ./test/loadgen
go build -o "$tmp/refingest" ./test/refingest
go build -o "$tmp/nats-server" github.com/nats-io/nats-server/v2

wait_http() { for _ in $(seq 1 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not up: $1" >&2; return 1; }
lg() { "$tmp/loadgen" -secret "$SECRET" -d "$DUR" "$@"; }

"$tmp/nats-server" -js -sd "$tmp/nats" -a 127.0.0.1 -p 14222 -l "$tmp/nats.log" &
pids+=($!)
for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/14222) 2>/dev/null && break; sleep 0.1; done

echo "# $(nproc) cores, Go $(go env GOVERSION), DUR=$DUR CONNS=$CONNS RATE=$RATE"
"$tmp/refingest" -addr 127.0.0.1:18099 -nats nats://127.0.0.1:14222 -secret "$SECRET" 2>/dev/null &
ref=$!; pids+=($ref)
sleep 0.5
out_ref=$(lg -url http://127.0.0.1:18099/v1/sinch/svc -c "$CONNS" -label reference -pid "$ref" -json)
kill "$ref"

run_ccrelay() { # label, command, extra env...
	local label=$1 cmd=$2; shift 2
	env -i PATH="$PATH" HOME="$HOME" CCRELAY_HTTP_ADDR=127.0.0.1:18080 CCRELAY_METRICS_ADDR=127.0.0.1:19090 \
		CCRELAY_SINCH_WEBHOOK_SECRETS="svc:$SECRET" CCRELAY_LOG_LEVEL=warn "$@" "$tmp/ccrelay" "$cmd" 2>"$tmp/$cmd.log" &
	local pid=$!; pids+=($pid)
	wait_http http://127.0.0.1:18080/readyz
	lg -url http://127.0.0.1:18080/v1/sinch/svc -c "$CONNS" -label "$label" -pid "$pid" -json
	lg -url http://127.0.0.1:18080/v1/sinch/svc -c 64 -rate "$RATE" -label "$label @${RATE}/s" -pid "$pid" -json
	kill -TERM "$pid"; wait "$pid" || true
}
out_ingest=$(run_ccrelay "ccrelay ingest" ingest CCRELAY_NATS_URL=nats://127.0.0.1:14222)
out_serve=$(run_ccrelay "ccrelay serve" serve CCRELAY_DATA_DIR="$tmp/serve-data" CCRELAY_NATS_LISTEN=none)

printf '%s\n%s\n%s\n' "$out_ref" "$out_ingest" "$out_serve" | "$tmp/loadgen" -summarize
