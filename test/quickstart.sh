#!/usr/bin/env bash
# The README's walk through ccrelay, as one script that stops at the first
# surprise: every source, the NATS CLI recipes and the operator commands,
# against a running 'ccrelay serve --demo'.
#
#   terminal 1:  go run ./cmd/ccrelay serve --demo
#   terminal 2:  bash test/quickstart.sh ./data/demo.env
#
# Needs curl, openssl, jq, the ccrelay binary on PATH (go build -o ... ./cmd/ccrelay,
# or 'go install ./cmd/ccrelay') and the NATS CLI:
#   go install github.com/nats-io/natscli/nats@v0.5.1
# test/process runs it on every CI run (TestQuickstartScript).
set -euo pipefail

env_file=${1:-./data/demo.env}
# shellcheck source=/dev/null
source "$env_file"
base=$demo_url
# The embedded server's client port requires its password (data/nats-password).
export NATS_URL=$demo_nats_url NATS_USER=$demo_nats_user NATS_PASSWORD=$demo_nats_password

say() { printf '\n== %s\n' "$*"; }
fail() { echo "quickstart: $*" >&2; exit 1; }
# has TEXT OUTPUT: whether OUTPUT holds TEXT. Not "cmd | grep -q": under
# pipefail, grep leaving at its first match can fail the writer (SIGPIPE).
has() { grep -q -- "$1" <<<"$2"; }

# expect STATUS CURL-ARGS...: runs curl, prints the answer, checks its status.
expect() {
	local want=$1; shift
	local out status
	out=$(curl -sS -w '\n%{http_code}' "$@") || fail "curl $*: failed"
	status=${out##*$'\n'}
	echo "${out%$'\n'*} -> HTTP $status"
	[ "$status" = "$want" ] || fail "expected HTTP $want, got $status"
}

# sinch BODY: posts a Sinch callback signed as Sinch signs it.
sinch() {
	local body=$1 nonce ts sig
	nonce=$(openssl rand -hex 16); ts=$(date +%s)
	sig=$(printf '%s.%s.%s' "$body" "$nonce" "$ts" | openssl dgst -sha256 -hmac "$demo_sinch_secret" -binary | base64)
	curl -sS "$base/v1/sinch/$demo_sinch_service" -H 'Content-Type: application/json' \
		-H "X-Sinch-Webhook-Signature-Nonce: $nonce" -H "X-Sinch-Webhook-Signature-Timestamp: $ts" \
		-H 'X-Sinch-Webhook-Signature-Algorithm: HmacSHA256' -H "X-Sinch-Webhook-Signature: $sig" \
		--data-binary "$body"
}

inbound='{"app_id":"01EB37HMH1M6SV18ABNS3G135H","accepted_time":"2026-11-21T10:00:00.000Z","event_time":"2026-11-21T10:00:00Z","project_id":"c36f3d3d-1523-4edd-ae42-11995557ff61","message":{"id":"01QUICKSTART00000000000001","direction":"TO_APP","contact_message":{"text_message":{"text":"Hello"}},"channel_identity":{"channel":"WHATSAPP","identity":"46732000000","app_id":"01EB37HMH1M6SV18ABNS3G135H"},"conversation_id":"01QUICKCONV000000000000001","contact_id":"01QUICKCONTACT00000000001","metadata":"","accept_time":"2026-11-21T10:00:00.000Z"},"message_metadata":""}'
report='{"app_id":"01EB37HMH1M6SV18ABNS3G135H","accepted_time":"2026-11-21T10:00:02.000Z","event_time":"2026-11-21T10:00:01.500Z","project_id":"c36f3d3d-1523-4edd-ae42-11995557ff61","message_delivery_report":{"message_id":"01QUICKOUT0000000000000001","conversation_id":"01QUICKCONV000000000000001","status":"DELIVERED","channel_identity":{"channel":"WHATSAPP","identity":"46732000000","app_id":"01EB37HMH1M6SV18ABNS3G135H"},"contact_id":"01QUICKCONTACT00000000001","metadata":""},"message_metadata":""}'

say "Sinch: an inbound message and a delivery report (202 each), the message again (200, duplicate)"
out=$(sinch "$inbound"); echo "$out" >&2
has '"duplicate":false' "$out" || fail "inbound not stored"
has '"duplicate":false' "$(sinch "$report")" || fail "delivery report not stored"
has '"duplicate":true' "$(sinch "$inbound")" || fail "a resent callback was stored twice"

say "Contact Pro: two lifecycle events of one conversation, by API key and by OAuth token"
expect 202 "$base/v1/contactpro/lifecycle/Allocated" -H "x-api-key: $demo_api_key" -H 'Content-Type: application/json' \
	--data-binary '{"Event name":"Allocated","Event date":"2026-11-21T10:00:05.000Z","ID":"0a1b2c3d-0000-4000-8000-0000000000aa"}'
token=$(curl -sS "$base/oauth/token" -u "$demo_oauth_client:$demo_oauth_secret" -d grant_type=client_credentials | jq -r .access_token)
expect 202 "$base/v1/contactpro/lifecycle/Accepted" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
	--data-binary '{"Event name":"Accepted","Event date":"2026-11-21T10:00:09.000Z","ID":"0a1b2c3d-0000-4000-8000-0000000000aa"}'

say "Amazon Connect: a Contact Lens post-call event"
expect 202 "$base/v1/connect/events" -H "x-api-key: $demo_api_key" -H 'Content-Type: application/json' \
	--data-binary '{"version":"0","id":"6f1c2b3a-0000-4000-8000-0000000000aa","detail-type":"Contact Lens Post Call Rules Matched","source":"aws.connect","account":"123456789012","time":"2026-11-21T09:58:00Z","region":"eu-central-1","resources":[],"detail":{"version":"1.0","instanceArn":"arn:aws:connect:eu-central-1:123456789012:instance/b1e4f6a2-0000-4000-8000-000000000001","contactArn":"arn:aws:connect:eu-central-1:123456789012:instance/b1e4f6a2-0000-4000-8000-000000000001/contact/c0ffee00-0000-4000-8000-0000000000aa"}}'

say "NATS CLI: the stream, its events, one event with its headers"
nats stream info CCRELAY_EVENTS
# 'nats stream view' pages on a terminal; in a script, subscribe to the stream instead.
nats sub 'ccrelay.in.>' --stream CCRELAY_EVENTS --all --count 5
nats stream get CCRELAY_EVENTS 1

say "NATS CLI: re-run event 1 (its body, to its subject): the ledger keeps it harmless"
nats stream get CCRELAY_EVENTS 1 --json > /tmp/ccrelay-quickstart-m.json
jq -r .data /tmp/ccrelay-quickstart-m.json | base64 -d | nats pub "$(jq -r .subject /tmp/ccrelay-quickstart-m.json)" --force-stdin
rm -f /tmp/ccrelay-quickstart-m.json

say "NATS CLI: the processors' consumers"
nats consumer report CCRELAY_EVENTS

say "ccrelay dlq: the Contact Lens event has no Connect bucket to read in demo mode, so it is a dead letter"
export CCRELAY_NATS_URL="nats://$demo_nats_user:$demo_nats_password@${demo_nats_url#nats://}"
for _ in $(seq 1 50); do
	has summaries "$(ccrelay dlq list)" && break
	sleep 0.2
done
out=$(ccrelay dlq list); echo "$out" >&2
has summaries "$out" || fail "no dead letter from the summaries processor"

say "ccrelay replay: what a replay of the last hour would store again"
ccrelay replay --subject 'ccrelay.in.>' --since 1h --dry-run

say "done: every step answered as the README says"
