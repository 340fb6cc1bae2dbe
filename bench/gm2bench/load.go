package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// WrkResult is what wrk reports.
type WrkResult struct {
	RPS          float64 `json:"rps"`
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	Requests     int64   `json:"requests"`
	SocketErrors int64   `json:"socket_errors"`
	Non2xx       int64   `json:"non_2xx"`
}

var (
	reRPS    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	rePct    = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	reReqs   = regexp.MustCompile(`(\d+) requests in`)
	reSock   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// runWrk runs wrk (its argv: the binary, perhaps behind taskset) for d
// against url (always a 127.0.0.1 address) and saves its output to logPath.
func runWrk(wrk []string, url string, threads, conns int, d time.Duration, closeEach bool, logPath string) (WrkResult, error) {
	argv := append(append([]string{}, wrk...), "-t"+strconv.Itoa(threads), "-c"+strconv.Itoa(conns),
		"-d"+strconv.Itoa(int(d.Seconds()))+"s", "--timeout", "10s", "--latency")
	if closeEach {
		argv = append(argv, "-H", "Connection: close")
	}
	argv = append(argv, url)
	out, _, err := runTool(d+30*time.Second, nil, argv...)
	if logPath != "" {
		os.WriteFile(logPath, []byte("# "+strings.Join(argv, " ")+"\n"+out), 0o644)
	}
	if err != nil {
		return WrkResult{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	return parseWrk(out)
}

func parseWrk(out string) (WrkResult, error) {
	var r WrkResult
	m := reRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk: no Requests/sec in output:\n%s", out)
	}
	r.RPS, _ = strconv.ParseFloat(m[1], 64)
	for _, m := range rePct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if m[1] == "50" {
			r.P50ms = v
		} else {
			r.P99ms = v
		}
	}
	if m := reReqs.FindStringSubmatch(out); m != nil {
		r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reSock.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.SocketErrors += n
		}
	}
	if m := reNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return r, nil
}

// LoadResult is what the driver's own load client saw.
type LoadResult struct {
	OK       int64            `json:"ok"`
	Failed   int64            `json:"failed"`
	Hung     int64            `json:"hung"`
	Errors   map[string]int64 `json:"errors,omitempty"`
	Seconds  float64          `json:"seconds"`
	P99ms    float64          `json:"p99_ms"`
	MaxMs    float64          `json:"max_ms"`
	Slow1s   int64            `json:"slower_than_1s"`
	RPS      float64          `json:"rps"`
	Timeout  float64          `json:"client_timeout_s"`
	Clients  int              `json:"clients"`
	NewConns bool             `json:"new_connection_per_request"`
}

// Load runs conc clients against url until Stop is called; each request has
// timeout as its limit, after which it counts as hung. With keep-alive, a
// GET on a connection the server closed while idle is retried by Go's
// transport, as browsers and proxies do; what is left is a real failure.
type Load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  time.Time
	res    LoadResult
	mu     sync.Mutex
	lat    []float64
}

func startLoad(url string, conc int, newConns bool, timeout time.Duration) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{cancel: cancel, start: time.Now()}
	l.res.Errors = map[string]int64{}
	l.res.Timeout, l.res.Clients, l.res.NewConns = timeout.Seconds(), conc, newConns
	tr := &http.Transport{
		DisableKeepAlives:   newConns,
		MaxIdleConnsPerHost: conc,
		MaxConnsPerHost:     0,
		DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
	}
	client := &http.Client{Transport: tr, Timeout: timeout}
	for i := 0; i < conc; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				// Each request gets its own context: stopping the load must
				// not cut requests in flight, they run to their timeout.
				resp, err := client.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				ms := float64(time.Since(t0)) / 1e6
				l.mu.Lock()
				l.lat = append(l.lat, ms)
				switch {
				case err == nil:
					l.res.OK++
				case isTimeout(err):
					l.res.Hung++
				default:
					l.res.Failed++
					l.res.Errors[errKind(err)]++
				}
				l.mu.Unlock()
				if err != nil && !isTimeout(err) {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	return l
}

// Stop ends the load: no new requests; those in flight finish or time out.
func (l *Load) Stop() LoadResult {
	l.cancel()
	l.wg.Wait()
	l.res.Seconds = time.Since(l.start).Seconds()
	sort.Float64s(l.lat)
	if n := len(l.lat); n > 0 {
		l.res.P99ms = l.lat[int(math.Min(float64(n-1), math.Ceil(0.99*float64(n))-1))]
		l.res.MaxMs = l.lat[n-1]
		for _, v := range l.lat {
			if v > 1000 {
				l.res.Slow1s++
			}
		}
	}
	l.res.RPS = float64(l.res.OK) / l.res.Seconds
	return l.res
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func errKind(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed (EOF)"
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// httpGet fetches url with a short timeout (probes, pid checks).
func httpGet(url string, timeout time.Duration, keepAlive bool) (string, error) {
	tr := &http.Transport{DisableKeepAlives: !keepAlive}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), nil
}

// waitServing waits until n distinct worker pids have answered on addr,
// with a new connection per request, one every interval (2 ms after a
// failed one). It returns when each was first seen.
func waitServing(addr string, n int, interval, timeout time.Duration) ([]time.Time, error) {
	deadline := time.Now().Add(timeout)
	seen := map[string]bool{}
	var at []time.Time
	for time.Now().Before(deadline) {
		body, err := httpGet("http://"+addr+"/", time.Second, false)
		if err == nil && !seen[body] {
			seen[body] = true
			at = append(at, time.Now())
			if len(seen) >= n {
				return at, nil
			}
		}
		if err != nil {
			time.Sleep(2 * time.Millisecond)
		} else {
			time.Sleep(interval)
		}
	}
	return at, fmt.Errorf("%s: %d of %d workers answered within %s", addr, len(seen), n, timeout)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago,
// below the ephemeral range so that the load tools' own connections never
// take it.
func freePort() int {
	for i := 0; i < 1000; i++ {
		port := 20000 + rand.IntN(10000)
		if usedPorts[port] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l.Close()
		usedPorts[port] = true
		return port
	}
	panic("no free port in 20000-29999")
}

var usedPorts = map[int]bool{}
