package container

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// oneShot makes one request per connection, bounded.
var oneShot = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func httpGet(addr, path string) (int, string, error) {
	resp, err := oneShot.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// statusDoc is the part of /status these tests read.
type statusDoc struct {
	Instances    int `json:"instances"`
	ReadyWorkers int `json:"ready_workers"`
	Slots        []struct {
		Instance int    `json:"instance"`
		State    string `json:"state"`
		Pid      int    `json:"pid"`
	} `json:"slots"`
	Listeners []struct {
		Network  string `json:"network"`
		Address  string `json:"address"`
		OnDemand bool   `json:"on_demand"`
	} `json:"listeners"`
}

func getStatus(t *testing.T, health string) statusDoc {
	t.Helper()
	code, body, err := httpGet(health, "/status")
	if err != nil || code != 200 {
		t.Fatalf("GET %s/status: %d %v %s", health, code, err, body)
	}
	var s statusDoc
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("/status is not JSON: %v\n%s", err, body)
	}
	return s
}

// slotPids returns the pid of every slot in /status.
func slotPids(t *testing.T, health string) []int {
	t.Helper()
	var pids []int
	for _, s := range getStatus(t, health).Slots {
		pids = append(pids, s.Pid)
	}
	return pids
}

// metric reads one sample without labels from /metrics (-1 when absent).
func metric(t *testing.T, health, name string) float64 {
	t.Helper()
	code, body, err := httpGet(health, "/metrics")
	if err != nil || code != 200 {
		t.Fatalf("GET %s/metrics: %d %v", health, code, err)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", line, err)
			}
			return f
		}
	}
	return -1
}

// waitMetric polls /metrics until name reaches at least want, bounded.
func waitMetric(t *testing.T, health, name string, want float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := metric(t, health, name)
		if v >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after %v, want at least %v", name, v, timeout, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// distinctBodies requests / on fresh connections until want different
// bodies came back (the Node example answers with its pid), within at most
// tries requests.
func distinctBodies(t *testing.T, addr string, want, tries int) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	for i := 0; i < tries && len(seen) < want; i++ {
		code, body, err := httpGet(addr, "/")
		if err != nil || code != 200 {
			t.Fatalf("GET %s/: %d %v %q", addr, code, err, body)
		}
		seen[body] = true
	}
	if len(seen) < want {
		t.Fatalf("%d requests through %s reached %d worker(s) %v, want %d", tries, addr, len(seen), seen, want)
	}
	return seen
}

// load is bounded HTTP load on 127.0.0.1 (the published port): half its
// clients open a new connection per request, half keep theirs alive. It
// stops when stopped or after its time limit.
type load struct {
	ok, failed [2]atomic.Int64 // [0] new connection per request, [1] keep-alive
	mu         sync.Mutex
	errs       []string
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

func startLoad(addr string, clients int, limit time.Duration) *load {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	l := &load{cancel: cancel}
	for i := 0; i < clients; i++ {
		mode := i % 2
		tr := &http.Transport{DisableKeepAlives: mode == 0, MaxIdleConnsPerHost: 1}
		c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer tr.CloseIdleConnections()
			for ctx.Err() == nil {
				l.one(c, addr, mode)
			}
		}()
	}
	return l
}

func (l *load) one(c *http.Client, addr string, mode int) {
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	resp, err := c.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
	}
	if err != nil {
		l.failed[mode].Add(1)
		l.mu.Lock()
		if len(l.errs) < 10 {
			l.errs = append(l.errs, fmt.Sprintf("%v (keep-alive %v)", err, mode == 1))
		}
		l.mu.Unlock()
		return
	}
	l.ok[mode].Add(1)
}

func (l *load) total() int64 { return l.ok[0].Load() + l.ok[1].Load() }

// waitRequests waits until n more requests succeeded, in each mode.
func (l *load) waitRequests(n int64, timeout time.Duration) bool {
	t0, t1 := l.ok[0].Load()+n, l.ok[1].Load()+n
	deadline := time.Now().Add(timeout)
	for l.ok[0].Load() < t0 || l.ok[1].Load() < t1 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// stop ends the load and returns the successes and failures per mode.
func (l *load) stop() (ok, failed [2]int64, errs []string) {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range 2 {
		ok[i], failed[i] = l.ok[i].Load(), l.failed[i].Load()
	}
	return ok, failed, l.errs
}
