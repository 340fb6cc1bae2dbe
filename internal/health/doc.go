// Package health serves gm2-init's probe, status and metrics endpoints on a
// listener of its own (--health-addr, default ":9000"), separate from the
// application's ports so that a saturated or misbehaving app cannot starve
// the kubelet's probes, and so that probes never reach the workers.
//
// Every answer is computed from a status.Snapshot of the supervisor, which
// builds one only when asked and something changed since the last (a round
// trip bounded to 500 ms, after which the last one is used); the liveness
// ping is the other round trip through the supervisor's loop, bounded and
// coalesced. gm2-init shares the CFS
// quota of its workers, so a probe must stay cheap when the CPU is exhausted.
//
// Endpoints (GET and HEAD only):
//
//	/livez    200 "ok" while the supervisor loop answers and no slot is errored
//	/readyz   200 "ok" while at least MinReady workers are ready and not shutting down
//	/healthz  alias of /livez (see handleProbe for why)
//	/status   JSON view of the snapshot, with uptimes computed at request time
//	          and each worker's usage (its whole process tree) read from /proc
//	/metrics  Prometheus text exposition format 0.0.4, per-slot usage included
//
// The workers' usage is the one thing read outside the snapshot: from /proc,
// only when /status or /metrics asks, bounded in time and at most once a
// second (usage.go).
//
// The endpoints speak a strict subset of HTTP/1.x (http1.go), one request per
// connection, rather than net/http, which would bring TLS, X.509 and HTTP/2
// into the binary for five fixed GET paths.
//
// The package also provides Check, an HTTP client for a Docker HEALTHCHECK in
// images that have no curl.
package health
