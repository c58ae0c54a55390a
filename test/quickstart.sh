#!/usr/bin/env bash
# The README's walk through ccrelay, as one script that stops at the first
# surprise: every source, the NATS CLI recipes and the operator commands,
# against a running 'ccrelay serve --demo'.
#
#   terminal 1:  go run ./cmd/ccrelay serve --demo
#   terminal 2:  bash test/quickstart.sh ./data/demo.env
#
# Needs curl, openssl, jq and the NATS CLI on PATH:
#   go install github.com/nats-io/natscli/nats@v0.5.1   (lands in $(go env GOPATH)/bin)
# It uses the ccrelay on PATH, or else builds one from the checkout it lives
# in (go build, into a temporary directory), and says which. Every run sends
# events with ids of its own, so it runs again and again against the same
# server, each run storing its events anew.
# test/process runs it on every CI run (TestQuickstartScript), twice.
set -euo pipefail

say() { printf '\n== %s\n' "$*"; }
fail() { echo "quickstart: $*" >&2; exit 1; }
# has TEXT OUTPUT: whether OUTPUT holds TEXT. Not "cmd | grep -q": under
# pipefail, grep leaving at its first match can fail the writer (SIGPIPE).
has() { grep -q -- "$1" <<<"$2"; }

for tool in curl openssl jq nats; do
	command -v "$tool" >/dev/null || fail "$tool is not on PATH (the NATS CLI: go install github.com/nats-io/natscli/nats@v0.5.1, then put \$(go env GOPATH)/bin on PATH)"
done

env_file=${1:-./data/demo.env}
[ -r "$env_file" ] || fail "$env_file: no such file; start 'ccrelay serve --demo' first, it writes demo.env into its data directory"
# shellcheck source=/dev/null
source "$env_file"
base=$demo_url
# The embedded server's client port requires its password (data/nats-password).
export NATS_URL=$demo_nats_url NATS_USER=$demo_nats_user NATS_PASSWORD=$demo_nats_password

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if ccrelay=$(command -v ccrelay); then
	echo "quickstart: using $ccrelay (the ccrelay on PATH)"
else
	root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	echo "quickstart: no ccrelay on PATH; building one from $root (go build -o $tmp/ccrelay ./cmd/ccrelay)"
	(cd "$root" && go build -o "$tmp/ccrelay" ./cmd/ccrelay) || fail "could not build ccrelay"
	ccrelay=$tmp/ccrelay
fi

# This run's events carry ids of their own: an event sent before is
# answered 200 as already stored, and the steps below check what this run
# stored. 12 hex digits end the UUIDs Contact Pro and Connect send.
run=$(openssl rand -hex 6)
echo "quickstart: this run's ids end in $run"

# send CURL-ARGS...: sends one event and prints the answer. It sets answer
# (the body) and outcome: "stored" (202: stored now) or "already stored"
# (200 with Ccrelay-Duplicate: true: an event ccrelay holds already).
send() {
	local status
	status=$(curl -sS -D "$tmp/headers" -o "$tmp/body" -w '%{http_code}' "$@") || fail "curl $*: failed"
	answer=$(cat "$tmp/body")
	case "$status" in
	202) outcome=stored ;;
	200) grep -qi '^Ccrelay-Duplicate: true' "$tmp/headers" || fail "HTTP 200 without Ccrelay-Duplicate: true: $answer"
		outcome="already stored" ;;
	*) fail "HTTP $status: $answer" ;;
	esac
	echo "$answer -> HTTP $status, $outcome"
}

# expect OUTCOME WHAT: fails unless the last send's outcome was OUTCOME.
expect() { [ "$outcome" = "$1" ] || fail "$2: $outcome, expected $1"; }

# sinch BODY: sends a Sinch callback signed as Sinch signs it.
sinch() {
	local body=$1 nonce ts sig
	nonce=$(openssl rand -hex 16); ts=$(date +%s)
	sig=$(printf '%s.%s.%s' "$body" "$nonce" "$ts" | openssl dgst -sha256 -hmac "$demo_sinch_secret" -binary | base64)
	send "$base/v1/sinch/$demo_sinch_service" -H 'Content-Type: application/json' \
		-H "X-Sinch-Webhook-Signature-Nonce: $nonce" -H "X-Sinch-Webhook-Signature-Timestamp: $ts" \
		-H 'X-Sinch-Webhook-Signature-Algorithm: HmacSHA256' -H "X-Sinch-Webhook-Signature: $sig" \
		--data-binary "$body"
}

inbound='{"app_id":"01EB37HMH1M6SV18ABNS3G135H","accepted_time":"2026-11-21T10:00:00.000Z","event_time":"2026-11-21T10:00:00Z","project_id":"c36f3d3d-1523-4edd-ae42-11995557ff61","message":{"id":"01QUICKSTART'$run'","direction":"TO_APP","contact_message":{"text_message":{"text":"Hello"}},"channel_identity":{"channel":"WHATSAPP","identity":"46732000000","app_id":"01EB37HMH1M6SV18ABNS3G135H"},"conversation_id":"01QUICKCONV000000000000001","contact_id":"01QUICKCONTACT00000000001","metadata":"","accept_time":"2026-11-21T10:00:00.000Z"},"message_metadata":""}'
report='{"app_id":"01EB37HMH1M6SV18ABNS3G135H","accepted_time":"2026-11-21T10:00:02.000Z","event_time":"2026-11-21T10:00:01.500Z","project_id":"c36f3d3d-1523-4edd-ae42-11995557ff61","message_delivery_report":{"message_id":"01QUICKOUT'$run'","conversation_id":"01QUICKCONV000000000000001","status":"DELIVERED","channel_identity":{"channel":"WHATSAPP","identity":"46732000000","app_id":"01EB37HMH1M6SV18ABNS3G135H"},"contact_id":"01QUICKCONTACT00000000001","metadata":""},"message_metadata":""}'

say "Sinch: an inbound message and a delivery report (202 each: stored), the message again (200: already stored)"
sinch "$inbound"
expect stored "the inbound message"
seq=$(jq -r .seq <<<"$answer")
sinch "$report"
expect stored "the delivery report"
sinch "$inbound"
expect "already stored" "the inbound message sent again"
[ "$(jq -r .seq <<<"$answer")" = "$seq" ] || fail "the message sent again was answered with another event ($answer), not seq $seq"

say "Contact Pro: two lifecycle events of one conversation, by API key and by OAuth token (202 each: stored)"
send "$base/v1/contactpro/lifecycle/Allocated" -H "x-api-key: $demo_api_key" -H 'Content-Type: application/json' \
	--data-binary '{"Event name":"Allocated","Event date":"2026-11-21T10:00:05.000Z","ID":"0a1b2c3d-0000-4000-8000-'$run'"}'
expect stored "the Allocated event"
token=$(curl -sS "$base/oauth/token" -u "$demo_oauth_client:$demo_oauth_secret" -d grant_type=client_credentials | jq -r .access_token)
send "$base/v1/contactpro/lifecycle/Accepted" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
	--data-binary '{"Event name":"Accepted","Event date":"2026-11-21T10:00:09.000Z","ID":"0a1b2c3d-0000-4000-8000-'$run'"}'
expect stored "the Accepted event"

say "Amazon Connect: a Contact Lens post-call event (202: stored)"
send "$base/v1/connect/events" -H "x-api-key: $demo_api_key" -H 'Content-Type: application/json' \
	--data-binary '{"version":"0","id":"6f1c2b3a-0000-4000-8000-'$run'","detail-type":"Contact Lens Post Call Rules Matched","source":"aws.connect","account":"123456789012","time":"2026-11-21T09:58:00Z","region":"eu-central-1","resources":[],"detail":{"version":"1.0","instanceArn":"arn:aws:connect:eu-central-1:123456789012:instance/b1e4f6a2-0000-4000-8000-000000000001","contactArn":"arn:aws:connect:eu-central-1:123456789012:instance/b1e4f6a2-0000-4000-8000-000000000001/contact/c0ffee00-0000-4000-8000-'$run'"}}'
expect stored "the Contact Lens event"

say "NATS CLI: the stream, this run's events, the inbound message (seq $seq) with its headers"
nats stream info CCRELAY_EVENTS
# 'nats stream view' pages on a terminal; in a script, read the stream to its end instead.
out=$(nats sub 'ccrelay.in.>' --stream CCRELAY_EVENTS --start-sequence "$seq" --terminate-at-end --wait 2s); echo "$out"
has "01QUICKSTART$run" "$out" || fail "this run's inbound message is not in the stream from seq $seq"
out=$(nats stream get CCRELAY_EVENTS "$seq"); echo "$out"
has "01QUICKSTART$run" "$out" || fail "seq $seq is not this run's inbound message"

say "NATS CLI: re-run the inbound message (its body, to its subject): the ledger keeps it harmless"
nats stream get CCRELAY_EVENTS "$seq" --json > "$tmp/m.json"
jq -r .data "$tmp/m.json" | base64 -d | nats pub "$(jq -r .subject "$tmp/m.json")" --force-stdin

say "NATS CLI: the processors' consumers"
nats consumer report CCRELAY_EVENTS

say "ccrelay dlq: the Contact Lens event has no Connect bucket to read in demo mode, so it is a dead letter"
export CCRELAY_NATS_URL="nats://$demo_nats_user:$demo_nats_password@${demo_nats_url#nats://}"
# dlqs: the summaries processor's dead letters of this run's event.
dlqs() { "$ccrelay" dlq list | grep summaries | grep -- "$run" || true; }
for _ in $(seq 1 50); do
	[ -n "$(dlqs)" ] && break
	sleep 0.2
done
"$ccrelay" dlq list
[ -n "$(dlqs)" ] || fail "no dead letter of this run's Contact Lens event from the summaries processor"

say "ccrelay replay: what a replay of the last hour would store again"
"$ccrelay" replay --subject 'ccrelay.in.>' --since 1h --dry-run

say "done: every step answered as the README says"
