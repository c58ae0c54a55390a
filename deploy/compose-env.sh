#!/usr/bin/env bash
# Writes the .env of docker-compose.yml from deploy/compose.env.example,
# with a fresh random secret wherever the example has @random@ (32 hex
# digits) or @random-key@ (32 random bytes, base64: a CCRELAY_SEAL_KEYS key).
# The file is readable by its owner only, and never overwritten.
#   bash deploy/compose-env.sh [path]        (default: .env beside docker-compose.yml)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.env}
if [ -e "$out" ]; then
	echo "compose-env: $out exists; not overwriting it" >&2
	exit 1
fi
umask 077
while IFS= read -r line || [ -n "$line" ]; do
	while [[ $line == *@random-key@* ]]; do line=${line/@random-key@/$(openssl rand -base64 32)}; done
	while [[ $line == *@random@* ]]; do line=${line/@random@/$(openssl rand -hex 16)}; done
	printf '%s\n' "$line"
done < deploy/compose.env.example > "$out"
echo "wrote $out; replace the values marked REPLACE, and the Sinch webhook secret, before real traffic"
