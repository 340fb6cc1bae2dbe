package container

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
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
