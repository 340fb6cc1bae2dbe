package health

import (
	"net"
	"strings"
	"testing"
)

func TestCheckCommand(t *testing.T) {
	src := newFakeSource(healthySnapshot())
	s, _, _ := startServer(t, src, testOptions())
	addr := portOf(t, s.Addr().String())
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name string
		args []string
		addr string // what main passes: GM2_HEALTH_ADDR or the default
		code int
		want string // in stderr; "" = nothing written
	}{
		{"configured address", []string{"/livez"}, addr, CheckHealthy, ""},
		{"ADDR wins", []string{"/livez", addr}, closedAddr, CheckHealthy, ""},
		{"missing path", []string{"/no-such-endpoint"}, addr, CheckUnhealthy, "404"},
		{"nobody listens", []string{"/livez"}, closedAddr, CheckUnhealthy, "health check http://" + closedAddr + "/livez"},
		{"relative path", []string{"livez"}, addr, CheckUsage, `PATH "livez" must start with /`},
		{"path with a newline", []string{"live\nz"}, addr, CheckUsage, `PATH "live\nz"`},
		{"too many arguments", []string{"/livez", addr, "x"}, addr, CheckUsage, "usage: gm2-init healthcheck [PATH [ADDR]]"},
		{"health off", nil, "off", CheckUsage, `gm2-init healthcheck: the health endpoints are off (GM2_HEALTH_ADDR "off"): nothing to check; give ADDR: gm2-init healthcheck [PATH [ADDR]]`},
		{"empty GM2_HEALTH_ADDR is refused, as by the server (probed :9000, then was off)", nil, "", CheckUsage,
			`gm2-init healthcheck: GM2_HEALTH_ADDR: invalid value "": accepted: off, PORT, :PORT, HOST:PORT or [IPv6]:PORT`},
		{"ADDR a bare port, as --listen takes it", []string{"/livez", strings.TrimPrefix(addr, ":")}, closedAddr, CheckHealthy, ""},
		{"GM2_HEALTH_ADDR with blanks, as the server reads it (was a DNS error)", []string{"/livez"}, " " + addr + " ", CheckHealthy, ""},
		{"GM2_HEALTH_ADDR a host name", nil, "example.com:80", CheckUsage,
			`gm2-init healthcheck: GM2_HEALTH_ADDR: invalid value "example.com:80": accepted: off, PORT, :PORT, HOST:PORT or [IPv6]:PORT with HOST an IP address or localhost and PORT 0–65535`},
		{"ADDR off", []string{"/livez", "off"}, addr, CheckUsage, `the health endpoints are off (ADDR "off")`},
		{"bad ADDR", []string{"/livez", "nowhere"}, addr, CheckUsage, `gm2-init healthcheck: ADDR: invalid value "nowhere": accepted: off, PORT, :PORT`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr strings.Builder
			code := CheckCommand(tc.args, tc.addr, &stderr)
			if code != tc.code {
				t.Errorf("exit status %d, want %d; stderr %q", code, tc.code, stderr.String())
			}
			out := stderr.String()
			if tc.want == "" && out != "" || !strings.Contains(out, tc.want) {
				t.Errorf("stderr %q, want %q", out, tc.want)
			}
			if strings.Count(out, "\n") > 1 {
				t.Errorf("more than one line: %q", out)
			}
		})
	}
}

// TestCheckCommandNotReady: a /readyz that answers 503 (here, shutting
// down) is unhealthy for Docker's HEALTHCHECK, and /livez of the same
// gm2-init still healthy.
func TestCheckCommandNotReady(t *testing.T) {
	snap := healthySnapshot()
	snap.ShuttingDown = true
	s, _, _ := startServer(t, newFakeSource(snap), testOptions())
	addr := portOf(t, s.Addr().String())
	var stderr strings.Builder
	if code := CheckCommand([]string{"/readyz"}, addr, &stderr); code != CheckUnhealthy || !strings.Contains(stderr.String(), "503") {
		t.Errorf("/readyz answering 503: exit status %d, stderr %q; want %d naming 503", code, stderr.String(), CheckUnhealthy)
	}
	stderr.Reset()
	if code := CheckCommand([]string{"/livez"}, addr, &stderr); code != CheckHealthy {
		t.Errorf("/livez: exit status %d, stderr %q; want %d", code, stderr.String(), CheckHealthy)
	}
}
