#!/usr/bin/env bash
# Measures ccrelay against minimal references in one run, on this machine,
# over loopback only, and prints every figure of the performance table:
#
#   reference        test/refingest (net/http + HMAC + one JetStream publish
#                    waiting for its ack) -> nats-server over loopback
#   reference + contract  the same with ccrelay's headers, a dedup id per
#                    message and its 10-minute duplicate window
#   ccrelay ingest   ccrelay ingest -> the same nats-server over loopback
#   ccrelay serve    ccrelay serve with its embedded server and every
#                    processor, in-process
#   processors       go test -bench 'BenchmarkDeliveries|BenchmarkProcessor|BenchmarkForward'
#                    (test/e2e): the deliveries processor against a bare
#                    consume -> KV put -> ack loop; the runtime, for each
#                    guarantee, against a bare consume -> POST -> ack loop
#                    and that loop paying the guarantee's writes; with
#                    SAP answering after 100 ms against Little's law
#   trace            go test -bench 'BenchmarkTrace/100k': 'ccrelay trace' for one id among
#                    100,000 stored events (TRACE=0 skips it); AB_BASE=<rev> also compares
#                    ingest at <rev> and now (test/ingest-ab.sh)
#
# Each closed-loop figure is the median of RUNS runs with the spread, the
# four closed-loop parts taking turns in an order rotated every round; the
# open-loop latency runs at RATE req/s (the reference too, taking turns with
# ingest), by default 60% of the measured
# closed-loop median of 'ccrelay ingest' (a fixed rate saturates a loaded
# machine and measures its queue, not ccrelay). Ports are chosen free at run
# time. CPU per request is read from /proc for ccrelay and nats-server.
#
# Usage: bash test/bench.sh   (DUR=10s CONNS=32 RUNS=3 RATE=<req/s> PROC=1)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10s}
CONNS=${CONNS:-32}
RUNS=${RUNS:-3}
RATE=${RATE:-}
PROC=${PROC:-1}
SECRET=bench-secret
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

go build -o "$tmp/ccrelay" ./cmd/ccrelay
go build -o "$tmp/loadgen" ./test/loadgen
go build -o "$tmp/refingest" ./test/refingest
go build -o "$tmp/nats-server" github.com/nats-io/nats-server/v2

port() { "$tmp/loadgen" -freeport; }
wait_http() { for _ in $(seq 1 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not up: $1" >&2; return 1; }
lg() { "$tmp/loadgen" -secret "$SECRET" -d "$DUR" "$@"; }

nats_port=$(port)
"$tmp/nats-server" -js -sd "$tmp/nats" -a 127.0.0.1 -p "$nats_port" -l "$tmp/nats.log" &
nats_pid=$!; pids+=($nats_pid)
for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/"$nats_port") 2>/dev/null && break; sleep 0.1; done

echo "# $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), Go $(go env GOVERSION), DUR=$DUR CONNS=$CONNS RUNS=$RUNS"
results="$tmp/results.jsonl"

start_ref() { # extra flags... ; sets ref_port, ref_pid
	ref_port=$(port)
	"$tmp/refingest" "$@" -addr "127.0.0.1:$ref_port" -nats "nats://127.0.0.1:$nats_port" -secret "$SECRET" >/dev/null 2>&1 &
	ref_pid=$!; pids+=($ref_pid)
	wait_http "http://127.0.0.1:$ref_port/healthz" 2>/dev/null || sleep 0.5
}
# The load generator stands for many senders from one address: the
# per-address bounds are the process's, as the reference has none.
start_ccrelay() { # command, extra env... ; sets http_port, cc_pid
	local cmd=$1; shift
	http_port=$(port)
	env -i PATH="$PATH" HOME="$HOME" CCRELAY_HTTP_ADDR="127.0.0.1:$http_port" CCRELAY_METRICS_ADDR="127.0.0.1:$(port)" \
		CCRELAY_PPROF_ADDR="127.0.0.1:$(port)" CCRELAY_SINCH_WEBHOOK_SECRETS="svc:$SECRET" CCRELAY_LOG_LEVEL=warn \
		CCRELAY_MAX_IN_FLIGHT_PER_ADDRESS=512 CCRELAY_MAX_CONNECTIONS_PER_ADDRESS=1024 "$@" "$tmp/ccrelay" "$cmd" 2>"$tmp/$cmd.log" &
	cc_pid=$!; pids+=($cc_pid)
	wait_http "http://127.0.0.1:$http_port/readyz"
}

# Everything measured closed-loop runs side by side, idle but for its turn.
# The reference paying ccrelay's contract (headers, dedup ids, duplicate
# window) measures ccrelay alone.
start_ref
ref=$ref_pid plain_port=$ref_port
start_ref -contract
con=$ref_pid con_port=$ref_port
start_ccrelay ingest CCRELAY_NATS_URL="nats://127.0.0.1:$nats_port"
ing=$cc_pid ing_port=$http_port
start_ccrelay serve CCRELAY_DATA_DIR="$tmp/serve-data" CCRELAY_NATS_LISTEN=none
srv=$cc_pid srv_port=$http_port

# Closed loop, RUNS rounds, the order rotated every round: nats-server's
# cost per request grows as its duplicate window fills, and the machine's
# neighbours come and go, so a fixed order would favour whichever runs
# first. The reference leads the first round (the summary's first label is
# the reference).
for round in $(seq 0 $((RUNS - 1))); do
	for k in 0 1 2 3; do
		case $(((k + round) % 4)) in
		0) lg -url "http://127.0.0.1:$plain_port/v1/sinch/svc" -c "$CONNS" -label reference -pid "$ref" -cpu "handler=$ref,nats-server=$nats_pid" -json ;;
		1) lg -url "http://127.0.0.1:$con_port/v1/sinch/svc" -c "$CONNS" -label "reference + contract" -pid "$con" -cpu "handler=$con,nats-server=$nats_pid" -json ;;
		2) lg -url "http://127.0.0.1:$ing_port/v1/sinch/svc" -c "$CONNS" -label "ccrelay ingest" -pid "$ing" -cpu "handler=$ing,nats-server=$nats_pid" -json ;;
		3) lg -url "http://127.0.0.1:$srv_port/v1/sinch/svc" -c "$CONNS" -label "ccrelay serve" -pid "$srv" -cpu "serve=$srv" -json ;;
		esac
	done
done >>"$results"
kill "$con"
kill -TERM "$srv"; wait "$srv" || true

if [ -z "$RATE" ]; then
	RATE=$("$tmp/loadgen" -summarize <"$results" | awk -F'|' '$2 ~ /ccrelay ingest/ { split($5, a, " "); printf "%d", a[1] * 0.6 }')
	echo "# RATE=$RATE req/s (60% of the closed-loop median of ccrelay ingest)"
fi
# Open loop: the reference at the same rate, taking turns with ingest, tells
# the machine's tail latency from ccrelay's.
for round in $(seq 0 $((RUNS - 1))); do
	for k in 0 1; do
		if [ $(((k + round) % 2)) = 0 ]; then
			lg -url "http://127.0.0.1:$plain_port/v1/sinch/svc" -c 64 -rate "$RATE" -label "reference @${RATE}/s" -pid "$ref" -json
		else
			lg -url "http://127.0.0.1:$ing_port/v1/sinch/svc" -c 64 -rate "$RATE" -label "ccrelay ingest @${RATE}/s" -pid "$ing" -json
		fi
	done
done >>"$results"
kill "$ref"
kill -TERM "$ing"; wait "$ing" || true

# A serve of its own for the open loop, so that its peak RSS is the one at
# RATE, not the closed loop's.
start_ccrelay serve CCRELAY_DATA_DIR="$tmp/serve-data-open" CCRELAY_NATS_LISTEN=none
for _ in $(seq "$RUNS"); do
	lg -url "http://127.0.0.1:$http_port/v1/sinch/svc" -c 64 -rate "$RATE" -label "ccrelay serve @${RATE}/s" -pid "$cc_pid" -json >>"$results"
done
kill -TERM "$cc_pid"; wait "$cc_pid" || true

"$tmp/loadgen" -summarize <"$results"

if [ "$PROC" = 1 ]; then
	echo
	echo "# processors (go test -bench, -count $RUNS; median and spread of the runs): msg/s, %ref = share of the bare loop's throughput (deliveries: consume -> KV put -> ack), %ref_write = share of the bare loop paying the guarantee's writes (goal >= 60), %ref_write_cpu = its CPU per message over the runtime's (steadier on a shared machine), %bound = share of Little's law"
	go test -run '^$' -bench 'BenchmarkDeliveries|BenchmarkProcessor|BenchmarkForward' -benchtime 1x -count "$RUNS" ./test/e2e 2>/dev/null | "$tmp/loadgen" -gobench
fi

if [ "${TRACE:-1}" = 1 ]; then
	echo
	echo "# trace (go test -bench BenchmarkTrace/100k, -count $RUNS): one id among 100,000 stored 1 KiB events, ms/trace (goal <= 2000)"
	go test -run '^$' -bench 'BenchmarkTrace/100k' -benchtime 3x -count "$RUNS" ./test/e2e 2>/dev/null | awk '/^Benchmark/ {print $1, $5, $6}'
fi
if [ -n "${AB_BASE:-}" ]; then
	echo
	echo "# ingest at $AB_BASE and now (BenchmarkSinchIngest, interleaved, test/ingest-ab.sh)"
	ROUNDS="$RUNS" bash test/ingest-ab.sh "$AB_BASE"
fi
