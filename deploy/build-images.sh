#!/usr/bin/env bash
# Builds the ccrelay and NATS images on a machine whose Docker engine cannot
# pull: static binaries from this repository's go.mod, FROM scratch images.
#   bash deploy/build-images.sh [tag]        (default tag: local)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-local}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/ccrelay/data" "$ctx/nats/data"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(git describe --always --dirty 2>/dev/null || echo dev)" -o "$ctx/ccrelay/ccrelay" ./cmd/ccrelay
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ctx/nats/nats-server" github.com/nats-io/nats-server/v2
cp /etc/ssl/certs/ca-certificates.crt "$ctx/ccrelay/"
cp deploy/Dockerfile "$ctx/ccrelay/Dockerfile"
cp deploy/nats/Dockerfile "$ctx/nats/Dockerfile"
docker build -q -t "ccrelay:$tag" "$ctx/ccrelay"
docker build -q -t "ccrelay-nats:$tag" "$ctx/nats"
echo "built ccrelay:$tag and ccrelay-nats:$tag"
