#!/usr/bin/env bash
# Builds gm2-init and the example Go app, then runs the app as one worker per
# usable CPU on port 8080 (health endpoints on 9000), in the foreground.
#
#   scripts/demo.sh            # Ctrl-C (SIGINT) stops it gracefully
#
# In another terminal:
#   curl localhost:8080/                 # answered by one of the workers
#   curl localhost:9000/status           # slots, pids, readiness
#   kill -HUP  "$(cat .demo/gm2-init.pid)"   # zero-downtime rolling reload
#   kill -TTIN "$(cat .demo/gm2-init.pid)"   # one worker more (TTOU: one less)
#
# Needs Go 1.26 or later (https://go.dev/dl/). Nothing is installed system-wide:
# the binaries go to .demo/ in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null 2>&1 || { echo "demo: Go 1.26+ is needed (https://go.dev/dl/)" >&2; exit 1; }
mkdir -p .demo
echo "==> building gm2-init and examples/goapp into .demo/" >&2
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -gcflags=all=-l -o .demo/gm2-init .
CGO_ENABLED=0 go build -trimpath -o .demo/goapp ./examples/goapp
port="${PORT:-8080}"
echo "==> gm2-init -i max --listen :$port --wait-ready -- goapp   (health on ${GM2_HEALTH_ADDR:-:9000})" >&2
echo $$ > .demo/gm2-init.pid
# exec: the pid written above becomes gm2-init's.
exec .demo/gm2-init -i max --listen ":$port" --wait-ready --log-format console -- .demo/goapp
