#!/usr/bin/env bash
# Compares ingest's cost at two revisions: BenchmarkSinchIngest (a signed
# 1 KiB inbound callback, handler to JetStream ack, embedded server), taking
# turns between a copy of BASE (git archive, in a temporary directory) and
# the working tree, ROUNDS times; prints each run and the medians. Used for
# changes to what ingest writes (Ccrelay-Ids: AB_BASE=324deb2).
#
# Usage: bash test/ingest-ab.sh BASE   (ROUNDS=5 BENCHTIME=3s)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?give the base revision}
ROUNDS=${ROUNDS:-5}
BENCHTIME=${BENCHTIME:-3s}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git archive "$base" | tar -x -C "$tmp"
out="$tmp/runs.txt"
for _ in $(seq "$ROUNDS"); do
	for v in base head; do
		dir=$tmp; [ "$v" = head ] && dir=$PWD
		(cd "$dir" && go test -run '^$' -bench 'BenchmarkSinchIngest/skew=5m' -benchtime "$BENCHTIME" -count 1 ./test/e2e/ 2>/dev/null) |
			awk -v v="$v" '/^Benchmark/ {print v, $3, $5, $7; fflush()}' | tee -a "$out"
	done
done
for v in base head; do
	awk -v v="$v" '$1 == v {print $2}' "$out" | sort -n | awk -v v="$v" '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%s: median %.1f us/op (%d runs, %.1f-%.1f), %.0f req/s\n", v, m/1000, NR, a[1]/1000, a[NR]/1000, 1e9/m}'
	awk -v v="$v" '$1 == v {b+=$3; n++} END {printf "%s: %.0f B/op mean\n", v, b/n}' "$out"
done
