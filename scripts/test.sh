#!/usr/bin/env bash
# Sets up and runs every test of gm2-init: formatting, go vet, the unit and
# fuzz-seed tests with the race detector, and the end-to-end tests that run
# the real binary as PID 1 in a new PID namespace.
#
# On a fresh Debian machine (as root, or with sudo) it installs what the
# tests use: prometheus (for promtool, which checks /metrics) and the Node
# example's pinned dependencies (npm ci). Everything else is Go.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v unshare  >/dev/null 2>&1 && command -v nsenter >/dev/null 2>&1 && command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
command -v node     >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v python3  >/dev/null 2>&1 || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "==> installing ${need_apt[*]}"
  $sudo apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" \
    || echo "warning: could not install ${need_apt[*]}; the tests that need them are skipped"
fi
if command -v npm >/dev/null 2>&1 && [ ! -d examples/node/node_modules ]; then
  echo "==> npm ci (examples/node)"
  (cd examples/node && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "==> gofmt"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then echo "gofmt would change:"; echo "$bad"; exit 1; fi
echo "==> go vet"
go vet ./...
echo "==> go test -race"
go test -race -count=1 -timeout 20m ./...
echo "all tests passed"
