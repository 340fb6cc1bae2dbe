package health

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gm2-init/gm2-init/internal/echo"
)

// Exit statuses of `gm2-init healthcheck`: what Docker's HEALTHCHECK
// expects (0 healthy, 1 unhealthy), and 2 for a command line that cannot
// be right, as for gm2-init itself.
const (
	CheckHealthy   = 0
	CheckUnhealthy = 1
	CheckUsage     = 2
)

// CheckCommand runs `gm2-init healthcheck [PATH [ADDR]]`: a GET of PATH
// (default /readyz) on ADDR, else on addr — the health address gm2-init is
// configured with (GM2_HEALTH_ADDR or its default), which main passes. It
// writes one line to stderr when the answer is not healthy or the command
// line is wrong, and returns the exit status. An image that sets
// --health-addr as a flag passes ADDR.
func CheckCommand(args []string, addr string, stderr io.Writer) int {
	const usage = "usage: gm2-init healthcheck [PATH [ADDR]] (PATH defaults to /readyz, ADDR to GM2_HEALTH_ADDR, else :9000)"
	if len(args) > 2 {
		fmt.Fprintln(stderr, "gm2-init healthcheck: "+usage)
		return CheckUsage
	}
	path := "/readyz"
	if len(args) > 0 {
		path = args[0]
	}
	if !strings.HasPrefix(path, "/") {
		fmt.Fprintf(stderr, "gm2-init healthcheck: PATH %s must start with / (/livez or /readyz); %s\n", echo.Quote(path), usage)
		return CheckUsage
	}
	if len(args) > 1 {
		addr = args[1]
	}
	if addr == "" {
		addr = ":9000"
	}
	if strings.EqualFold(strings.TrimSpace(addr), "off") {
		fmt.Fprintln(stderr, "gm2-init healthcheck: the health endpoints are off (GM2_HEALTH_ADDR=off); give ADDR")
		return CheckUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Check(ctx, addr, path, 3*time.Second); err != nil {
		fmt.Fprintln(stderr, "gm2-init healthcheck: "+echo.Line(err.Error()))
		return CheckUnhealthy
	}
	return CheckHealthy
}
